"""Held-out RCA against training steps for several discovery runs, from their log.csv.

python experiments/plot_rca.py OUT.png LABEL=RUN_FOLDER [LABEL=RUN_FOLDER ...]
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def held_out_curve(folder: Path) -> tuple[list[int], list[float]]:
    with (folder / "log.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("rca_heldout")]
    return [int(r["step"]) for r in rows], [float(r["rca_heldout"]) for r in rows]


def main(out: str, runs: list[str]) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for spec in runs:
        label, _, folder = spec.partition("=")
        steps, rca = held_out_curve(Path(folder))
        ax.plot(steps, rca, marker="o", ms=3, label=label)
    ax.set(xlabel="training step", ylabel="held-out RCA", ylim=(0, 1), title="held-out RCA (fixed pairs, eval mode)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
