"""``hspace discover``: the training loop around the discovery step, with logs, grids and resumable checkpoints."""

from __future__ import annotations

import csv
import json
import time
from functools import partial
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .artifacts import atomic_write, read_checkpoint, remove_stale_temporaries, restore_generator
from .config import DiscoveryConfig
from .distributed import Distributed
from .models import load_model
from .monitor import HeldOutPairs
from .run import PARTS, check_init_run, load_parts, model_reference, save_parts
from .sampling import direction_sweep, magnitudes, seed_noise
from .train import DiscoveryTrainer
from .viz import save_image, sheet

LOG_FIELDS = [
    "step",
    "loss_d",
    "loss_g",
    "loss_r",
    "acc",
    "edit_cosine",
    "even_share",
    "rca_running",
    "rca_heldout",
    "shift_mae_heldout",
    "live_units",
    "grad_g",
    "grad_ce",
    "grad_l1",
    "grad_overlap",
    "grad_even",
    "grad_fm",
    "seconds",
]
PLOTTED = tuple(f for f in LOG_FIELDS if f not in ("step", "shift_mae_heldout", "seconds"))  # TensorBoard scalars
# Settings that may change when resuming (how long to train, how gradients are computed); anything
# else must match the run.
RESUMABLE_CHANGES = {
    "train_steps",
    "algorithm",
    "keep_graph_steps",
    "memory_budget_mb",
    "autocast",
    "channels_last",
    "compile",
    "overlap",
}
BEST = "best"  # the subfolder holding the parts at the highest held-out RCA so far
DEFAULT_RCA_PAIRS = 256  # the held-out set's size unless a run says otherwise


def _write_rows(path: str, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


class RunLogger:
    """CSV always; TensorBoard when the ``tensorboard`` package is installed."""

    def __init__(self, folder: Path, resume_step: int = 0):
        self.path = folder / "log.csv"
        if self.path.exists():  # drop rows after the checkpoint we resume from (or all, for a new run)
            text = self.path.read_text()
            whole = text[: text.rfind("\n") + 1]  # a crash can cut the last row short: it is dropped
            rows = [r for r in csv.DictReader(whole.splitlines()) if int(r["step"]) <= resume_step]
            atomic_write(self.path, partial(_write_rows, rows=rows))
        new = not self.path.exists()
        self.file = self.path.open("a", newline="")
        self.csv = csv.DictWriter(self.file, LOG_FIELDS)
        if new:
            self.csv.writeheader()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(folder / "tb"))
        except ImportError:  # optional: pip install tensorboard
            self.tb = None

    def log(self, row: dict) -> None:
        self.csv.writerow({k: row.get(k, "") for k in LOG_FIELDS})  # held-out figures only every rca_every steps
        self.file.flush()
        if self.tb is not None:
            for k in PLOTTED:
                if k in row:
                    self.tb.add_scalar(k, row[k], row["step"])

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def overview_grid(trainer: DiscoveryTrainer, path: Path, max_directions: int = 16, seeds: int = 2) -> Path:
    """Directions as rows (``seeds`` seeds each), 7 magnitudes from -S to S as columns."""
    m = trainer.model
    x_T = seed_noise(range(seeds), m.in_channels, m.image_size).to(trainer.device)
    mags = magnitudes(trainer.cfg.S, 7)
    ks = range(min(trainer.cfg.K, max_directions))
    block = trainer.modules.shift_block.eval()
    rows = [direction_sweep(m, block, trainer.timesteps, trainer.cfg.t_stop, k, x_T, mags) for k in ks]
    block.train()
    labels = [str(k) for k in ks for _ in range(seeds)]
    return save_image(sheet(torch.cat(rows), 2, mags, labels), path)  # rows: [K' * seeds x 7 x C x H x W]


def save_checkpoint(folder: Path, trainer: DiscoveryTrainer, model_ref: dict, rca: float) -> None:
    """The trained parts for users, then everything to resume from, each file atomically."""
    save_parts(folder, trainer.modules, trainer.cfg, model_ref, trainer.step)
    state = {
        "step": trainer.step,
        "config": json.dumps(trainer.cfg.to_dict()),
        "modules": trainer.modules.state_dict(),
        "opt_g": trainer.opt_g.state_dict(),
        "opt_d": trainer.opt_d.state_dict(),
        "generator": trainer.generator.get_state(),
        "real_cache": trainer.cache.state_dict(),
        "rca_running": rca,
        "model_fingerprint": model_ref["fingerprint"],
    }
    atomic_write(folder / "checkpoint.pt", lambda tmp: torch.save(state, tmp))


