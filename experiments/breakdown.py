"""Where do a run's RCA misses and its discriminator's L_G come from? By edit size |s| and by direction.

    python experiments/breakdown.py [RUN] [--pairs 1000] [--seed 0] [--bins 4] [--cache PT]

Draws ``evaluate``'s own pairs (x_T seeds, k and s of ``--seed``), then scores them with the run's
reconstructor (eval mode, as ``evaluate``) and the run's discriminator: RCA, the mean L_G =
BCE(D(x~0), 1) on the shifted samples, the same on the raw ones (what L_G would be if the edits were
invisible to this D), and the mean |x~0 - x0|, per bin of |s| and per direction. One JSON line.
Results are in docs/discovery.md ("Where the misses are").
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from reconstructor_ceiling import evaluate_pairs

from hspace.nets import build_reconstructor
from hspace.run import load_run


def grouped(values: torch.Tensor, groups: torch.Tensor, n_groups: int) -> list[float | None]:
    return [
        round(float(values[groups == g].float().mean()), 3) if (groups == g).any() else None for g in range(n_groups)
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?", default="default")
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bins", type=int, default=4, help="equal-width bins of |s| over [min_shift, S]")
    ap.add_argument("--cache", default=None, help="a .pt file: the drawn pairs are kept there and reused")
    args = ap.parse_args()
    run = load_run(args.run)
    cfg, m = run.config, run.model
    k, s, x0, x0s = evaluate_pairs(run, args.seed, args.pairs, args.cache)
    recon = run.load_part("reconstructor", build_reconstructor(cfg.reconstructor, m.in_channels, cfg.K)).eval()
    disc = run.load_discriminator()
    with torch.no_grad():
        hit = recon(x0, x0s)[0].argmax(1) == k  # [n]
        lg_shifted = F.softplus(-disc(x0s))  # BCE(D(x~0), 1) per sample [n]
        lg_raw = F.softplus(-disc(x0))
    edit = (x0s - x0).abs().flatten(1).mean(1)  # [n]
    edges = torch.linspace(cfg.min_shift, cfg.S, args.bins + 1)
    size_bin = torch.bucketize(s.abs(), edges[1:-1])  # [n] in 0..bins-1
    row = {
        "run": args.run,
        "seed": args.seed,
        "pairs": args.pairs,
        "rca": round(float(hit.float().mean()), 3),
        "lg_shifted": round(float(lg_shifted.mean()), 3),
        "lg_raw": round(float(lg_raw.mean()), 3),
        "abs_s_bins": [round(float(e), 3) for e in edges],
        "by_size": {
            "rca": grouped(hit, size_bin, args.bins),
            "lg_shifted": grouped(lg_shifted, size_bin, args.bins),
            "lg_raw": grouped(lg_raw, size_bin, args.bins),
            "mean_abs_edit": grouped(edit, size_bin, args.bins),
        },
        "by_sign": {"rca": grouped(hit, (s > 0).long(), 2), "lg_shifted": grouped(lg_shifted, (s > 0).long(), 2)},
        "by_direction": {
            "rca": grouped(hit, k, cfg.K),
            "lg_shifted": grouped(lg_shifted, k, cfg.K),
            "mean_abs_edit": grouped(edit, k, cfg.K),
        },
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
