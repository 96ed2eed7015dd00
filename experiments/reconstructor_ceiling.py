"""How well can a reconstructor tell a run's directions apart once they stop moving?

    python experiments/reconstructor_ceiling.py [RUN] [--shift-norm R] [--train-pairs 8000] [--epochs 30] [--width W]

In training, the reconstructor chases directions that change every step. Here the shift block is
fixed (optionally rescaled to |Delta h| = |s| R |h|, as ``--shift-norm`` does), pairs (x0, x~0, k,
s) are drawn once on x_T seeds apart from ``evaluate``'s, and a LeNet is trained on them alone,
fresh and from the run's own reconstructor (``--width W``: the fresh one is a LeNet W/2 times as wide
as the run's, to see whether the reconstructor's size is what holds RCA down). RCA is measured on ``evaluate``'s own first
``--test-pairs`` pairs (seed 0), so it compares with ``hspace evaluate RUN --num-pairs N``.
Results are in docs/discovery.md ("The reconstructor's ceiling", "Style edits split by sign").
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hspace.nets import LeNetReconstructor, build_reconstructor
from hspace.run import load_run
from hspace.sampling import seed_noise
from hspace.train import draw_edits, run_chains

TRAIN_SEEDS = 3 * 10**7  # apart from evaluate's (seed * 10^7 and its recalibration at + 5 x 10^6)


@torch.no_grad()
def make_pairs(run, first_seed: int, n: int, generator: torch.Generator, batch: int = 100):
    """(k [n], s [n], x0 [n x C x H x W], x~0 [n x C x H x W]) as ``evaluate`` draws them."""
    cfg, m = run.config, run.model
    k, s = draw_edits(n, cfg, generator)
    x0, x0s = [], []
    for a in range(0, n, batch):
        x_T = seed_noise(range(first_seed + a, first_seed + min(a + batch, n)), m.in_channels, m.image_size)
        chains = run_chains(
            m, run.shift_block, x_T, [(k[a : a + batch], s[a : a + batch])], run.timesteps, cfg.t_stop, 0
        )
        x0.append(chains.x0_real)
        x0s.append(chains.x0_shift)
    return k, s, torch.cat(x0), torch.cat(x0s)


def evaluate_pairs(run, seed: int, n: int, cache: str | None = None):
    """``evaluate``'s own pairs for ``--seed`` (x_T seeds from seed x 10^7, (k, s) from Generator(seed)),
    kept in and reused from the .pt file ``cache`` when given."""
    if cache and Path(cache).exists():
        return torch.load(cache)
    pairs = make_pairs(run, seed * 10**7, n, torch.Generator().manual_seed(seed))
    if cache:
        torch.save(pairs, cache)
    return pairs


@torch.no_grad()
def rca(recon, pairs, batch: int = 500) -> float:
    k, _, x0, x0s = pairs
    recon.eval()
    pred = torch.cat([recon(x0[a : a + batch], x0s[a : a + batch])[0].argmax(1) for a in range(0, len(k), batch)])
    return float((pred == k).float().mean())


def fit(recon, train, test, epochs: int, lr: float, l1_weight: float, batch: int = 64) -> list[float]:
    """Adam on CE(k) + l1_weight L1(s) over the fixed training pairs; held-out RCA after each epoch."""
    k, s, x0, x0s = train
    opt = torch.optim.Adam(recon.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    curve = []
    for _ in range(epochs):
        recon.train()
        order = torch.randperm(len(k), generator=g)
        for a in range(0, len(k) - batch + 1, batch):
            i = order[a : a + batch]
            logits, shift = recon(x0[i], x0s[i])
            loss = F.cross_entropy(logits, k[i]) + l1_weight * F.l1_loss(shift, s[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        curve.append(round(rca(recon, test), 3))
    return curve


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?", default="default")
    ap.add_argument("--shift-norm", type=float, default=None)
    ap.add_argument("--train-pairs", type=int, default=8000)
    ap.add_argument("--test-pairs", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--width", type=int, default=None, help="the fresh reconstructor: a LeNet of this width")
    args = ap.parse_args()
    run = load_run(args.run)
    if args.shift_norm is not None:
        run.shift_block.shift_norm = args.shift_norm
    cfg = run.config
    start = time.monotonic()
    test = make_pairs(run, 0, args.test_pairs, torch.Generator().manual_seed(0))  # evaluate's pairs
    train = make_pairs(run, TRAIN_SEEDS, args.train_pairs, torch.Generator().manual_seed(3))
    made = time.monotonic() - start
    own = run.load_part("reconstructor", build_reconstructor(cfg.reconstructor, run.model.in_channels, cfg.K))
    row = {
        "run": str(args.run),
        "shift_norm": args.shift_norm,
        "train_pairs": args.train_pairs,
        "test_pairs": args.test_pairs,
        "fresh_width": args.width,
        "mean_abs_edit": round(float((test[3] - test[2]).abs().mean()), 4),
        "rca_own_reconstructor": round(rca(own, test), 3),
    }
    torch.manual_seed(0)
    if args.width is None:
        fresh = build_reconstructor(cfg.reconstructor, run.model.in_channels, cfg.K)
    else:
        fresh = LeNetReconstructor(run.model.in_channels, cfg.K, width=args.width)
    l1_weight = cfg.lambda2 / cfg.lambda1
    row["rca_fresh_per_epoch"] = fit(fresh, train, test, args.epochs, args.lr, l1_weight)
    row["rca_continued_per_epoch"] = fit(copy.deepcopy(own), train, test, args.epochs, args.lr, l1_weight)
    row["seconds_pairs"], row["seconds_total"] = round(made), round(time.monotonic() - start)
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