def best_parts_meta(folder: Path) -> dict:
    """What ``folder/best/config.json`` says of the parts kept there: their ``rca_heldout`` (-1 when
    there are none yet) and the number of held-out pairs it was measured on (absent in older runs)."""
    meta = folder / BEST / "config.json"
    return json.loads(meta.read_text()) if meta.exists() else {"rca_heldout": -1.0}


def held_out_pairs_for(kept: int | None, rca_pairs: int | None) -> int:
    """The held-out set's size: a resumed run keeps the one its best parts were scored on (``kept``),
    so that ``best`` compares like with like; a new run takes ``rca_pairs`` or DEFAULT_RCA_PAIRS."""
    if rca_pairs is not None and kept is not None and rca_pairs != kept:
        raise ValueError(
            f"--rca-pairs {rca_pairs}: the run's best parts were scored on {kept} held-out pairs; "
            f"resume with --rca-pairs {kept}, or leave it out"
        )
    return rca_pairs or kept or DEFAULT_RCA_PAIRS


def load_checkpoint(folder: Path, trainer: DiscoveryTrainer, model_ref: dict) -> float:
    """Restore the trainer from ``checkpoint.pt``, refusing one made with other settings or another model."""
    state = read_checkpoint(folder / "checkpoint.pt", trainer.device)
    saved = DiscoveryConfig.from_saved(json.loads(state["config"])).to_dict()
    changed = {k for k, v in trainer.cfg.to_dict().items() if saved.get(k) != v} - RESUMABLE_CHANGES
    if changed:
        diff = ", ".join(f"{k}: run has {saved.get(k)!r}, now {getattr(trainer.cfg, k)!r}" for k in sorted(changed))
        raise ValueError(f"--resume with other settings ({diff}): drop those overrides or use a new --out")
    saved_model = state.get("model_fingerprint")
    if saved_model is not None and saved_model != model_ref["fingerprint"]:
        raise ValueError(
            f"--resume with another model: the run was trained on fingerprint {saved_model}, "
            f"{model_ref['source']} has {model_ref['fingerprint']}; resume with the run's model or use a new --out"
        )
    trainer.modules.load_state_dict(state["modules"])
    trainer.opt_g.load_state_dict(state["opt_g"])
    trainer.opt_d.load_state_dict(state["opt_d"])
    restore_generator(trainer.generator, state["generator"])
    if "real_cache" in state:
        trainer.cache.load_state_dict(state["real_cache"])
    trainer.step = state["step"]
    return state["rca_running"]


