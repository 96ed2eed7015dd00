"""Opening a model by name or location: shipped models and architecture presets by name, anything else by path."""

from __future__ import annotations

from pathlib import Path

from .backends import HSpaceModel, build_adm, open_model


def load_model(source, flags: dict | str | None = None) -> HSpaceModel:
    """Open a frozen eps-prediction model.

    ``source``: a shipped model name (``"default"``), a model preset name (random weights, seeded, for
    tests and benchmarks: ``"tiny"``), or what ``backends.open_model`` opens: a ``.safetensors`` file
    written by hspace, a guided-diffusion ``.pt`` with its ``flags``, a diffusers folder or object.
    """
    from . import presets

    if not isinstance(source, (str, Path)):
        return open_model(source, flags)
    name = str(source)
    named = name in presets.SHIPPED_MODELS or name in presets.DM_PRESETS
    if flags is not None and named:
        raise ValueError(f"--model-flags is for a guided-diffusion .pt checkpoint; {name} carries its own: drop it")
    if name in presets.SHIPPED_MODELS:
        path = presets.shipped_path(name)
        if not path.exists():
            raise ValueError(f"the shipped model {name!r} is missing from this install ({path}): reinstall hspace")
        return open_model(path)
    if name in presets.DM_PRESETS:  # an untrained network of that architecture, eps depending on h
        return build_adm(presets.DM_PRESETS[name], seed=0, fill_zero_init=True)
    if not Path(name).exists():
        raise ValueError(
            f"no model at {name!r}: give a preset ({', '.join(presets.model_names())}), a .safetensors/.pt file "
            "or a diffusers folder"
        )
    return open_model(name, flags)
