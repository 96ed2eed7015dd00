"""Which steps of the chain decide what an h shift does to the digit? Random shifts by window.

    python experiments/shift_window.py [MODEL] [--M 10] [--size 1] [--K 8] [--seeds 16]

K fixed random h directions (Gaussian, unit RMS), applied as Delta h = size x RMS(h) x d_k on
the asymmetric steps (Eq. 2) whose t lies in a window, plain DDIM elsewhere, from the same x_T.
Per window: the mean |x~0 - x0|, how often the shipped digit classifier's label changes (an edit
that redraws the digit as another), the edit overlap between directions (as ``evaluate``), and the
share of each edit that is even in the sign of the shift (the same change at +d and -d; see
``metrics.even_share``).
Results are in docs/discovery.md ("Where in the chain").
"""

from __future__ import annotations

import argparse
import json
from functools import partial

import torch

from hspace.classifier import load_classifier, predict
from hspace.metrics import edit_overlap, even_share
from hspace.models import load_model
from hspace.sampling import asymmetric_ddim_step, seed_noise, timestep_batch
from hspace.schedule import chain_alpha_bars, uniform_timesteps

WINDOWS = [(900, 400), (900, 700), (600, 400), (500, 200), (300, 100)]


@torch.no_grad()
def chain(model, x_T, timesteps, shift=None, window=(0, -1)):
    """The 10-step chain; ``shift(h)`` is added to h on the steps with window[1] <= t <= window[0]."""
    x = x_T
    for t, abar_t, abar_prev in chain_alpha_bars(model.alphas_cumprod, timesteps):
        h, state = model.encode(x, timestep_batch(t, x))
        eps = model.decode(h, state)
        eps_hat = model.decode(h + shift(h), state) if shift is not None and window[1] <= t <= window[0] else eps
        x = asymmetric_ddim_step(x, eps, eps_hat, abar_t, abar_prev)
    return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="default")
    ap.add_argument("--M", type=int, default=10)
    ap.add_argument("--size", type=float, default=1.0)
    ap.add_argument("--K", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=16)
    args = ap.parse_args()
    model = load_model(args.model).freeze()
    classifier = load_classifier()
    timesteps = uniform_timesteps(args.M, model.num_train_steps)
    x_T = seed_noise(range(args.seeds), model.in_channels, model.image_size)
    x0 = chain(model, x_T, timesteps)
    label = predict(classifier, x0.clamp(-1, 1))
    h0, _ = model.encode(x_T, timestep_batch(timesteps[0], x_T))
    g = torch.Generator().manual_seed(0)
    directions = torch.randn(args.K, *h0.shape[1:], generator=g)
    directions = directions / directions.flatten(1).pow(2).mean(1).sqrt().view(-1, 1, 1, 1)  # unit RMS

    for window in WINDOWS:
        changes, flips, evens = [], [], []
        for d in directions:

            def shift(h, d=d, sign=1.0):
                rms = h.flatten(1).pow(2).mean(1).sqrt().view(-1, 1, 1, 1)  # [N x 1 x 1 x 1]
                return sign * args.size * rms * d

            x0_shift = chain(model, x_T, timesteps, shift, window)
            x0_opposite = chain(model, x_T, timesteps, partial(shift, sign=-1.0), window)
            changes.append(x0_shift - x0)
            evens.append(even_share(x0_shift - x0, x0_opposite - x0))
            flips.append((predict(classifier, x0_shift.clamp(-1, 1)) != label).float().mean())
        changes = torch.stack(changes)  # [K x seeds x C x H x W]
        off = ~torch.eye(args.K, dtype=torch.bool)
        row = {
            "model": args.model,
            "size": args.size,
            "window": list(window),
            "mean_abs_edit": round(float(changes.abs().mean()), 4),
            "label_changed": round(float(torch.stack(flips).mean()), 3),
            "overlap": round(float(edit_overlap(changes)[off].mean()), 3),
            "even_share": round(float(torch.stack(evens).mean()), 3),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
