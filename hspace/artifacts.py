"""Artifacts on disk: safetensors files whose metadata carries the config, version and backend."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from . import __version__


def atomic_write(path: str | Path, write) -> Path:
    """Call ``write(tmp_path)`` then rename over ``path``: a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files of writes a crash interrupted (``atomic_write``'s ``.NAME.*.tmp``), below folder."""
    stale = [p for p in Path(folder).rglob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], kind: str, **meta) -> Path:
    """Write tensors atomically with JSON metadata: ``kind``, ``hspace_version`` and each keyword."""
    metadata = {"kind": kind, "hspace_version": __version__}
    metadata.update({k: json.dumps(v) for k, v in meta.items()})
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def read_metadata(path: str | Path) -> dict:
    """The metadata of an hspace safetensors file, JSON values decoded."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} is not a readable safetensors file ({e})") from None
    out = {}
    for k, v in raw.items():
        try:
            out[k] = json.loads(v) if k not in ("kind", "hspace_version") else v
        except json.JSONDecodeError:
            out[k] = v
    return out


def load_tensors(path: str | Path, kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata; ``kind`` checks that the file is what the caller expects."""
    meta = read_metadata(path)
    if kind is not None and meta.get("kind") != kind:
        raise ValueError(f"{path} holds {meta.get('kind') or 'no hspace artifact'}, not {kind}")
    return load_file(str(path)), meta


def read_checkpoint(path: str | Path, device) -> dict:
    """A ``checkpoint.pt`` (tensors and plain data only), or one line saying it cannot be resumed from."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # torch raises many kinds for a truncated or foreign file
        raise ValueError(
            f"{path} is unreadable ({type(e).__name__}): it was not written by this hspace or is damaged; "
            "start again in a new --out"
        ) from None


def restore_generator(generator: torch.Generator, state: torch.Tensor) -> None:
    """Set a CPU generator to a checkpointed state, which ``read_checkpoint(path, "cuda")`` moved to the GPU."""
    generator.set_state(state.cpu())
