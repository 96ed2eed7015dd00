"""Held-out RCA and L_G against training steps for several discovery runs, from their log.csv.

python experiments/plot_rca.py OUT.png LABEL=RUN_FOLDER [LABEL=RUN_FOLDER ...]

Left: held-out RCA at each evaluation. Right: L_G, averaged over windows of 25 steps, against
ln 2 (the discriminator at chance) and the issue's band of +- 0.05 around it.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

WINDOW = 25


def read_log(folder: Path) -> list[dict[str, str]]:
    with (folder / "log.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def held_out_curve(rows: list[dict[str, str]]) -> tuple[list[int], list[float]]:
    rows = [r for r in rows if r.get("rca_heldout")]
    return [int(r["step"]) for r in rows], [float(r["rca_heldout"]) for r in rows]


def loss_g_curve(rows: list[dict[str, str]]) -> tuple[list[int], list[float]]:
    """Mean L_G over consecutive windows of WINDOW steps, placed at each window's last step."""
    steps, means = [], []
    for start in range(0, len(rows) - WINDOW + 1, WINDOW):
        window = rows[start : start + WINDOW]
        steps.append(int(window[-1]["step"]))
        means.append(sum(float(r["loss_g"]) for r in window) / WINDOW)
    return steps, means


def main(out: str, runs: list[str]) -> None:
    fig, (ax_rca, ax_g) = plt.subplots(1, 2, figsize=(10, 3.5))
    for spec in runs:
        label, _, folder = spec.partition("=")
        rows = read_log(Path(folder))
        ax_rca.plot(*held_out_curve(rows), marker="o", ms=3, label=label)
        ax_g.plot(*loss_g_curve(rows), marker=".", ms=3, label=label)
    ax_rca.set(
        xlabel="training step", ylabel="held-out RCA", ylim=(0, 1), title="held-out RCA (fixed pairs, eval mode)"
    )
    ax_g.axhspan(math.log(2) - 0.05, math.log(2) + 0.05, color="grey", alpha=0.2, lw=0)
    ax_g.axhline(math.log(2), color="grey", lw=1)
    ax_g.set(xlabel="training step", ylabel="L_G", title=f"L_G, mean of {WINDOW} steps (band: ln 2 +- 0.05)")
    for ax in (ax_rca, ax_g):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
