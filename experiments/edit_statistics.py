"""What tells a run's edited samples from plain ones without a discriminator? Simple image statistics.

    python experiments/edit_statistics.py [RUN] [--pairs 1000] [--seed 0] [--cache PT] [--random-directions STD]

Draws ``evaluate``'s own pairs (as ``breakdown.py``) and compares per-image statistics of the raw
samples x0 and the edited ones x~0: the mean, the spread, the share of ink (pixels > 0), the share of
grey pixels (|x| < 0.8), the total variation. For each it prints both means and the AUC of telling
x~0 from x0 by that statistic alone (0.5: no sign; all pairs, and the pairs with |s| in the upper half
of [min_shift, S]), then the change in ink per direction and sign of s, and how the run's own
discriminator's per-sample L_G = BCE(D(x), 1) follows ink and edit size (Pearson correlations). One
JSON line.
``--random-directions STD`` replaces the run's shift block by untrained random directions
(``direction_init_std`` STD, the run's own shift size): a baseline for what any shift of h does. Results are in
docs/discovery.md ("A fresh critic").
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import torch
import torch.nn.functional as F
from reconstructor_ceiling import evaluate_pairs

from hspace.run import load_run
from hspace.train import DiscoveryTrainer


def image_statistics(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image statistics of x [N x C x H x W] in [-1, 1]; each [N]."""
    flat = x.flatten(1)
    total_variation = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1) + (
        x[..., :, 1:] - x[..., :, :-1]
    ).abs().flatten(1).mean(1)
    return {
        "mean": flat.mean(1),
        "std": flat.std(1),
        "ink": (flat > 0).float().mean(1),
        "grey": (flat.abs() < 0.8).float().mean(1),
        "total_variation": total_variation,
    }


def auc(negative: torch.Tensor, positive: torch.Tensor) -> float:
    """P(a positive scores above a negative), ties counted half: 0.5 when the statistic tells nothing."""
    above = (positive[None, :] > negative[:, None]).float().mean()
    ties = (positive[None, :] == negative[:, None]).float().mean()
    return round(float(above + 0.5 * ties), 3)


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return round(float((a * b).sum() / (a.norm() * b.norm())), 3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?", default="default")
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=None, help="a .pt file: the drawn pairs are kept there and reused")
    ap.add_argument("--random-directions", type=float, default=None, metavar="STD")
    args = ap.parse_args()
    run = load_run(args.run)
    cfg = run.config
    if args.random_directions is not None:
        random_cfg = cfg.replace(init_from=None, direction_init_std=args.random_directions)
        run = replace(run, shift_block=DiscoveryTrainer(run.model, random_cfg).modules.shift_block)
    k, s, x0, x0s = evaluate_pairs(run, args.seed, args.pairs, args.cache)
    raw, edited = image_statistics(x0), image_statistics(x0s)
    large = s.abs() > (cfg.min_shift + cfg.S) / 2  # [n]
    row = {"run": args.run, "random_directions": args.random_directions, "seed": args.seed, "pairs": len(k)}
    for name in raw:
        row[name] = {
            "raw": round(float(raw[name].mean()), 4),
            "edited": round(float(edited[name].mean()), 4),
            "auc": auc(raw[name], edited[name]),
            "auc_large_s": auc(raw[name], edited[name][large]),
        }
    ink_change = edited["ink"] - raw["ink"]  # [n]
    row["ink_change_by_direction"] = {
        sign: [round(float(ink_change[(k == d) & side].mean()), 4) for d in range(cfg.K)]
        for sign, side in (("s>0", s > 0), ("s<0", s < 0))
    }
    disc = run.load_discriminator()
    with torch.no_grad():
        lg_edited, lg_raw = F.softplus(-disc(x0s)), F.softplus(-disc(x0))  # [n] each
    row["lg_correlation"] = {
        "edited_ink": correlation(lg_edited, edited["ink"]),
        "ink_added": correlation(lg_edited, ink_change),
        "mean_abs_edit": correlation(lg_edited, (x0s - x0).abs().flatten(1).mean(1)),
        "raw_ink (L_G of raw samples)": correlation(lg_raw, raw["ink"]),
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
