"""The contract every UNet family meets: a frozen eps-predictor split at h-space."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class EncoderState:
    """What the decoder needs besides h: the time embedding and the skip activations.

    ``emb`` [N x E] is the frozen UNet's own time embedding (the shift block is conditioned on it);
    ``skips`` are the encoder activations, ``t`` [N] the timesteps. None of them depend on h.
    """

    emb: torch.Tensor
    skips: tuple[torch.Tensor, ...]
    t: torch.Tensor

    def map(self, fn) -> EncoderState:
        """Apply ``fn`` to every tensor of the state (all have the batch as dim 0)."""
        return EncoderState(fn(self.emb), tuple(fn(s) for s in self.skips), fn(self.t))

    def repeat(self, n: int) -> EncoderState:
        """The same state for a batch stacked n times along dim 0 (decode ``[h, h_hat]`` in one call)."""
        return self if n == 1 else self.map(lambda x: torch.cat([x] * n))


class HSpaceModel(nn.Module):
    """A frozen eps-prediction UNet exposing h-space (the output of its middle block).

    Subclasses implement ``encode`` and ``decode`` and set ``h_channels``, ``emb_channels``,
    ``in_channels``, ``image_size`` and ``backend``; ``alphas_cumprod`` [T] is a float64 buffer.
    """

    backend: str = "abstract"
    h_channels: int
    emb_channels: int
    in_channels: int
    image_size: int

    def __init__(self, alphas_cumprod: torch.Tensor):
        super().__init__()
        self.register_buffer("alphas_cumprod", alphas_cumprod.to(torch.float64), persistent=False)

    @property
    def num_train_steps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def freeze(self) -> HSpaceModel:
        """Eval mode (no dropout) and no gradients for the pre-trained weights."""
        self.eval()
        self.requires_grad_(False)
        return self

    def encode(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, EncoderState]:
        """``[N x C x H x W], [N] -> (h [N x C_h x h x w], state)``."""
        raise NotImplementedError

    def decode(self, h: torch.Tensor, state: EncoderState) -> torch.Tensor:
        """``(h, state) -> eps [N x C x H x W]`` (the first C channels when the model learns sigma)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h, state = self.encode(x, t)
        return self.decode(h, state)

    def make_encoder(self, pretrained: bool) -> nn.Module:
        """A trainable copy of the encoder (input blocks + middle block), used by the discriminator.

        The returned module maps ``x [N x C x H x W] -> h`` with the time input fixed at t = 0.
        """
        raise NotImplementedError

    def describe(self) -> dict:
        """JSON-able identity of the model, stored in artifacts' metadata."""
        return {"backend": self.backend}
