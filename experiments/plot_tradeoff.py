"""The K = 16 runs measured on the default model: RCA against the shifted FID's excess, and the edit overlap.

    python experiments/plot_tradeoff.py [docs/k16-tradeoff.csv] [--out docs/k16-tradeoff.png]

Each row of the CSV is one ``hspace evaluate RUN --num-pairs 1000`` (docs/discovery.md, section 2,
the section named in its last column; the marker says which); the shaded corner is issue 10's
target (RCA >= 0.77, shifted FID within 25% of raw, overlap <= 0.3). The overlap panel also marks what edits made by hand on
real digits give (``experiments/overlap_reference.py``): style edits 0.305, redrawn digits 0.495.
"""

from __future__ import annotations

import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MARKERS = {
    "Refining": "o",
    "Edit overlap": "s",
    "Shifting interval": "^",
    "Shorter interval": "D",
    "Even edits": "v",
    "Style edits": "P",
}  # section -> marker
REFERENCES = {"hand-made style edits": 0.305, "digits redrawn by hand": 0.495}  # overlap_reference.py


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv", nargs="?", default="docs/k16-tradeoff.csv")
    ap.add_argument("--out", default="docs/k16-tradeoff.png")
    args = ap.parse_args()
    with open(args.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    excess = [100 * (float(r["fid_shifted"]) / float(r["fid_raw"]) - 1) for r in rows]
    rca = [float(r["rca"]) for r in rows]
    overlap = [float(r["edit_overlap"]) for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5))
    left.axvspan(0, 25, ymin=0, ymax=1, color="0.93")
    left.axhline(0.77, color="0.6", lw=0.8, ls="--")
    left.axvline(25, color="0.6", lw=0.8, ls="--")
    right.axhline(0.3, color="0.6", lw=0.8, ls="--")
    for name, value in REFERENCES.items():
        right.axhline(value, color="tab:gray", lw=0.8, ls=":")
        right.annotate(
            name,
            (0.02, value),
            xycoords=("axes fraction", "data"),
            fontsize=7,
            xytext=(0, 3),
            textcoords="offset points",
        )
    right.axvline(0.77, color="0.6", lw=0.8, ls="--")
    for r, x, y, o in zip(rows, excess, rca, overlap):
        marker = MARKERS.get(r["section"], "o")
        left.scatter(x, y, marker=marker)
        left.annotate(r["run"], (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
        right.scatter(y, o, marker=marker)
    left.set(xlabel="shifted FID over raw (%)", ylabel="RCA (1,000 pairs)", title="K = 16: RCA against realism")
    right.set(
        xlabel="RCA", ylabel="edit overlap (s = +S, 8 seeds)", title="edit overlap (target <= 0.3)", ylim=(0, 0.55)
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
