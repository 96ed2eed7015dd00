"""A discovery run folder: trained parts as safetensors carrying their config, and loading it back.

Layout: ``config.json`` (readable copy), ``shift_block.safetensors``, ``reconstructor.safetensors``,
``discriminator.safetensors`` (each with the resolved config, hspace version and model source in
metadata), ``checkpoint.pt`` (optimisers and RNG, for ``--resume``), ``log.csv``, ``grids/``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .artifacts import atomic_write, load_tensors, save_tensors
from .backends import HSpaceModel, load_model
from .config import DiscoveryConfig
from .directions import ShiftBlock
from .schedule import uniform_timesteps

PARTS = ("shift_block", "reconstructor", "discriminator")
KIND = "hspace-{}"


def model_fingerprint(model: HSpaceModel) -> str:
    """A short hash of the frozen weights: a run only applies to the model it was trained on."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().to(torch.float32).cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def model_reference(source, model: HSpaceModel) -> dict:
    """How to reopen the model: its source (preset name or absolute path), identity and fingerprint."""
    src = str(source)
    if Path(src).exists():
        src = str(Path(src).resolve())
    return {"source": src, "fingerprint": model_fingerprint(model), **model.describe()}


def save_parts(folder: Path, modules, cfg: DiscoveryConfig, model_ref: dict, step: int) -> None:
    """Write each trained part atomically; ``config.json`` last, as the run's table of contents."""
    meta = dict(config=cfg.to_dict(), model=model_ref, step=step)
    for part in PARTS:
        save_tensors(folder / f"{part}.safetensors", getattr(modules, part).state_dict(), KIND.format(part), **meta)
    text = json.dumps(meta, indent=2)
    atomic_write(folder / "config.json", lambda tmp: Path(tmp).write_text(text))


@dataclass
class Run:
    """Directions discovered on a model: what ``show``, ``edit`` and ``evaluate`` need."""

    folder: Path
    model: HSpaceModel
    shift_block: ShiftBlock
    config: DiscoveryConfig
    step: int

    @property
    def timesteps(self) -> list[int]:
        return uniform_timesteps(self.config.M, self.model.num_train_steps)

    def load_part(self, part: str, module: torch.nn.Module) -> torch.nn.Module:
        tensors, _ = load_tensors(self.folder / f"{part}.safetensors", KIND.format(part))
        module.load_state_dict(tensors, strict=True)
        return module


def load_run(folder: str | Path, model: HSpaceModel | None = None, device: str | torch.device = "cpu") -> Run:
    """Open a run folder (or a shipped run's name); the model comes from the run's metadata unless given."""
    from . import presets

    folder = Path(presets.SHIPPED_RUNS.get(str(folder), folder))
    path = folder / "shift_block.safetensors"
    if not path.exists():
        raise ValueError(f"{folder} is not a discovery run (no shift_block.safetensors): give a folder made by `hspace discover`")
    tensors, meta = load_tensors(path, KIND.format("shift_block"))
    cfg = DiscoveryConfig.from_saved(meta["config"])
    ref = meta["model"]
    if model is None:
        try:
            model = load_model(ref["source"])
        except ValueError as e:
            raise ValueError(f"cannot reopen the run's model {ref['source']!r} ({e}); pass the model explicitly (--model)") from None
    if model_fingerprint(model) != ref["fingerprint"]:
        raise ValueError(
            f"{folder} was discovered on another model ({ref['source']}, fingerprint {ref['fingerprint']}): "
            "use the model it was trained on, or run `hspace discover` on this one"
        )
    block = ShiftBlock(model.h_channels, model.emb_channels, cfg.K)
    block.load_state_dict(tensors, strict=True)
    return Run(folder, model.to(device), block.to(device).eval().requires_grad_(False), cfg, int(meta["step"]))
