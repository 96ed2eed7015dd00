"""Is edit overlap learned, or what any shift of that size does? A baseline with the learned part replaced.

    python experiments/overlap_baseline.py [RUN] [--seeds 8] [--scales 1,0.5,0.2]

For the run's shift block and for a copy whose K output convs (weight and bias) are replaced by
Gaussian ones of the same per-direction norm (the shared body kept), at each scale of those convs:
the mean edit overlap at s = +S (``metrics.edit_overlap``, as ``evaluate`` measures it), each
edit's squared cosine with the mean edit over directions on the same seed, and the mean |x(+S) - x(0)|.
Results are in docs/discovery.md ("Edit overlap").
"""

from __future__ import annotations

import argparse
import copy
import json

import torch
from overlap_common_part import mean_off_diagonal, unit  # the same split of the overlap

from hspace.metrics import edit_overlap
from hspace.run import load_run
from hspace.sampling import seed_noise


def random_like(block, generator: torch.Generator):
    """``block`` with each direction's output conv replaced by a Gaussian one of the same norm."""
    other = copy.deepcopy(block)
    for p in (other.out_weight, other.out_bias):
        g = torch.randn(p.shape, generator=generator)
        norms = p.detach().flatten(1).norm(dim=1) / g.flatten(1).norm(dim=1)  # [K]
        p.data = g * norms.view(-1, *[1] * (p.dim() - 1))
    return other


def scaled(block, factor: float):
    other = copy.deepcopy(block)
    other.out_weight.data *= factor
    other.out_bias.data *= factor
    return other


def figures(run, block, x_T) -> dict:
    S = run.config.S
    changes = []
    with torch.no_grad():
        for k in range(run.config.K):
            x = run.sweep(k, x_T, [0.0, S], directions=block)  # [seeds x 2 x C x H x W]
            changes.append(x[:, 1] - x[:, 0])
    changes = torch.stack(changes)  # [K x seeds x C x H x W]
    shared = changes.mean(0, keepdim=True)  # the mean edit over directions, per seed
    return {
        "overlap": mean_off_diagonal(edit_overlap(changes)),
        "cos2_with_mean_edit": round(float((unit(changes) * unit(shared)).sum(-1).pow(2).mean()), 3),
        "mean_abs_edit": round(float(changes.abs().mean()), 4),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?", default="default")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--scales", default="1,0.5,0.2")
    args = ap.parse_args()
    run = load_run(args.run)
    x_T = seed_noise(range(args.seeds), run.model.in_channels, run.model.image_size)
    fixed = random_like(run.shift_block, torch.Generator().manual_seed(0))
    for scale in (float(v) for v in args.scales.split(",")):
        for name, block in (("learned", run.shift_block), ("random", fixed)):
            row = {"run": str(args.run), "directions": name, "scale": scale}
            print(json.dumps({**row, **figures(run, scaled(block, scale), x_T)}), flush=True)


if __name__ == "__main__":
    main()
