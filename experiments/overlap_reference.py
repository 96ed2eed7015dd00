"""What edit overlap do ideal edits have? Reference values on real digits, no model involved.

    python experiments/overlap_reference.py [--digits 500] [--triples 20000]

``evaluate``'s edit overlap is the cosine between two directions' edits x~0 - x0 of the same
sample, averaged over pairs of directions. Two references on the held-out digits:

- **redrawn digits**: the edit replaces a digit a by another real digit b (b - a), and a second
  direction replaces it by c (c - a); b and c of two other classes, or both of a's class (the
  same digit drawn by another hand). Both edits share -a.
- **style edits**: ten hand-made edits of the same digit (thicker, thinner, rotated +-10 degrees,
  15% wider or narrower, slanted either way, moved right or up by 5% of the width), each one's
  change x' - x; the mean cosine over the 90 ordered pairs of different edits.
- **style edits by sign**: six of them with their opposites (thicker / thinner, rotated +-10
  degrees, wider / narrower, slanted either way, moved right / left, up / down), split as
  ``evaluate`` splits a direction's edits at +S and -S: the even part's share (``metrics.even_share``)
  and the overlap of the plus edits, of their even parts and of their odd parts; and how the even
  parts point: their cosine with the digit's removal, -(x + 1), and with a blur of it.

Results are in docs/discovery.md ("Edit overlap", "Style edits split by sign").
"""

from __future__ import annotations

import argparse
import json
import math

import torch
import torch.nn.functional as F
from overlap_common_part import even_part_patterns, mean_off_diagonal

from hspace.data import load_dataset
from hspace.metrics import edit_overlap, even_share


def affine(
    x: torch.Tensor, angle: float = 0.0, scale: float = 1.0, shear: float = 0.0, tx: float = 0.0, ty: float = 0.0
):
    """x [N x C x H x W] resampled under a small affine map (coordinates in [-1, 1])."""
    a = math.radians(angle)
    theta = torch.tensor(
        [[math.cos(a) / scale, -math.sin(a) / scale + shear, tx], [math.sin(a) / scale, math.cos(a) / scale, ty]],
        dtype=x.dtype,
    ).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="border")


def style_edits(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Ten named edits of x [N x C x H x W] in [-1, 1] (ink is +1): each one's change [N x C x H x W]."""
    return {
        "thicker": F.max_pool2d(x, 3, 1, 1) - x,
        "thinner": -F.max_pool2d(-x, 3, 1, 1) - x,
        "rotate +10": affine(x, angle=10) - x,
        "rotate -10": affine(x, angle=-10) - x,
        "wider": affine(x, scale=1.15) - x,
        "narrower": affine(x, scale=0.87) - x,
        "slant +": affine(x, shear=0.2) - x,
        "slant -": affine(x, shear=-0.2) - x,
        "right": affine(x, tx=-0.1) - x,
        "up": affine(x, ty=0.1) - x,
    }


SIGNED_STYLE_EDITS = ("thickness", "rotation", "width", "slant", "horizontal move", "vertical move")


def signed_style_edits(x: torch.Tensor, e: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Six style edits of x [N x C x H x W] with their opposites, from its ten ``style_edits`` ``e``
    (and the two moves back): (change at +, change at -) each."""
    pairs = {
        "thickness": (e["thicker"], e["thinner"]),
        "rotation": (e["rotate +10"], e["rotate -10"]),
        "width": (e["wider"], e["narrower"]),
        "slant": (e["slant +"], e["slant -"]),
        "horizontal move": (e["right"], affine(x, tx=0.1) - x),
        "vertical move": (e["up"], affine(x, ty=-0.1) - x),
    }
    assert tuple(pairs) == SIGNED_STYLE_EDITS
    return pairs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--digits", type=int, default=500)
    ap.add_argument("--triples", type=int, default=20000)
    args = ap.parse_args()
    x, y = load_dataset("mnist", 32, 1, split="heldout")
    flat = x.flatten(1).double()  # [N x P]
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randint(0, len(x), (args.triples,), generator=g) for _ in range(3))
    cos = F.cosine_similarity(flat[b] - flat[a], flat[c] - flat[a], dim=1)  # [triples]
    other = (y[a] != y[b]) & (y[a] != y[c]) & (y[b] != y[c])
    same = (y[a] == y[b]) & (y[a] == y[c]) & (a != b) & (a != c) & (b != c)

    digits = x[: args.digits].double()
    edits = style_edits(digits)
    cosines = edit_overlap(torch.stack(list(edits.values())))  # [E x E], as evaluate's overlap
    off = ~torch.eye(len(edits), dtype=torch.bool)
    signed = signed_style_edits(digits, edits)
    plus, minus = (torch.stack([pair[i] for pair in signed.values()]) for i in (0, 1))  # [6 x N x C x H x W]
    by_sign = {
        "even_share": {n: round(float(even_share(p, m).mean()), 3) for n, (p, m) in signed.items()},
        "even_share_mean": round(float(even_share(plus, minus).mean()), 3),
        "overlap_plus": mean_off_diagonal(edit_overlap(plus)),
        "overlap_even_part": mean_off_diagonal(edit_overlap((plus + minus) / 2)),
        "overlap_odd_part": mean_off_diagonal(edit_overlap((plus - minus) / 2)),
        **even_part_patterns(digits, (plus + minus) / 2),
    }
    print(
        json.dumps(
            {
                "redrawn_other_classes": round(float(cos[other].mean()), 3),
                "redrawn_other_classes_n": int(other.sum()),
                "redrawn_same_class": round(float(cos[same].mean()), 3),
                "redrawn_same_class_n": int(same.sum()),
                "style_edits": round(float(cosines[off].mean()), 3),
                "style_edits_by_sign": by_sign,
                "style_edit_pairs": {
                    f"{n1} / {n2}": round(float(cosines[i, j]), 2)
                    for i, n1 in enumerate(edits)
                    for j, n2 in enumerate(edits)
                    if i < j
                },
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
