"""A run's directions at smaller magnitudes: how RCA and the realism of shifted samples trade off.

    python experiments/magnitude_sweep.py [RUN] [--S 5 2.5 1.5] [--pairs 1000]

For each S, the pairs are drawn as in training but with |s| in [min_shift, S] (the run's own
reconstructor, trained on |s| up to the run's S, judges them), and the FID of raw and shifted
samples is taken against the 1,000 held-out digits (shipped classifier features), and the mean
overlap of the directions' edits at s = +S, as ``hspace evaluate`` does. One JSON line per S.
Results are in docs/discovery.md, sections 2 ("Refining") and 4.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from hspace.data import load_dataset
from hspace.evaluate import (
    edit_measures,
    load_feature_extractor,
    rank_directions,
    reconstructor_accuracy,
    summarise_overlap,
)
from hspace.metrics import frechet_distance
from hspace.run import load_run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?", default="default")
    ap.add_argument("--S", type=float, nargs="+", default=[5.0, 2.5, 1.5])
    ap.add_argument("--pairs", type=int, default=1000)
    args = ap.parse_args()
    run = load_run(args.run)
    features = load_feature_extractor(None)
    real, _ = load_dataset("mnist", run.model.image_size, run.model.in_channels, split="heldout")
    with torch.no_grad():
        f_real = features(real)
    ks = list(range(run.config.K))
    for S in args.S:
        start = time.monotonic()
        smaller = dataclasses.replace(run, config=dataclasses.replace(run.config, S=S))
        r = reconstructor_accuracy(smaller, args.pairs, features=features, progress=False)
        _, plus, minus = rank_directions(smaller, ks)
        overlap, _ = edit_measures(plus, minus)
        row = {
            "S": S,
            "pairs": args.pairs,
            "rca": round(r["rca"], 3),
            "shift_mae": round(r["shift_mae"], 3),
            "fid_raw": round(frechet_distance(f_real, r["features_raw"]), 2),
            "fid_shifted": round(frechet_distance(f_real, r["features_shifted"]), 2),
            "edit_overlap": round(summarise_overlap(overlap, ks)["edit_overlap_mean"], 3),
            "seconds": round(time.monotonic() - start, 1),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
