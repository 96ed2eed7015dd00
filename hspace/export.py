"""``hspace export``: a run's global directions (paper 5.4) as safetensors, usable without the shift block."""

from __future__ import annotations

from pathlib import Path

from .artifacts import save_tensors
from .directions import GLOBAL_KIND, mean_shifts
from .run import Run


def export_directions(run: Run, path: str | Path, num_samples: int = 20, seed: int = 0) -> Path:
    """Write the global directions of a run (``directions.load_directions`` reads them back)."""
    per_step = mean_shifts(run, num_samples, seed)  # [K x S x C x h x w]
    meta = dict(config=run.config.to_dict(), timesteps=run.shifted_timesteps, num_samples=num_samples, run=run.name)
    return save_tensors(path, {"per_step": per_step, "mean": per_step.mean(dim=1)}, GLOBAL_KIND, **meta)
