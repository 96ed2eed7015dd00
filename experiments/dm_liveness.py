"""Which MNIST UNet grows a live h-space? Train candidate architectures briefly and probe them as they train.

    python experiments/dm_liveness.py --steps 1500 --probe-every 250 --out runs/dm-liveness [--only NAME,...]

Each candidate trains with the shipped default's recipe (batch 64, lr 5e-4, EMA 0.999, seed 0); every
``--probe-every`` steps its EMA weights are probed (``hspace.probe.probe_liveness``, quick: no skip gains)
and a row is appended to ``<out>/liveness.csv``. Results are in docs/discovery.md.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from hspace.data import load_dataset
from hspace.presets import DM_PRESETS
from hspace.probe import probe_liveness
from hspace.train_dm import DMTrainConfig, DMTrainer

SMALL = DM_PRESETS["MNIST32-small"]
CANDIDATES = {
    "small": SMALL,  # the shipped default's architecture (dormant h after 12k steps)
    "small-attn": {**SMALL, "attention_resolutions": "4,8"},  # self-attention at 8x8 and 4x4
    "shallow-attn": {**SMALL, "channel_mult": "1,2,4", "attention_resolutions": "4"},  # h at 8x8
    "shallow-attn-32": {**SMALL, "num_channels": 32, "channel_mult": "1,2,4", "attention_resolutions": "4"},
    "wide": {**SMALL, "num_channels": 32, "channel_mult": "1,2,2,2"},
    "small-1res": {**SMALL, "num_res_blocks": 1, "channel_mult": "1,2,4,8"},
}


def main():
    torch.set_num_threads(1)  # two candidates train side by side on 2 cores
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--probe-every", type=int, default=250)
    ap.add_argument("--out", default="runs/dm-liveness")
    ap.add_argument("--only", default=",".join(CANDIDATES))
    ap.add_argument("--log", default="liveness.csv")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images, _ = load_dataset("mnist", 32, 1, split="train")
    log = out / args.log
    new = not log.exists()
    with log.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(
                [
                    "name",
                    "params",
                    "step",
                    "loss",
                    "seconds_per_step",
                    "dx0_rand_0.5",
                    "dx0_rand_1",
                    "dx0_top_1",
                    "h_x0_gain_max",
                ]
            )
        for name in args.only.split(","):
            cfg = DMTrainConfig(flags=CANDIDATES[name], train_steps=args.steps, sample_every=0)
            trainer = DMTrainer(cfg, out / name)
            m = trainer.model
            params = sum(p.numel() for p in m.unet.parameters())
            losses, start = [], time.monotonic()
            while trainer.step < args.steps:
                losses.append(trainer.train_step(images))
                if trainer.step % args.probe_every == 0:
                    sec = (time.monotonic() - start) / args.probe_every
                    r = probe_liveness(
                        trainer.ema, M=10, t_stop=400, batch=8, sizes=(0.5, 1.0), top_k=1, skips=False, progress=False
                    )
                    row = [
                        name,
                        params,
                        trainer.step,
                        round(sum(losses) / len(losses), 4),
                        round(sec, 3),
                        round(r.delta_x0_random["0.5"], 4),
                        round(r.delta_x0_random["1"], 4),
                        round(r.delta_x0_top["1"], 4),
                        round(max(r.h_x0_gain), 4),
                    ]
                    w.writerow(row)
                    f.flush()
                    print(*row, flush=True)
                    losses, start = [], time.monotonic()
            trainer.save_checkpoint()


if __name__ == "__main__":
    main()
