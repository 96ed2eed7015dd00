"""Why directions' edits overlap: how much of each edit is a part that every direction shares.

    python experiments/overlap_common_part.py [RUN] [--seeds 8]

``evaluate``'s edit overlap is the mean cosine between different directions' image changes
x(+S) - x(0) on the same seeds. This splits it: the overlap at +S and at -S, the cosine between a
direction's own +S and -S edits (positive: both contain the same change, whatever the sign), each
edit's squared cosine with the mean edit over all directions on that seed (the shared part), and
the overlap once that mean is taken out; and the split of each edit into the part even in s
(x(+S) + x(-S)) / 2 - x(0), which both signs make, and the odd part (x(+S) - x(-S)) / 2: the even
part's share of the squared edit (the quantity `--even-edit-weight` trains down) at |s| = S/4 .. S,
with the edits' RMS there, the overlap of each part alone, and how the even parts point (their
cosine with the digit's removal and with its blur; ``overlap_reference.py`` gives the same for
hand-made style edits of real digits), and the overlap among edits that keep the digit's label (the
shipped classifier's) and among those that change it. Results are in docs/discovery.md, section 2
("Refining", "Even edits", "Style edits split by sign").
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from hspace.classifier import load_classifier, predict
from hspace.metrics import edit_overlap, even_share
from hspace.run import load_run
from hspace.sampling import seed_noise


def unit(changes: torch.Tensor) -> torch.Tensor:
    """Each image change [... x C x H x W] flattened to unit length [... x P]."""
    return torch.nn.functional.normalize(changes.flatten(-3).double(), dim=-1)


def mean_off_diagonal(matrix: torch.Tensor) -> float:
    off = ~torch.eye(matrix.shape[0], dtype=torch.bool)
    return round(float(matrix[off].mean()), 3)


def even_part_patterns(x0: torch.Tensor, even: torch.Tensor) -> dict[str, float]:
    """Mean cosine of even parts [... x N x C x H x W] with the removal of the digit x0 [N x C x H x W]
    (ink is +1, so -(x0 + 1)) and with its blur (a 3 x 3 box average minus x0)."""
    removal = -(x0 + 1)
    blur = F.avg_pool2d(x0, 3, 1, 1, count_include_pad=False) - x0
    return {
        "cos_even_part_with_removal": round(
            float(F.cosine_similarity(even.flatten(-3), removal.flatten(-3), -1).mean()), 3
        ),
        "cos_even_part_with_blur": round(float(F.cosine_similarity(even.flatten(-3), blur.flatten(-3), -1).mean()), 3),
    }


def overlap_by_label(plus: torch.Tensor, x0: torch.Tensor, x_plus: torch.Tensor) -> dict:
    """The overlap of edits [K x R x C x H x W] split by whether the shipped digit classifier's label
    of x0 [R x C x H x W] survives each edit x_plus [K x R x C x H x W]: pairs of edits that both keep it,
    that both change it, and one of each (a direction and a seed can be in any of the three)."""
    classifier = load_classifier()
    before = predict(classifier, x0.clamp(-1, 1))  # [R]
    kept = torch.stack([predict(classifier, x.clamp(-1, 1)) == before for x in x_plus])  # [K x R]
    d = unit(plus)  # [K x R x P]
    cosine = torch.einsum("irp,jrp->ijr", d, d)  # [K x K x R]
    other = ~torch.eye(len(plus), dtype=torch.bool)[:, :, None]
    both, neither = kept[:, None] & kept[None], ~kept[:, None] & ~kept[None]
    return {
        "label_kept_at_plus_S": round(float(kept.float().mean()), 3),
        "overlap_both_keep_label": round(float(cosine[other & both].mean()), 3),
        "overlap_both_change_label": round(float(cosine[other & neither].mean()), 3),
        "overlap_one_keeps_label": round(float(cosine[other & ~both & ~neither].mean()), 3),
        "pairs_both_keep_label": int((other & both).sum()),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?", default="default")
    ap.add_argument("--seeds", type=int, default=8)
    args = ap.parse_args()
    run = load_run(args.run)
    S = run.config.S
    x_T = seed_noise(range(args.seeds), run.model.in_channels, run.model.image_size)
    sizes = [S / 4, S / 2, 3 * S / 4, S]
    with torch.no_grad():  # [K x seeds x 9 x C x H x W]: s = -S .. +S
        x = torch.stack([run.sweep(k, x_T, [-a for a in reversed(sizes)] + [0.0] + sizes) for k in range(run.config.K)])
    edits = x - x[:, :, 4:5]  # each magnitude's change from s = 0
    plus, minus = edits[:, :, 8], edits[:, :, 0]  # [K x seeds x C x H x W]
    shared = plus.mean(0, keepdim=True)  # the mean edit over directions, per seed
    even, odd = (plus + minus) / 2, (plus - minus) / 2  # [K x seeds x C x H x W]
    row = {
        "run": str(args.run),
        "overlap_plus_S": mean_off_diagonal(edit_overlap(plus)),
        "overlap_minus_S": mean_off_diagonal(edit_overlap(minus)),
        "cos_own_plus_minus": round(float((unit(plus) * unit(minus)).sum(-1).mean()), 3),
        "cos2_with_mean_edit": round(float((unit(plus) * unit(shared)).sum(-1).pow(2).mean()), 3),
        "overlap_without_mean_edit": mean_off_diagonal(edit_overlap(plus - shared)),
        "even_share": {
            f"{a:g}": round(float(even_share(edits[:, :, 5 + i], edits[:, :, 3 - i]).mean()), 3)
            for i, a in enumerate(sizes)
        },
        "edit_rms": {
            f"{a:g}": round(float(edits[:, :, 5 + i].flatten(2).pow(2).mean(-1).sqrt().mean()), 3)
            for i, a in enumerate(sizes)
        },
        "overlap_even_part": mean_off_diagonal(edit_overlap(even)),
        "overlap_odd_part": mean_off_diagonal(edit_overlap(odd)),
        **even_part_patterns(x[0, :, 4], even),
        **overlap_by_label(plus, x[0, :, 4], x[:, :, 8]),
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
