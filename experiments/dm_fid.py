"""FID of a diffusion model's DDIM samples against the 1,000 held-out digits (shipped classifier features).

    python experiments/dm_fid.py MODEL [--samples 5000] [--steps 10 50] [--batch-size 250] [--device cuda]

The same measure as ``hspace evaluate``'s ``fid_raw`` (x_T seeds 0.., clamped to [-1, 1], features of
``hspace/assets/mnist-classifier.safetensors``), without a discovery run. Results are in docs/discovery.md.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from hspace import load_model, sample, uniform_timesteps
from hspace.classifier import load_classifier
from hspace.data import load_dataset
from hspace.metrics import frechet_distance
from hspace.sampling import seed_noise


@torch.no_grad()
def model_fid(model, num_samples: int, steps: int, batch_size: int) -> float:
    device = model.alphas_cumprod.device
    features = load_classifier(device=device).features
    real, _ = load_dataset("mnist", model.image_size, model.in_channels, split="heldout")
    f_real = features(real.to(device)).cpu()
    timesteps = uniform_timesteps(steps)
    f_fake = []
    for start in range(0, num_samples, batch_size):
        seeds = range(start, min(start + batch_size, num_samples))
        x_T = seed_noise(seeds, model.in_channels, model.image_size).to(device)
        f_fake.append(features(sample(model, x_T, timesteps).clamp(-1, 1)).cpu())
    return frechet_distance(f_real, torch.cat(f_fake))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--steps", type=int, nargs="+", default=[10])
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    model = load_model(args.model).to(args.device)
    for steps in args.steps:
        start = time.monotonic()
        fid = model_fid(model, args.samples, steps, args.batch_size)
        row = {"model": args.model, "samples": args.samples, "ddim_steps": steps, "fid": round(fid, 2)}
        print(json.dumps({**row, "seconds": round(time.monotonic() - start, 1)}), flush=True)


if __name__ == "__main__":
    main()
