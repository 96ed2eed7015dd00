"""Model families behind one interface (``HSpaceModel``) and ``load_model`` to open any of them."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .adm import ADMConfig, ADMModel, build_adm, load_adm_state_dict, load_guided_diffusion
from .base import EncoderState, HSpaceModel

__all__ = ["ADMConfig", "ADMModel", "EncoderState", "HSpaceModel", "build_adm", "load_model", "save_model"]

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


def load_model(source, flags: dict | str | None = None) -> HSpaceModel:
    """Open a frozen eps-prediction model.

    ``source``: a model preset name (random weights, seeded, for tests and benchmarks: ``"tiny"``), a shipped
    model name (``"default"``), a ``.safetensors`` file written by hspace, a guided-diffusion ``.pt``
    state dict with its ``flags`` (guided-diffusion's names plus ``in_channels``), a diffusers
    ``UNet2DModel`` folder (or pipeline folder), or an in-memory diffusers ``UNet2DModel``.
    """
    from .. import presets

    if isinstance(source, HSpaceModel):
        return source.freeze()
    if not isinstance(source, (str, Path)):
        from .diffusers_unet import load_diffusers

        return load_diffusers(source)
    name = str(source)
    named = name in presets.SHIPPED_MODELS or name in presets.DM_PRESETS
    if flags is not None and (named or Path(name).is_dir() or Path(name).suffix == ".safetensors"):
        raise ValueError(f"--model-flags is for a guided-diffusion .pt checkpoint; {name} carries its own: drop it")
    if name in presets.SHIPPED_MODELS:
        path = presets.shipped_path(name)
        if not path.exists():
            raise ValueError(f"the shipped model {name!r} is missing from this install ({path}): reinstall hspace")
        return load_model(path)
    if name in presets.DM_PRESETS:  # an untrained network of that architecture, eps depending on h
        return build_adm(presets.DM_PRESETS[name], seed=0, fill_zero_init=True)
    path = Path(name)
    if not path.exists():
        raise ValueError(
            f"no model at {name!r}: give a preset ({', '.join(presets.model_names())}), a .safetensors/.pt file "
            "or a diffusers folder"
        )
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
