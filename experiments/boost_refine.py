"""Can directions learn edits that survive stochastic last steps? A refinement trained through them.

    python experiments/boost_refine.py --t-boost 500 --eta 1 -- DISCOVER-ARGS...

``hspace discover DISCOVER-ARGS`` with its gradients computed on chains whose steps t <= t_boost
use eta (``experiments/quality_boost.py``; fresh noise every step, the same in the real and the
shifted chain), by plain autograd through the whole chain (``--algorithm vanilla``'s gradients on
that chain). The real-chain cache must be off (``--real-cache 0``): cached real chains carry no
noise. ``discover``'s own held-out RCA runs the plain chain; score the result with
``quality_boost.py RUN_FOLDER --boosts T:ETA``. Results are in docs/discovery.md ("Stochastic
last steps").
"""

from __future__ import annotations

import argparse
import sys

import torch

import hspace.train as train
from hspace.cli import main as hspace_main
from hspace.sampling import asymmetric_ddim_step, shifted_eps, timestep_batch
from hspace.schedule import chain_alpha_bars


def boosted_gradients(t_boost: int, eta: float):
    """A stand-in for ``train.compute_gradients`` on the boosted chain (same arguments and results; one process)."""

    def compute(model, modules, opt_d, x_T, k, s, timesteps, cfg, _kept, x0_cached=None, *_one_process):
        if x0_cached is not None:
            raise ValueError("cached real chains carry no noise: pass --real-cache 0")
        edits = [(k, s)]
        x_real = x_shift = x_T  # [N x C x H x W]
        for t, abar_t, abar_prev in chain_alpha_bars(model.alphas_cumprod, timesteps):
            step_eta = eta if t <= t_boost and abar_prev < 1.0 else 0.0
            noise = torch.randn_like(x_T) if step_eta > 0 else None
            with torch.no_grad():
                eps = model(x_real, timestep_batch(t, x_real))
                x_real = asymmetric_ddim_step(x_real, eps, eps, abar_t, abar_prev, step_eta, noise)
            block = modules.shift_block if t >= cfg.t_stop else None
            eps, eps_hat = shifted_eps(model, x_shift, timestep_batch(t, x_shift), block, edits)
            x_shift = asymmetric_ddim_step(x_shift, eps, eps_hat, abar_t, abar_prev, step_eta, noise)
        opt_d.zero_grad(set_to_none=True)
        loss_d = train.discriminator_loss(modules.discriminator, x_real, x_shift.detach())
        loss_d.backward()
        opt_d.step()
        modules.discriminator.requires_grad_(False)  # L_G trains the generator only
        losses = train.generator_losses(modules, x_real, x_shift, k, s, cfg)
        modules.discriminator.requires_grad_(True)
        torch.autograd.backward(losses["loss_g"] + losses["loss_r"], inputs=modules.generator_parameters())
        metrics = {"loss_d": loss_d.item(), **{name: losses[name].item() for name in ("loss_g", "loss_r", "acc")}}
        return metrics, x_real

    return compute


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--t-boost", type=int, default=500)
    ap.add_argument("--eta", type=float, default=1.0)
    ap.add_argument("discover", nargs=argparse.REMAINDER, help="-- then hspace discover's arguments")
    args = ap.parse_args()
    train.compute_gradients = boosted_gradients(args.t_boost, args.eta)
    discover_args = args.discover[1:] if args.discover[:1] == ["--"] else args.discover
    sys.exit(hspace_main(["discover", *discover_args]))


if __name__ == "__main__":
    main()
