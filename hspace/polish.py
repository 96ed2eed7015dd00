"""``hspace polish``: train a run's reconstructor on, its directions held fixed.

In discovery the reconstructor chases directions that move every step, and the rates fall to zero
with them at the end of a warm-down. Once the directions are found, the reconstructor can learn them
as they are: fresh pairs every step (no pair is seen twice, so nothing to overfit), the run's own
loss (lambda1 CE + lambda2 L1) and draws of (k, s), its own rates falling linearly to zero. The shift
block and discriminator are copied unchanged, so every realism figure of the run (FID of shifted
samples, edit overlap, L_G over the run's training) stays what it was; only RCA can move. Measured
figures: docs/discovery.md, section 2 ("Polishing the reconstructor").
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .artifacts import atomic_write, load_tensors, save_tensors
from .monitor import HeldOutPairs
from .nets import build_reconstructor
from .run import KIND, LABELS, check_run_folder, load_run
from .train import draw_edits, run_chains

POLISH_LOG = "polish-log.csv"
COPIED = ("shift_block.safetensors", "discriminator.safetensors", "log.csv", LABELS)


@dataclass(frozen=True)
class PolishConfig:
    """How the reconstructor is trained on: recorded in the polished run's config.json."""

    steps: int = 300
    lr: float = 3e-4  # below the recipe's 1e-3: a fresh Adam at 1e-3 first moved a trained one off (measured)
    batch_size: int = 64
    warmdown: float = 1.0  # share of the steps over which the rate falls linearly to zero
    rca_every: int = 50
    rca_pairs: int = 512
    seed: int = 0

    def check(self) -> None:
        problems = []
        if self.steps < 1:
            problems.append(f"steps={self.steps}: give at least 1")
        if not self.lr > 0:
            problems.append(f"lr={self.lr}: give a learning rate > 0")
        if self.batch_size < 2:
            problems.append(f"batch_size={self.batch_size}: BatchNorm needs at least 2 pairs a step")
        if not 0 <= self.warmdown <= 1:
            problems.append(f"warmdown={self.warmdown}: choose a share of the steps in [0, 1] (0: constant rate)")
        if self.rca_every < 0 or self.rca_pairs < 1:
            problems.append(
                f"rca_every={self.rca_every}, rca_pairs={self.rca_pairs}: give >= 0 (0: at the end only) and >= 1"
            )
        if problems:
            raise ValueError("; ".join(problems))


def check_polish_out(source: Path, out: Path) -> None:
    """Refuse to write over a run (the source included) before anything is computed."""
    if out.resolve() == source.resolve():
        raise ValueError(f"--out {out} is the run being polished: give a new folder, the source stays as it is")
    if (out / "shift_block.safetensors").exists() or (out / "config.json").exists():
        raise ValueError(f"{out} already holds a run: choose another --out")


def polish(
    run_ref: str | Path,
    out: str | Path,
    pcfg: PolishConfig = PolishConfig(),
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict:
    """Train the reconstructor of ``run_ref`` on fresh pairs of its fixed directions; write a run
    folder ``out`` with it (the other parts and the logs copied). Returns the held-out RCA before and
    after, on the same fixed pairs as ``discover --rca-pairs``."""
    pcfg.check()
    source, out = check_run_folder(run_ref), Path(out)
    check_polish_out(source, out)
    run = load_run(run_ref, device=device)
    cfg, model = run.config, run.model
    shift_block = run.shift_block.eval().requires_grad_(False)
    reconstructor = build_reconstructor(cfg.reconstructor, model.in_channels, cfg.K)
    reconstructor = run.load_part("reconstructor", reconstructor).to(device)
    held_out = HeldOutPairs(model, cfg, run.timesteps, pcfg.rca_pairs, device=device)
    before = held_out.evaluate(shift_block, reconstructor)["rca_heldout"]
    schedule = replace(cfg, train_steps=pcfg.steps, lr_warmdown=pcfg.warmdown)  # lr_factor: the warm-down
    opt = torch.optim.Adam(reconstructor.parameters(), lr=pcfg.lr)
    g = torch.Generator().manual_seed(pcfg.seed + 7)  # apart from the held-out pairs' seed
    rows, rca, start = [], before, time.monotonic()
    bar = tqdm(range(pcfg.steps), desc="polish", disable=not progress)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = pcfg.lr * schedule.lr_factor(step)
        x_T = torch.randn(pcfg.batch_size, model.in_channels, model.image_size, model.image_size, generator=g)
        k, s = draw_edits(pcfg.batch_size, cfg, g)
        x_T, k, s = x_T.to(device), k.to(device), s.to(device)
        with torch.no_grad():
            chains = run_chains(model, shift_block, x_T, [(k, s)], run.timesteps, cfg.t_stop, 0)
        reconstructor.train()
        logits, shift = reconstructor(chains.x0_real, chains.x0_shift)  # [N x K], [N]
        loss = cfg.lambda1 * F.cross_entropy(logits, k) + cfg.lambda2 * F.l1_loss(shift, s)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        row = {"step": step + 1, "loss_r": loss.item(), "acc": (logits.argmax(1) == k).float().mean().item()}
        if (pcfg.rca_every and (step + 1) % pcfg.rca_every == 0) or step + 1 == pcfg.steps:
            rca = row["rca_heldout"] = held_out.evaluate(shift_block, reconstructor)["rca_heldout"]
        row["seconds"] = round(time.monotonic() - start, 2)
        rows.append(row)
        bar.set_postfix(L_R=f"{row['loss_r']:.3f}", acc=f"{row['acc']:.2f}", RCA_heldout=f"{rca:.2f}")
    bar.close()
    figures = {"rca_heldout_before": before, "rca_heldout_after": rca, "rca_pairs": pcfg.rca_pairs}
    write_polished_run(source, run.name, out, reconstructor, pcfg, figures, rows)
    return figures


def write_polished_run(
    source: Path, origin: str, out: Path, reconstructor, pcfg: PolishConfig, figures: dict, rows
) -> None:
    """The source run's files with the new reconstructor; ``config.json`` last, naming the polish and its
    ``origin`` (``Run.name``: a shipped run by name, not by this machine's path)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        if (source / name).exists():
            atomic_write(out / name, lambda tmp, name=name: shutil.copyfile(source / name, tmp))
    meta = json.loads((source / "config.json").read_text())
    meta["polished"] = {"from": origin, **vars(pcfg), **figures}
    part = KIND.format("reconstructor")
    _, saved = load_tensors(source / "reconstructor.safetensors", part)
    saved.pop("kind", None)
    saved.pop("hspace_version", None)
    save_tensors(
        out / "reconstructor.safetensors", reconstructor.state_dict(), part, **saved, polished=meta["polished"]
    )

    def write_log(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["step", "loss_r", "acc", "rca_heldout", "seconds"])
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(out / POLISH_LOG, write_log)
    text = json.dumps(meta, indent=2)
    atomic_write(out / "config.json", lambda tmp: Path(tmp).write_text(text))
