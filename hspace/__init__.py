"""hspace: unsupervised discovery of interpretable directions in the h-space of diffusion models."""

__version__ = "0.1.0"

# The public names load on first use, so that ``hspace --help`` (which imports this package) needs no torch.
_EXPORTS = {
    "HSpaceModel": ".backends",
    "load_model": ".models",
    "save_model": ".backends",
    "ShiftBlock": ".directions",
    "probe_liveness": ".probe",
    "invert": ".sampling",
    "sample": ".sampling",
    "uniform_timesteps": ".schedule",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hspace' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
