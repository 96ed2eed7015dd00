"""Model families behind one interface (``HSpaceModel``) and ``open_model`` to open any of them from a file."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .adm import ADMConfig, ADMModel, build_adm, load_adm_state_dict, load_guided_diffusion
from .base import EncoderState, HSpaceModel

__all__ = ["ADMConfig", "ADMModel", "EncoderState", "HSpaceModel", "build_adm", "open_model", "save_model"]

MODEL_KIND = "hspace-model"


def save_model(model: HSpaceModel, path: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Save an ADM model's weights (optionally cast, e.g. fp16) with its flags: ``load_model(path)`` reopens it."""
    from ..artifacts import save_tensors

    if not isinstance(model, ADMModel):
        raise TypeError("save_model writes built-in ADM models; save a diffusers UNet with save_pretrained")
    sd = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
        for k, v in model.unet.state_dict().items()
    }
    return save_tensors(path, sd, MODEL_KIND, model=model.describe())


def open_model(source, flags: dict | str | None = None) -> HSpaceModel:
    """Open a frozen eps-prediction model from a file, a folder or an object (names: ``hspace.models.load_model``).

    ``source``: a ``.safetensors`` file written by hspace, a guided-diffusion ``.pt`` state dict with its
    ``flags`` (guided-diffusion's names plus ``in_channels``), a diffusers ``UNet2DModel`` folder (or
    pipeline folder), an in-memory diffusers ``UNet2DModel``, or an ``HSpaceModel``.
    """
    if isinstance(source, HSpaceModel):
        return source.freeze()
    if not isinstance(source, (str, Path)):
        from .diffusers_unet import load_diffusers

        return load_diffusers(source)
    path = Path(source)
    if flags is not None and (path.is_dir() or path.suffix == ".safetensors"):
        raise ValueError(f"--model-flags is for a guided-diffusion .pt checkpoint; {path} carries its own: drop it")
    if not path.exists():
        raise ValueError(f"no model at {str(path)!r}: give a .safetensors/.pt file or a diffusers folder")
    if path.is_dir():
        from .diffusers_unet import load_diffusers

        return load_diffusers(path)
    if path.suffix == ".safetensors":
        from ..artifacts import load_tensors

        tensors, meta = load_tensors(path, MODEL_KIND)
        described = meta["model"]
        return load_adm_state_dict(ADMModel(ADMConfig.from_flags(described["flags"])), tensors, str(path))
    if path.suffix in (".pt", ".pth", ".ckpt", ".bin"):
        return load_guided_diffusion(path, json.loads(flags) if isinstance(flags, str) else flags)
    raise ValueError(f"{path}: unknown model format; expected .safetensors, .pt or a diffusers folder")


def __getattr__(name: str):
    """``hspace.backends.load_model`` as before ``hspace.models``: resolved on use, so that importing the
    backends never imports the presets (which name models above this layer)."""
    if name == "load_model":
        from ..models import load_model

        return load_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
