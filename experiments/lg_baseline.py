"""How far above ln 2 does L_G sit when there is nothing to find? A baseline for issue 10's L_G target.

    python experiments/lg_baseline.py [RUN] [--steps 250] [--settle 100] [--style NAME ...] [--r1 GAMMA ...]

Trains a fresh discriminator (the run's architecture, initialisation and learning rate; Adam) the
way ``discover`` does, on fresh draws every step (no real-chain cache), in three settings side by side:

- ``plain``: "fake" samples are plain samples of other x_T, from the same distribution as the real
  ones: a perfect set of edits would look like this, and a discriminator can only fit noise;
- ``edited``: fake samples are the run's edits x~0 of the real samples' x_T, with k and s drawn as in
  training (the run's shift block, fixed);
- ``style``: fake samples are hand-made style edits of the real samples themselves (the twelve of
  ``overlap_reference.signed_style_edits``: thicker / thinner, rotated +-10 degrees, wider / narrower,
  slanted either way, moved by 5% of the width each way), one per sample, each edit as often: what
  ideal edits, which keep the digit and its hand, log against the same D (``--style`` keeps only the
  named pairs, e.g. ``thickness``).

With ``--r1`` each setting has one discriminator per R1 weight (``discover --discriminator-r1``),
all on the same draws; columns of a weight > 0 end in ``_r1_GAMMA``.

The mean |edit| and RMS of the edited and style settings' edits are printed beside L_G, to compare
their sizes.

L_G = mean softplus(-D(x~0)) is taken after D's step on the same batch, as Algorithm 1 does (line
26 after lines 15-16); means are printed over every 100 steps and over the steps after
``--settle``. Results are in docs/discovery.md ("Even edits", "Hand-made style edits against the same
discriminator", "A fresh critic").
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
import torch.nn.functional as F
from overlap_reference import SIGNED_STYLE_EDITS, signed_style_edits, style_edits

from hspace.run import load_run
from hspace.sampling import sample
from hspace.train import DiscoveryTrainer, discriminator_loss, run_chains


def style_edit(x0: torch.Tensor, step: int, names: list[str] | None = None) -> torch.Tensor:
    """One of the signed style edits ``names`` (all twelve by default) of each sample of x0
    [N x C x H x W], in turn (the turn shifted by the step, so that each edit meets each batch
    position): the edited samples."""
    signed = signed_style_edits(x0, style_edits(x0))
    changes = [c for name, pair in signed.items() if names is None or name in names for c in pair]  # [N x ...] each
    which = (torch.arange(len(x0)) + step) % len(changes)  # [N]
    return x0 + torch.stack(changes)[which, torch.arange(len(x0))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?", default="default")
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--settle", type=int, default=100)
    ap.add_argument("--style", nargs="+", help="the style setting's edits, by name (default: all six, both signs)")
    ap.add_argument(
        "--r1",
        type=float,
        nargs="+",
        default=[0.0],
        help="one discriminator per setting and R1 weight (default: 0, off)",
    )
    args = ap.parse_args()
    if unknown := set(args.style or []) - set(SIGNED_STYLE_EDITS):
        ap.error(f"unknown style edit {sorted(unknown)}: pick from {', '.join(SIGNED_STYLE_EDITS)}")
    run = load_run(args.run)
    cfg = run.config.replace(real_cache=0, lr_warmdown=0.0, seed=1)
    model = run.model
    # One trainer per setting and R1 weight: the same fresh D (same seed) in each.
    settings = [(name, r1) for r1 in args.r1 for name in ("plain", "edited", "style")]
    trainers = {setting: DiscoveryTrainer(model, cfg) for setting in settings}
    draws = DiscoveryTrainer(model, cfg)  # one stream of (x_T, k, s) for every setting
    draws.modules.shift_block.load_state_dict(run.shift_block.state_dict())
    rows = []
    for step in range(1, args.steps + 1):
        x_T, k, s = draws.draw()
        other, _, _ = draws.draw()
        with torch.no_grad():
            chains = run_chains(model, draws.modules.shift_block, x_T, [(k, s)], draws.timesteps, cfg.t_stop, 0)
            plain = sample(model, other, draws.timesteps)  # [N x C x H x W]
            styled = style_edit(chains.x0_real, step, args.style)  # [N x C x H x W]
        row = {"step": step}
        fakes = {"plain": plain, "edited": chains.x0_shift, "style": styled}
        for setting, r1 in settings:
            fake = fakes[setting]
            D, opt = trainers[setting, r1].modules.discriminator, trainers[setting, r1].opt_d
            loss_d = discriminator_loss(D, chains.x0_real, fake, r1)
            name = setting if r1 == 0 else f"{setting}_r1_{r1:g}"  # the columns without R1 keep their names
            opt.zero_grad(set_to_none=True)
            loss_d.backward()
            opt.step()
            with torch.no_grad():
                row[f"loss_g_{name}"] = round(F.softplus(-D(fake)).mean().item(), 4)
            row[f"loss_d_{name}"] = round(loss_d.item(), 4)
            if setting != "plain" and r1 == args.r1[0]:  # the edits are the same for every R1 weight
                edit = fake - chains.x0_real
                row[f"mean_abs_edit_{name}"] = round(edit.abs().mean().item(), 4)
                row[f"rms_edit_{name}"] = round(edit.pow(2).mean().sqrt().item(), 4)
        rows.append(row)
        if step % 100 == 0:  # each setting's means over the last 100 steps: does D keep learning?
            window = {name: round(statistics.mean(r[name] for r in rows[-100:]), 3) for name in row if name != "step"}
            print(json.dumps({"steps": f"{step - 99}-{step}", **window}), flush=True)
    kept = [r for r in rows if r["step"] > args.settle]
    summary = {name: round(statistics.mean(r[name] for r in kept), 3) for name in rows[0] if name != "step"}
    print(json.dumps({"run": args.run, "steps": args.steps, "settle": args.settle, **summary}))


if __name__ == "__main__":
    main()
