"""Can the discriminator tell shifted samples from raw ones at all? Its ceiling, trained alone on fixed pairs.

    python experiments/discriminator_probe.py [RUN] [--pairs 2048] [--heldout 512] [--steps 600] [--cache PT]

During discovery L_D stays near 2 ln 2 = 1.386 (chance) and L_G near 0.8, although the grids show
plain artefacts (grey backgrounds, shapes that are no digit). This draws fixed (x0, x~0) pairs as
training does (the run's k, s), then, on those alone:

- the run's own trained discriminator: accuracy on held-out pairs;
- a fresh discriminator of the same architecture (the DM's encoder, pooled, a linear head), trained
  by Adam at each --lr on the training pairs: held-out accuracy along the way;
- a linear probe on the shipped classifier's 128 FID features: how separable the pairs are in the
  space FID measures.
One JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hspace.classifier import load_classifier
from hspace.nets import Discriminator
from hspace.run import load_run
from hspace.sampling import seed_noise
from hspace.train import discriminator_loss, draw_edits, run_chains


@torch.no_grad()
def draw_pairs(run, n: int, first_seed: int, seed: int, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """x0 and x~0 [n x C x H x W] for n fresh x_T and (k, s) drawn as in training."""
    m, cfg = run.model, run.config
    ks, ss = draw_edits(n, cfg, torch.Generator().manual_seed(seed))
    real, shifted = [], []
    for a in range(0, n, batch):
        x_T = seed_noise(range(first_seed + a, first_seed + min(a + batch, n)), m.in_channels, m.image_size)
        c = run_chains(
            m, run.shift_block, x_T, [(ks[a : a + batch], ss[a : a + batch])], run.timesteps, cfg.t_stop, kept_steps=0
        )
        real.append(c.x0_real)
        shifted.append(c.x0_shift)
    return torch.cat(real), torch.cat(shifted)


class ConvDiscriminator(torch.nn.Module):
    """A plain strided-conv D (DCGAN-like, no global pooling: where on the image an artefact sits counts)."""

    def __init__(self, channels: int, size: int, width: int = 32):
        super().__init__()
        layers, c = [], channels
        for i in range(3):  # size -> size / 8
            layers += [torch.nn.Conv2d(c, width * 2**i, 4, 2, 1), torch.nn.LeakyReLU(0.2)]
            c = width * 2**i
        self.body = torch.nn.Sequential(*layers, torch.nn.Flatten())
        self.head = torch.nn.Linear(c * (size // 8) ** 2, 1)

    def forward(self, x):
        return self.head(self.body(x)).squeeze(1)


def build(arch: str, m):
    if arch == "conv":
        return ConvDiscriminator(m.in_channels, m.image_size)
    return Discriminator(m.make_encoder(pretrained=arch == "pretrained"), m.h_channels)


@torch.no_grad()
def accuracy(d, real, shifted) -> float:
    return float(((d(real) > 0).float().mean() + (d(shifted) < 0).float().mean()) / 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?", default="default")
    ap.add_argument("--pairs", type=int, default=2048)
    ap.add_argument("--heldout", type=int, default=512)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, nargs="+", default=[1e-3, 1e-2])
    ap.add_argument("--arch", nargs="+", default=["encoder"], help="encoder (hspace's D), pretrained, conv")
    ap.add_argument("--skip-own", action="store_true")
    ap.add_argument("--cache", default=None, help="a .pt file: the drawn pairs are kept there and reused")
    args = ap.parse_args()
    run = load_run(args.run)
    m = run.model
    start = time.monotonic()
    if args.cache and Path(args.cache).exists():
        train, test = torch.load(args.cache)
    else:
        train = draw_pairs(run, args.pairs, 10**8, seed=11)
        test = draw_pairs(run, args.heldout, 2 * 10**8, seed=12)
        if args.cache:
            torch.save((train, test), args.cache)
    print(json.dumps({"pairs_drawn_s": round(time.monotonic() - start, 1)}), flush=True)

    if not args.skip_own:
        own = run.load_discriminator()
        print(
            json.dumps({"what": "the run's discriminator", "heldout_acc": round(accuracy(own, *test), 3)}), flush=True
        )

    for arch, lr in [(a, lr) for a in args.arch for lr in args.lr]:
        torch.manual_seed(0)
        d = build(arch, m)
        opt = torch.optim.Adam(d.parameters(), lr=lr)
        g = torch.Generator().manual_seed(0)
        for step in range(1, args.steps + 1):
            idx = torch.randint(0, args.pairs, (args.batch_size,), generator=g)
            loss = discriminator_loss(d, train[0][idx], train[1][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 100 == 0 or step == args.steps:
                d.eval()
                row = {
                    "what": "fresh discriminator",
                    "arch": arch,
                    "lr": lr,
                    "step": step,
                    "loss_d": round(loss.item(), 3),
                }
                row["heldout_acc"] = round(accuracy(d, *test), 3)
                d.train()
                print(json.dumps(row), flush=True)

    clf = load_classifier()
    with torch.no_grad():
        feats = [torch.cat([clf.features(a.clamp(-1, 1)), clf.features(b.clamp(-1, 1))]) for a, b in (train, test)]
    labels = [torch.cat([torch.ones(len(a)), torch.zeros(len(b))]) for a, b in (train, test)]
    mu, sd = feats[0].mean(0), feats[0].std(0) + 1e-6
    probe = torch.nn.Linear(feats[0].shape[1], 1)
    opt = torch.optim.Adam(probe.parameters(), lr=1e-2)
    for _ in range(500):
        loss = F.binary_cross_entropy_with_logits(probe((feats[0] - mu) / sd).squeeze(1), labels[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = ((probe((feats[1] - mu) / sd).squeeze(1) > 0).float() == labels[1]).float().mean()
    print(json.dumps({"what": "linear probe on FID features", "heldout_acc": round(float(acc), 3)}), flush=True)


if __name__ == "__main__":
    main()
