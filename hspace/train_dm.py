"""Train an ADM diffusion model (eps-MSE, linear betas, EMA, Adam): the DMs that discovery runs on."""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .artifacts import atomic_write, read_checkpoint, remove_stale_temporaries, restore_generator
from .backends import ADMConfig, ADMModel, save_model
from .sampling import sample
from .schedule import uniform_timesteps
from .viz import as_rows, save_image, sheet


@dataclass(frozen=True)
class DMTrainConfig:
    """Diffusion-model training settings (the architecture comes from ``flags``)."""

    flags: dict = dataclasses.field(default_factory=dict)  # guided-diffusion flags of the UNet
    batch_size: int = 64
    lr: float = 5e-4
    ema_rate: float = 0.999
    train_steps: int = 20000
    grad_clip: float = 1.0
    sample_every: int = 1000
    checkpoint_every: int = 250
    seed: int = 0


def diffusion_loss(model: ADMModel, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """E_{t, eps} |eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t)|^2 (Ho et al. 2020, Eq. 14)."""
    n = x0.shape[0]
    t = torch.randint(0, model.num_train_steps, (n,), generator=generator).to(x0.device)
    eps = torch.randn(x0.shape, generator=generator).to(x0.device)
    abar = model.alphas_cumprod[t].to(x0.dtype)[:, None, None, None]
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    return F.mse_loss(model.unet(x_t, t)[:, : model.in_channels], eps)


# Settings that may change when resuming: how long to train, how often to write, and the batch size (the
# Adam state does not depend on it: a run started on a CPU goes on with bigger batches on a GPU).
# Anything else must match.
RESUMABLE_CHANGES = {"train_steps", "sample_every", "checkpoint_every", "batch_size"}


def check_out(out: Path, resume: bool) -> None:
    """The run folder suits the command: a checkpoint to resume from, or none to overwrite."""
    checkpoint = out / "checkpoint.pt"
    if resume and not checkpoint.exists():
        raise ValueError(f"--resume: no checkpoint.pt in {out}; start without --resume")
    if not resume and checkpoint.exists():
        raise ValueError(f"{out} already holds a training run: pass --resume to continue it, or another --out")


class DMTrainer:
    """The training state (model, EMA, optimiser, step, RNG) with atomic checkpoints in ``out``."""

    def __init__(self, cfg: DMTrainConfig, out: str | Path, device: str = "cpu"):
        self.cfg, self.out, self.device = cfg, Path(out), torch.device(device)
        torch.manual_seed(cfg.seed)
        self.model = ADMModel(ADMConfig.from_flags(cfg.flags)).to(self.device).train()
        self.ema = copy.deepcopy(self.model).freeze()
        self.opt = torch.optim.Adam(self.model.unet.parameters(), lr=cfg.lr)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step = 0

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def save_checkpoint(self) -> None:
        state = {
            "config": json.dumps(dataclasses.asdict(self.cfg)),
            "step": self.step,
            "model": self.model.unet.state_dict(),
            "ema": self.ema.unet.state_dict(),
            "opt": self.opt.state_dict(),
            "generator": self.generator.get_state(),
        }
        atomic_write(self.checkpoint_path, lambda tmp: torch.save(state, tmp))
        save_model(self.ema, self.out / "ema.safetensors")

    def load_checkpoint(self) -> None:
        state = read_checkpoint(self.checkpoint_path, self.device)
        saved = json.loads(state["config"])
        mine = dataclasses.asdict(self.cfg)
        changed = sorted(k for k in mine if k not in RESUMABLE_CHANGES and saved.get(k) != mine[k])
        if changed:
            diff = ", ".join(f"{k}: checkpoint has {saved.get(k)!r}, now {mine[k]!r}" for k in changed)
            raise ValueError(f"--resume with other settings ({diff}): drop those options or use another --out")
        self.model.unet.load_state_dict(state["model"])
        self.ema.unet.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        restore_generator(self.generator, state["generator"])
        self.step = state["step"]

    @torch.no_grad()
    def update_ema(self) -> None:
        # One fused update for all tensors: per-tensor lerps cost a kernel launch each on a GPU.
        torch._foreach_lerp_(
            list(self.ema.unet.parameters()), list(self.model.unet.parameters()), 1.0 - self.cfg.ema_rate
        )

    def save_samples(self, n: int = 64, steps: int = 50) -> Path:
        g = torch.Generator().manual_seed(0)  # the same seeds every time: grids are comparable
        x_T = torch.randn(n, self.ema.in_channels, self.ema.image_size, self.ema.image_size, generator=g)
        x0 = sample(self.ema, x_T.to(self.device), uniform_timesteps(steps, self.ema.num_train_steps), clip_x0=True)
        return save_image(sheet(as_rows(x0, 8), 2), self.out / f"samples-{self.step:06d}.png")

    def train_step(self, images: torch.Tensor) -> float:
        """One Adam step on a random batch of ``images`` (clipped gradients), then the EMA; returns the loss."""
        idx = torch.randint(0, images.shape[0], (self.cfg.batch_size,), generator=self.generator)
        loss = diffusion_loss(self.model, images[idx].to(self.device), self.generator)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.unet.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.update_ema()
        self.step += 1
        return loss.item()

    def train(self, images: torch.Tensor, resume: bool = False, progress: bool = True) -> Path:
        """Train on images [N x C x H x W] in [-1, 1]; returns the EMA weights' path."""
        cfg = self.cfg
        check_out(self.out, resume)
        m = self.model
        if images.shape[1:] != (m.in_channels, m.image_size, m.image_size):
            raise ValueError(
                f"images are {tuple(images.shape[1:])} but the model takes {(m.in_channels, m.image_size, m.image_size)}: "
                "pick a model preset of that size"
            )
        if resume:
            self.load_checkpoint()
        self.out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.out)  # what a crash left mid-write; the files themselves are whole
        bar = tqdm(total=cfg.train_steps, initial=self.step, desc="train-dm", disable=not progress)
        last_save = time.monotonic()
        while self.step < cfg.train_steps:
            loss = self.train_step(images)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            # Samples before the checkpoint: a crash between them redoes the step, so no grid is skipped.
            if cfg.sample_every and (self.step % cfg.sample_every == 0 or self.step == cfg.train_steps):
                self.save_samples()
            if (
                self.step % cfg.checkpoint_every == 0
                or self.step == cfg.train_steps
                or time.monotonic() - last_save > 600
            ):
                self.save_checkpoint()
                last_save = time.monotonic()
        bar.close()
        self.save_checkpoint()
        return self.out / "ema.safetensors"
