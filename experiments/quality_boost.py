"""Do stochastic last steps make shifted samples more real? Asyrp's "quality boosting", measured.

    python experiments/quality_boost.py [RUN] [--boosts 0:0,500:1] [--seed 0] [--num-pairs 1000]
        [--refit-pairs 6000 --epochs 15]

Asyrp (Kwon et al. 2023) ends its editing chain with stochastic steps (eta > 0) to repair edited
samples; the paper does not. Here the run's chain is run on ``evaluate``'s pairs (same x_T seeds,
same k and s) as plain DDIM except that the steps with t <= t_boost use eta, with the same noise
in the real and the shifted chain (noise per sample from its own generator: results do not
depend on the batch). Per (t_boost, eta): FID of raw and shifted samples against the held-out
digits (the shipped classifier's features, as ``evaluate``), how often the classifier's label
changes, and the RCA of the run's own reconstructor. ``0:0`` is the run's plain chain, so its row
repeats ``evaluate``'s figures.

With ``--refit-pairs N``, for the last boost given: the run's reconstructor trained on for
``--epochs`` epochs on N boosted pairs drawn once on x_T seeds apart from ``evaluate``'s, and
scored after each epoch on the pairs above: does a reconstructor that knows the noise tell the
fixed directions apart again? Results are in docs/discovery.md ("Stochastic last steps").
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch
from reconstructor_ceiling import TRAIN_SEEDS, fit, rca

from hspace.classifier import load_classifier
from hspace.data import load_dataset
from hspace.metrics import frechet_distance
from hspace.nets import build_reconstructor
from hspace.run import load_run
from hspace.sampling import asymmetric_ddim_step, seed_noise, shifted_eps, timestep_batch
from hspace.schedule import chain_alpha_bars
from hspace.train import draw_edits

NOISE_SEEDS = 10**9  # the boost's noise for x_T seed j comes from generator NOISE_SEEDS + j


def step_noise(seeds: range, steps: int, shape: tuple) -> torch.Tensor:
    """Noise [steps x n x C x H x W]: sample i's from its own generator, so batches do not matter."""
    per_sample = [torch.randn((steps, *shape), generator=torch.Generator().manual_seed(NOISE_SEEDS + j)) for j in seeds]
    return torch.stack(per_sample, dim=1)


@torch.no_grad()
def boosted_pairs(run, first_seed: int, n: int, generator: torch.Generator, t_boost: int, eta: float, batch=200):
    """(k [n], s [n], x0, x~0 [n x C x H x W]): the run's chain, with eta on the steps t <= t_boost."""
    m, cfg = run.model, run.config
    k, s = draw_edits(n, cfg, generator)
    steps = chain_alpha_bars(m.alphas_cumprod, run.timesteps)  # M x (t, abar_t, abar_prev)
    x0, x0s = [], []
    for a in range(0, n, batch):
        seeds = range(first_seed + a, first_seed + min(a + batch, n))
        x_real = x_shift = seed_noise(seeds, m.in_channels, m.image_size)
        noise = step_noise(seeds, len(steps), x_real.shape[1:])
        edits = [(k[a : a + batch], s[a : a + batch])]
        for i, (t, abar_t, abar_prev) in enumerate(steps):
            step_eta = eta if t <= t_boost and abar_prev < 1.0 else 0.0
            eps, _ = shifted_eps(m, x_real, timestep_batch(t, x_real))
            x_real = asymmetric_ddim_step(x_real, eps, eps, abar_t, abar_prev, step_eta, noise[i])
            block = run.shift_block if t >= cfg.t_stop else None
            eps, eps_hat = shifted_eps(m, x_shift, timestep_batch(t, x_shift), block, edits)
            x_shift = asymmetric_ddim_step(x_shift, eps, eps_hat, abar_t, abar_prev, step_eta, noise[i])
        x0.append(x_real)
        x0s.append(x_shift)
    return k, s, torch.cat(x0), torch.cat(x0s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?", default="default")
    ap.add_argument("--boosts", default="0:0,500:1", help="t_boost:eta pairs; 0:0 is the plain chain")
    ap.add_argument("--seed", type=int, default=0, help="evaluate's --seed: which pairs")
    ap.add_argument("--num-pairs", type=int, default=1000)
    ap.add_argument("--refit-pairs", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=15)
    args = ap.parse_args()
    run = load_run(args.run)
    m, cfg = run.model, run.config
    clf = load_classifier()
    own = run.load_part("reconstructor", build_reconstructor(cfg.reconstructor, m.in_channels, cfg.K))
    real, _ = load_dataset("mnist", m.image_size, m.in_channels, split="heldout")
    with torch.no_grad():
        f_real = torch.cat([clf.features(real[i : i + 500]) for i in range(0, len(real), 500)])
    for boost in args.boosts.split(","):
        t_boost, eta = int(boost.split(":")[0]), float(boost.split(":")[1])
        start = time.monotonic()
        g = torch.Generator().manual_seed(args.seed)  # evaluate's draw of k and s
        test = boosted_pairs(run, args.seed * 10**7, args.num_pairs, g, t_boost, eta)
        k, _, x0, x0s = test
        with torch.no_grad():
            x0, x0s = x0.clamp(-1, 1), x0s.clamp(-1, 1)
            raw = frechet_distance(f_real, clf.features(x0))
            shifted = frechet_distance(f_real, clf.features(x0s))
            changed = (clf(x0).argmax(1) != clf(x0s).argmax(1)).float().mean()
        row = {
            "run": str(args.run),
            "seed": args.seed,
            "t_boost": t_boost,
            "eta": eta,
            "fid_raw": round(raw, 2),
            "fid_shifted": round(shifted, 2),
            "fid_excess": round(shifted / raw - 1, 3),
            "label_changed": round(float(changed), 3),
            "rca_own_reconstructor": round(rca(own, test), 3),
            "seconds": round(time.monotonic() - start),
        }
        print(json.dumps(row), flush=True)
    if args.refit_pairs:
        train = boosted_pairs(run, TRAIN_SEEDS, args.refit_pairs, torch.Generator().manual_seed(3), t_boost, eta)
        curve = fit(copy.deepcopy(own), train, test, args.epochs, 1e-3, cfg.lambda2 / cfg.lambda1)
        print(json.dumps({"t_boost": t_boost, "eta": eta, "refit_pairs": args.refit_pairs, "rca_per_epoch": curve}))


if __name__ == "__main__":
    main()
