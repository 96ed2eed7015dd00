"""Is L_G above ln 2 because D has just trained on the very samples it then judges?

    python experiments/lg_update_order.py [RUN] [--steps 16] [--discriminator-lr LR]

Algorithm 1 updates D on a batch (lines 15-16), then computes L_G on the same x~0 with the updated
D (line 26). This continues training D alone from the run's parts (fresh Adam state, the run's k, s
and chain; the shift block fixed) and prints, per batch, L_D and L_G before and after D's step, and
D's mean logit on x0 and x~0 before it. Means are over the steps after the first four (Adam's
warm-up). Results are in docs/discovery.md ("Even edits").
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
import torch.nn.functional as F

from hspace.discover import check_init_run, load_parts, model_reference
from hspace.models import load_model
from hspace.run import load_run
from hspace.train import DiscoveryTrainer, discriminator_loss, run_chains


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?", default="default")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--discriminator-lr", type=float, default=None)
    args = ap.parse_args()
    run = load_run(args.run)
    cfg = run.config.replace(init_from=args.run, real_cache=0, lr_warmdown=0.0)
    if args.discriminator_lr:
        cfg = cfg.replace(discriminator_lr=args.discriminator_lr)
    model = load_model(run.model_ref["source"])
    trainer = DiscoveryTrainer(model, cfg)
    load_parts(check_init_run(args.run, cfg), trainer.modules, model_reference(run.model_ref["source"], model))
    trainer.modules.train()
    D, rows = trainer.modules.discriminator, []
    for step in range(args.steps):
        x_T, k, s = trainer.draw()
        with torch.no_grad():
            chains = run_chains(
                trainer.model, trainer.modules.shift_block, x_T, [(k, s)], trainer.timesteps, cfg.t_stop, 0
            )
            real, fake = D(chains.x0_real), D(chains.x0_shift)  # logits [N]
        trainer.opt_d.zero_grad(set_to_none=True)
        loss_d = discriminator_loss(D, chains.x0_real, chains.x0_shift)
        loss_d.backward()
        trainer.opt_d.step()
        with torch.no_grad():
            after = F.softplus(-D(chains.x0_shift)).mean().item()
        row = {
            "step": step,
            "loss_d": round(loss_d.item(), 3),
            "loss_g_before": round(F.softplus(-fake).mean().item(), 3),
            "loss_g_after": round(after, 3),
            "logit_real": round(real.mean().item(), 3),
            "logit_fake": round(fake.mean().item(), 3),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    kept = rows[4:]
    print(json.dumps({name: round(statistics.mean(r[name] for r in kept), 3) for name in rows[0] if name != "step"}))


if __name__ == "__main__":
    main()
