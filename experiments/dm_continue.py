"""Continue an ``hspace train-dm`` checkpoint for a wall-clock budget, with the EMA's FID along the way.

    python experiments/dm_continue.py FROM_FOLDER --out OUT --seconds 200 [--batch-size 256] [--device cuda]

For a lent GPU: ``train-dm --resume`` keeps the checkpoint's batch size and stops at a step count,
while a GPU session has minutes. This copies FROM_FOLDER/checkpoint.pt to OUT, may change the batch
size (everything else is the checkpoint's), trains until the budget is spent, and every
``--fid-every`` steps prints the EMA's FID (``dm_fid.model_fid``, 1,000 samples, 10 DDIM steps) as
one JSON line. At the end: OUT/checkpoint.pt (resumable by ``train-dm --resume --batch-size B``),
OUT/ema-fp16.safetensors, and its FID at 10 and 50 DDIM steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import torch
from dm_fid import model_fid

from hspace import load_model
from hspace.artifacts import read_checkpoint
from hspace.backends import save_model
from hspace.data import load_dataset
from hspace.train_dm import DMTrainConfig, DMTrainer


def ema_fid(trainer: DMTrainer, steps: int, samples: int) -> float:
    trainer.ema.eval()
    return model_fid(trainer.ema, samples, steps, batch_size=1000)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("source", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--fid-every", type=int, default=2000)
    ap.add_argument("--fid-samples", type=int, default=1000)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copy(args.source / "checkpoint.pt", args.out / "checkpoint.pt")
    saved = DMTrainConfig(**json.loads(read_checkpoint(args.out / "checkpoint.pt", "cpu")["config"]))
    trainer = DMTrainer(saved, args.out, args.device)
    trainer.load_checkpoint()
    batch = args.batch_size or saved.batch_size
    trainer.cfg = dataclasses.replace(saved, batch_size=batch, train_steps=10**9)
    flags = trainer.cfg.flags
    images, _ = load_dataset("mnist", flags["image_size"], flags["in_channels"], split="train")
    images = images.to(args.device)
    first = trainer.step
    print(
        json.dumps(
            {"start_step": first, "batch_size": batch, "fid10": round(ema_fid(trainer, 10, args.fid_samples), 2)}
        ),
        flush=True,
    )
    start, fid_seconds = time.monotonic(), 0.0
    while time.monotonic() - start < args.seconds:
        loss = trainer.train_step(images)
        if (trainer.step - first) % args.fid_every == 0:
            fid_start = time.monotonic()
            row = {
                "step": trainer.step,
                "loss": round(loss, 4),
                "fid10": round(ema_fid(trainer, 10, args.fid_samples), 2),
            }
            fid_seconds += time.monotonic() - fid_start
            print(json.dumps({**row, "seconds": round(time.monotonic() - start, 1)}), flush=True)
    trainer.save_checkpoint()
    path = save_model(trainer.ema, args.out / "ema-fp16.safetensors", dtype=torch.float16)
    model = load_model(str(path)).to(args.device)
    seconds = time.monotonic() - start - fid_seconds  # training alone
    row = {"step": trainer.step, "steps_per_s": round((trainer.step - first) / seconds, 1), "ema_fp16": str(path)}
    for steps in (10, 50):
        row[f"fid{steps}"] = round(model_fid(model, args.fid_samples, steps, batch_size=1000), 2)
    print(json.dumps(row), flush=True)
    trainer.save_samples()


if __name__ == "__main__":
    main()
