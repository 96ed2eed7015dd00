"""Does a shorter shifting interval give more real edits of the same strength? t_stop and s, swept.

    python experiments/t_stop_realism.py RUN [--t-stops 400,600] [--scales 0.5,1] [--num-pairs 500] [--M 20]

The run's directions, applied on the steps t >= t_stop of its chain with s scaled, on the pairs
``evaluate`` draws for the same ``--num-pairs`` (same x_T seeds, same k and s before scaling; k and
s are drawn for the whole set, so 500 pairs are the first 500 x_T of 1,000 with another draw).
Per (t_stop, scale): the shifted samples' FID against the held-out digits (the shipped
classifier's features, as ``evaluate``), how often the classifier's label changes, and the mean
|x~0 - x0|. A later t_stop leaves more plain
DDIM steps after the last shift, which may pull half-way shapes back to a digit; a longer chain
(``--M``, the run's own by default) leaves more plain steps after the same t_stop. Results are in
docs/discovery.md ("The shifting interval").
"""

from __future__ import annotations

import argparse
import json

import torch

from hspace.classifier import load_classifier
from hspace.data import load_dataset
from hspace.directions import rms
from hspace.metrics import frechet_distance
from hspace.run import load_run
from hspace.sampling import seed_noise
from hspace.schedule import uniform_timesteps
from hspace.train import draw_edits, run_chains


class RenormalisedShift:
    """The run's shift, with h + Delta h rescaled to RMS(h): a shift that moves h, not its size."""

    def __init__(self, block):
        self.block = block

    def shift(self, h, state, edits):
        moved = h + self.block.shift(h, state, edits)  # [N x C x h x w]
        return moved * (rms(h) / rms(moved).clamp_min(1e-12)) - h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?", default="default")
    ap.add_argument("--t-stops", default="400,600")
    ap.add_argument("--scales", default="1")
    ap.add_argument("--num-pairs", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--M", type=int, default=None, help="DDIM steps of the chain (default: the run's)")
    ap.add_argument("--renormalise", action="store_true", help="keep RMS(h + Delta h) = RMS(h)")
    args = ap.parse_args()
    run = load_run(args.run)
    m, cfg = run.model, run.config
    clf = load_classifier()
    timesteps = run.timesteps if args.M is None else uniform_timesteps(args.M, m.num_train_steps)
    block = RenormalisedShift(run.shift_block) if args.renormalise else run.shift_block
    real, _ = load_dataset("mnist", m.image_size, m.in_channels, split="heldout")
    with torch.no_grad():
        f_real = torch.cat([clf.features(real[i : i + 500]) for i in range(0, len(real), 500)])
    k_all, s_all = draw_edits(args.num_pairs, cfg, torch.Generator().manual_seed(0))  # as evaluate's seed 0
    raw = None
    for t_stop in [int(v) for v in args.t_stops.split(",")]:
        for scale in [float(v) for v in args.scales.split(",")]:
            f_raw, f_shift, flips, sizes = [], [], [], []
            with torch.no_grad():
                for start in range(0, args.num_pairs, args.batch_size):
                    n = min(args.batch_size, args.num_pairs - start)
                    x_T = seed_noise(range(start, start + n), m.in_channels, m.image_size)
                    edits = [(k_all[start : start + n], s_all[start : start + n] * scale)]
                    c = run_chains(m, block, x_T, edits, timesteps, t_stop, kept_steps=0)
                    x0, x0s = c.x0_real.clamp(-1, 1), c.x0_shift.clamp(-1, 1)
                    f_raw.append(clf.features(x0))
                    f_shift.append(clf.features(x0s))
                    flips.append(clf(x0).argmax(1) != clf(x0s).argmax(1))
                    sizes.append((c.x0_shift - c.x0_real).abs().flatten(1).mean(1))
            if raw is None:
                raw = frechet_distance(f_real, torch.cat(f_raw))
            shifted = frechet_distance(f_real, torch.cat(f_shift))
            row = {
                "run": run.name,
                "t_stop": t_stop,
                "M": len(timesteps),
                "shifted_steps": sum(t >= t_stop for t in timesteps),
                "scale": scale,
                "renormalise": args.renormalise,
                "fid_raw": round(raw, 2),
                "fid_shifted": round(shifted, 2),
                "fid_excess": round(shifted / raw - 1, 3),
                "label_changed": round(float(torch.cat(flips).float().mean()), 3),
                "mean_abs_edit": round(float(torch.cat(sizes).mean()), 4),
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
