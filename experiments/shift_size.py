"""How far a run's directions move h: RMS(f_t(h, k)) / RMS(h) at s = 1, per direction, at each shifted step.

    python experiments/shift_size.py RUN [--model MODEL] [--samples 16]

Over ``--samples`` plain DDIM chains of the run's own length (seed 0), at every t >= t_stop. With
``--shift-norm r`` this is r by construction; with the paper's free norm it is whatever training
grew. Results are in docs/discovery.md, section 2 ("Norm-controlled directions").
"""

from __future__ import annotations

import argparse

import torch

from hspace.directions import rms
from hspace.models import load_model
from hspace.run import load_run
from hspace.sampling import ddim_step, timestep_batch
from hspace.schedule import chain_alpha_bars


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--model", default=None, help="the run's model, if it cannot reopen it by name")
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args()
    run = load_run(args.run, model=load_model(args.model) if args.model else None)
    model, block = run.model, run.shift_block
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.samples, model.in_channels, model.image_size, model.image_size, generator=g)
    sizes = []  # [shifted steps x K]
    for t, abar_t, abar_prev in chain_alpha_bars(model.alphas_cumprod, run.timesteps):
        h, state = model.encode(x, timestep_batch(t, x))
        if t >= run.config.t_stop:
            z = block.features(h, state.emb)
            ratios = [(rms(block.direction(z, h, k)) / rms(h)).mean().item() for k in range(run.config.K)]
            sizes.append(ratios)
            print(f"t={t:4d}  " + " ".join(f"{r:.2f}" for r in ratios))
        x = ddim_step(x, model.decode(h, state), abar_t, abar_prev)
    per_direction = torch.tensor(sizes).mean(0)
    print(f"per direction, mean over steps: {per_direction.min():.2f}-{per_direction.max():.2f} x RMS(h) at s = 1")


if __name__ == "__main__":
    main()
