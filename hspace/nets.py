"""The reconstructor R(x0, x~0) -> (logits [K], shift) and the discriminator D(x) of the paper."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _to_32(x: torch.Tensor) -> torch.Tensor:
    """LeNet needs 32x32: pad 28x28 (MNIST) by 2 pixels, resize anything else."""
    size = x.shape[-1]
    if x.shape[-2:] == (32, 32):
        return x
    if x.shape[-2:] == (28, 28):
        return F.pad(x, (2, 2, 2, 2), value=-1.0)  # background of [-1, 1] images
    return F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=size > 32)


class ReconstructorHeads(nn.Module):
    """Two heads over pooled features: direction logits [N x K] and shift magnitude [N]."""

    def __init__(self, features: int, hidden: int, num_directions: int):
        super().__init__()

        def head(out):
            return nn.Sequential(
                nn.Linear(features, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, out)
            )

        self.logits, self.shift = head(num_directions), head(1)

    def forward(self, f):
        return self.logits(f), self.shift(f).squeeze(1)


class LeNetReconstructor(nn.Module):
    """LeNet-5 over the channel-stacked pair (as GANLatentDiscovery's, ``width`` scales the channels)."""

    def __init__(self, in_channels: int, num_directions: int, width: int = 2):
        super().__init__()

        def block(cin, cout, pool=True):
            # no bias before BatchNorm: it would be cancelled (and get a gradient of pure rounding noise)
            layers = [nn.Conv2d(cin, cout, 5, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
            return layers + [nn.MaxPool2d(2)] if pool else layers

        self.features = nn.Sequential(
            *block(2 * in_channels, 3 * width), *block(3 * width, 8 * width), *block(8 * width, 60 * width, pool=False)
        )
        self.heads = ReconstructorHeads(60 * width, 42 * width, num_directions)

    def forward(self, x0, x0_shifted):
        f = self.features(_to_32(torch.cat([x0, x0_shifted], dim=1))).mean(dim=(2, 3))
        return self.heads(f)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet18Reconstructor(nn.Module):
    """ResNet-18 (He et al. 2016) whose first conv takes the 2C-channel pair."""

    def __init__(self, in_channels: int, num_directions: int):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(2 * in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.heads = ReconstructorHeads(512, 512, num_directions)

    def forward(self, x0, x0_shifted):
        f = self.layers(self.stem(torch.cat([x0, x0_shifted], dim=1))).mean(dim=(2, 3))
        return self.heads(f)


RECONSTRUCTORS = {"lenet": LeNetReconstructor, "resnet18": ResNet18Reconstructor}


def build_reconstructor(name: str, in_channels: int, num_directions: int) -> nn.Module:
    if name not in RECONSTRUCTORS:
        raise ValueError(f"unknown reconstructor {name!r}: choose one of {sorted(RECONSTRUCTORS)}")
    return RECONSTRUCTORS[name](in_channels, num_directions)


class Discriminator(nn.Module):
    """D(x): the DM's encoder configuration at t = 0, AdaptiveAvgPool and a linear head -> one logit [N]."""

    def __init__(self, encoder: nn.Module, h_channels: int):
        super().__init__()
        self.encoder = encoder
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(h_channels, 1)

    def features(self, x):
        """The pooled encoder features the head reads: [N x C x H x W] -> [N x h_channels]."""
        return self.pool(self.encoder(x)).flatten(1)

    def forward(self, x):
        return self.head(self.features(x)).squeeze(1)
