"""Would directions whose edits are equally large score better than equally long shifts of h?

    python experiments/equal_edits.py [RUN] [--train-pairs 3000] [--epochs 6] [--cache-dir DIR]

With ``--shift-norm`` every direction moves h by the same |s| r RMS(h), yet their edits of x0 differ
several-fold in size (experiments/breakdown.py): RCA misses pile up on small edits, the
discriminator's L_G on large ones. This gives direction k a fixed gain g_k on its shift, chosen so
that every direction's mean |x~0 - x0| at s = +-S is the median direction's (two rounds of
g_k <- g_k x median / size_k, clipped to [0.25, 4]); then, against the run as it is (gains 1):

- RCA of the run's reconstructor, trained on for ``--epochs`` on pairs drawn once (seeds apart from
  ``evaluate``'s), on ``evaluate``'s own pairs (``--seed``);
- L_G = BCE(D(x~0), 1) of the run's discriminator on those pairs;
- the edit overlap as ``evaluate`` measures it (8 seeds, s = +S).
One JSON line per arm. Results are in docs/discovery.md ("Where the misses are").
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from reconstructor_ceiling import TRAIN_SEEDS, evaluate_pairs, fit, make_pairs, rca

from hspace.directions import direction_indices
from hspace.evaluate import edit_measures, rank_directions, summarise_overlap
from hspace.nets import build_reconstructor
from hspace.run import load_run
from hspace.sampling import sample, seed_noise


def set_gains(block, gains: torch.Tensor) -> None:
    """Direction k's shift times gains[k]: a fixed, per-direction size on top of ``shift_norm``."""
    plain = type(block).direction

    def direction(self, z, h, k):
        g = gains.to(h.device, h.dtype)[direction_indices(k, h.shape[0], h.device, len(gains))]  # [N]
        return plain(self, z, h, k) * g[:, None, None, None]

    block.direction = types.MethodType(direction, block)


@torch.no_grad()
def edit_sizes(run, num_seeds: int = 16) -> torch.Tensor:
    """Mean |x~0 - x0| per direction over s = +S and -S on ``num_seeds`` seeds [K]."""
    cfg, m = run.config, run.model
    x_T = seed_noise(range(5000, 5000 + num_seeds), m.in_channels, m.image_size)
    plain = sample(m, x_T, run.timesteps)
    sizes = []
    for k in range(cfg.K):
        edits = [(k, s) for s in (cfg.S, -cfg.S)]
        x = [sample(m, x_T, run.timesteps, directions=run.shift_block, edits=[e], t_stop=cfg.t_stop) for e in edits]
        sizes.append(torch.stack([(xi - plain).abs().mean() for xi in x]).mean())
    return torch.stack(sizes)


def measure(run, arm: str, args, cache: Path | None) -> dict:
    cfg, m = run.config, run.model
    start = time.monotonic()
    path = cache / f"{arm}.pt" if cache else None
    if path and path.exists():
        train, test = torch.load(path)
    else:
        train = make_pairs(run, TRAIN_SEEDS, args.train_pairs, torch.Generator().manual_seed(3))
        test = evaluate_pairs(run, args.seed, args.test_pairs)
        if path:
            torch.save((train, test), path)
    own = run.load_part("reconstructor", build_reconstructor(cfg.reconstructor, m.in_channels, cfg.K))
    disc = run.load_discriminator()
    with torch.no_grad():
        lg = float(F.softplus(-disc(test[3])).mean())
        lg_raw = float(F.softplus(-disc(test[2])).mean())
    _, plus, minus = rank_directions(run, list(range(cfg.K)))
    overlap, parts = edit_measures(plus, minus)
    return {
        "arm": arm,
        "rca_own": round(rca(own, test), 3),
        "rca_trained_on_per_epoch": fit(
            copy.deepcopy(own), train, test, args.epochs, args.lr, cfg.lambda2 / cfg.lambda1
        ),
        "lg_shifted": round(lg, 3),
        "lg_raw": round(lg_raw, 3),
        "mean_abs_edit": round(float((test[3] - test[2]).abs().mean()), 4),
        "edit_overlap": round(summarise_overlap(overlap, list(range(cfg.K)))["edit_overlap_mean"], 3),
        "seconds": round(time.monotonic() - start),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?", default="default")
    ap.add_argument("--train-pairs", type=int, default=3000)
    ap.add_argument("--test-pairs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0, help="evaluate's pairs of this --seed")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()
    cache = Path(args.cache_dir) if args.cache_dir else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
    run = load_run(args.run)
    if run.shift_block.shift_norm is None:
        raise SystemExit("this compares sizes on top of --shift-norm; the run has free shift sizes")
    print(json.dumps(measure(run, "as-is", args, cache)), flush=True)
    sizes = edit_sizes(run)
    gains = torch.ones(run.config.K)
    for _ in range(2):
        gains = (gains * sizes.median() / sizes).clamp(0.25, 4)
        set_gains(run.shift_block, gains)
        sizes = edit_sizes(run)
    row = {"gains": [round(float(g), 2) for g in gains], "sizes_after": [round(float(v), 3) for v in sizes]}
    print(json.dumps(row), flush=True)
    print(json.dumps(measure(run, "equal-edits", args, cache)), flush=True)


if __name__ == "__main__":
    main()