def discover(
    model_source: str,
    cfg: DiscoveryConfig,
    out: str | Path,
    flags: dict | str | None = None,
    resume: bool = False,
    grid_every: int = 200,
    checkpoint_every: int = 25,
    rca_every: int = 50,
    rca_pairs: int | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> Path:
    """Train the shift block, reconstructor and discriminator; everything lands in ``out``.

    Every ``rca_every`` steps (0: never) the held-out RCA on ``rca_pairs`` fixed pairs (default
    DEFAULT_RCA_PAIRS; a resumed run keeps its own) is measured, with the loss terms' gradient norms
    at x~0; the parts at the best of it so far are kept in ``out/best``. Under torchrun every
    process trains on its share of each batch and process 0 writes the run.
    """
    # Everything is checked before the folder is touched or anything computed.
    if rca_every < 0 or (rca_pairs is not None and rca_pairs < 1):
        raise ValueError(
            f"rca_every={rca_every}, rca_pairs={rca_pairs}: give rca_every >= 0 (0: never) and rca_pairs >= 1"
        )
    if checkpoint_every < 1 or grid_every < 0:
        raise ValueError(f"checkpoint_every={checkpoint_every}, grid_every={grid_every}: give >= 1 and >= 0 (0: never)")
    out = Path(out)
    if not resume and (out / "checkpoint.pt").exists():
        raise ValueError(f"{out} already holds a discovery run: pass --resume to continue it, or choose another --out")
    if resume and not (out / "checkpoint.pt").exists():
        raise ValueError(f"--resume: {out} holds no checkpoint.pt; start without --resume")
    best = best_parts_meta(out) if resume else {"rca_heldout": -1.0}  # what a resumed run kept so far
    rca_pairs = held_out_pairs_for(best.get("rca_pairs"), rca_pairs)
    init = check_init_run(cfg.init_from, cfg) if cfg.init_from and not resume else None
    dist, device = Distributed.from_env(device)
    model = load_model(model_source, flags)
    trainer = DiscoveryTrainer(model, cfg, device, dist)
    model_ref = model_reference(model_source, model)
    main = dist.is_main
    if init is not None:  # a resumed run's checkpoint holds the parts already
        parts = PARTS if cfg.init_discriminator else tuple(p for p in PARTS if p != "discriminator")
        load_parts(init, trainer.modules, model_ref, parts)
    rca = load_checkpoint(out, trainer, model_ref) if resume else 0.0
    if main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)  # what a crash left mid-write; the files themselves are whole
    say = print if progress and main else lambda *_: None
    held_out = (
        HeldOutPairs(trainer.model, cfg, trainer.timesteps, rca_pairs, device=trainer.device)
        if main and rca_every
        else None
    )
    logger = RunLogger(out, trainer.step) if main else None
    # The held-out RCA swings by up to 0.25 between evaluations 50-100 steps apart (docs/discovery.md,
    # section 4): the parts at its best so far are kept in out/best, a run folder of their own.
    best_rca = best["rca_heldout"]
    first_work = []  # what the first step does besides training, and so why it is slow
    if trainer.plan.measures_graphs:
        first_work.append("measures each chain step's graph memory")
    if trainer.plan.real_cache and len(trainer.cache) == 0:  # a resumed run brings its cache along
        first_work.append("fills the real-chain cache")
    if first_work:
        say(f"step {trainer.step + 1} also {' and '.join(first_work)}: it takes longer than the others")
    bar = tqdm(total=cfg.train_steps, initial=trainer.step, desc="discover", disable=not (progress and main))
    start, last_save = time.monotonic(), time.monotonic()
    held_out_rca = None
    try:
        while trainer.step < cfg.train_steps:
            monitor = bool(rca_every) and ((trainer.step + 1) % rca_every == 0 or trainer.step + 1 == cfg.train_steps)
            metrics = trainer.train_step(diagnose=monitor)
            # Running reconstructor accuracy: an exponential average over roughly the last 50 steps.
            rca = metrics["acc"] if trainer.step == 1 else 0.98 * rca + 0.02 * metrics["acc"]
            if monitor and held_out is not None:
                metrics.update(held_out.evaluate(trainer.modules.shift_block, trainer.modules.reconstructor))
                held_out_rca = metrics["rca_heldout"]
                if held_out_rca > best_rca:
                    best_rca = held_out_rca
                    save_parts(
                        out / BEST,
                        trainer.modules,
                        cfg,
                        model_ref,
                        trainer.step,
                        rca_heldout=best_rca,
                        rca_pairs=rca_pairs,
                    )
            bar.update(1)
            shown = {
                "L_D": f"{metrics['loss_d']:.3f}",
                "L_G": f"{metrics['loss_g']:.3f}",
                "L_R": f"{metrics['loss_r']:.3f}",
                "RCA": f"{rca:.2f}",
            }
            if held_out_rca is not None:
                shown["RCA_heldout"] = f"{held_out_rca:.2f}"
            bar.set_postfix(shown)
            if not main:
                continue
            logger.log(
                {**metrics, "step": trainer.step, "rca_running": rca, "seconds": round(time.monotonic() - start, 2)}
            )
            done = trainer.step == cfg.train_steps
            # The grid before the checkpoint: a crash between them redoes the step, so no grid is skipped.
            if grid_every and (done or trainer.step % grid_every == 0):
                overview_grid(trainer, out / "grids" / f"step-{trainer.step:06d}.png")
            if done or trainer.step % checkpoint_every == 0 or time.monotonic() - last_save > 300:
                save_checkpoint(out, trainer, model_ref, rca)
                last_save = time.monotonic()
    finally:
        bar.close()
        if logger is not None:
            logger.close()
    if main and (trainer.step == 0 or not (out / "shift_block.safetensors").exists()):
        save_checkpoint(out, trainer, model_ref, rca)
    if main and progress and held_out_rca is not None:
        print(
            f"held-out RCA {held_out_rca:.3f} on {rca_pairs} fixed pairs (chance {1 / cfg.K:.3f}) at step {trainer.step}"
        )
        best = json.loads((out / BEST / "config.json").read_text())
        print(f"best held-out RCA {best['rca_heldout']:.3f} at step {best['step']}: its parts are in {out / BEST}")
    dist.barrier()  # no process leaves before the run is written
    return out
