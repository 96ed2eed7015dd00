"""How much of the shifted samples' FID is a change of digit classes, and how much is unrealistic images?

    python experiments/fid_class_mix.py RUN [--num-pairs 1000] [--json PATH]

``evaluate`` compares raw and shifted samples with the held-out digits in the shipped classifier's
features. Those features separate the classes, so a set of perfectly drawn digits with another
class mix than the real one also scores a higher FID. This classifies raw and shifted samples with
the same classifier and reweights the held-out digits (weights p_set(class) / p_real(class)) to each
set's class mix:

- ``fid_mix_only``: real digits reweighted to the shifted samples' class mix, against the real ones:
  the FID that the class mix alone gives to perfectly real digits;
- ``fid_*_matched``: raw and shifted samples against real digits reweighted to their own class mix:
  what is left when the class mix is taken out (how digit-like the images are).
"""

from __future__ import annotations

import argparse
import json

import torch

from hspace.classifier import load_classifier
from hspace.data import load_dataset
from hspace.evaluate import reconstructor_accuracy
from hspace.metrics import frechet_distance, frechet_from_stats
from hspace.run import load_run


def weighted_stats(f: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean [D] and covariance [D x D] (float64) of features f [N x D] with weights w [N]."""
    f, w = f.double(), w.double()
    return (w[:, None] * f).sum(0) / w.sum(), torch.cov(f.T, aweights=w)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--num-pairs", type=int, default=1000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    run = load_run(args.run)
    clf = load_classifier()

    def features_and_class(x):  # [N x (D + 1)]: the FID features, then the predicted class
        return torch.cat([clf.features(x), clf(x).argmax(1, keepdim=True).to(x.dtype)], 1)

    got = reconstructor_accuracy(run, args.num_pairs, features=features_and_class, progress=False)
    m = run.model
    real, labels = load_dataset("mnist", m.image_size, m.in_channels, split="heldout")
    with torch.no_grad():
        f_real = torch.cat([clf.features(real[i : i + 500]) for i in range(0, len(real), 500)])
    sets = {"raw": got["features_raw"], "shifted": got["features_shifted"]}
    p_real = torch.bincount(labels.long(), minlength=10).double() / len(labels)
    real_stats = weighted_stats(f_real, torch.ones(len(f_real)))
    out = {"run": run.name, "num_pairs": args.num_pairs, "class_share_real": p_real.tolist()}
    for name, f in sets.items():
        feats, cls = f[:, :-1], f[:, -1].long()
        p = torch.bincount(cls, minlength=10).double() / len(cls)
        reweighted = weighted_stats(f_real, (p / p_real)[labels.long()])
        out[f"class_share_{name}"] = [round(v, 3) for v in p.tolist()]
        out[f"fid_{name}"] = round(frechet_distance(f_real, feats), 2)
        out[f"fid_{name}_matched"] = round(
            frechet_from_stats(*reweighted, *weighted_stats(feats, torch.ones(len(feats)))), 2
        )
        out[f"fid_mix_only_{name}"] = round(frechet_from_stats(*reweighted, *real_stats), 2)
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
