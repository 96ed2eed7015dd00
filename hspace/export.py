"""Global directions (paper 5.4): the shift block's Delta h averaged over samples, per timestep and over time.

``GlobalDirections`` edits without the shift block: ``h_hat = h + sum_i s_i d_{k_i}`` where d is
the time-invariant direction (the mean over the shifting interval) or, with ``per_timestep``,
the mean at that step.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .artifacts import load_tensors, save_tensors
from .backends.base import EncoderState
from .run import Run
from .sampling import ddim_step, timestep_batch
from .schedule import chain_alpha_bars

KIND = "hspace-global-directions"


class GlobalDirections:
    """Fixed h-space directions: ``per_step`` [K x S x C x h x w] for the shifted timesteps, ``mean`` over them."""

    def __init__(self, per_step: torch.Tensor, timesteps: Sequence[int], per_timestep: bool = False):
        self.per_step = per_step
        self.mean = per_step.mean(dim=1)
        self.timesteps = [int(t) for t in timesteps]
        self.per_timestep = per_timestep
        self.num_directions = per_step.shape[0]

    def using(self, per_timestep: bool) -> GlobalDirections:
        return GlobalDirections(self.per_step, self.timesteps, per_timestep)

    def shift(self, h: torch.Tensor, state: EncoderState, edits) -> torch.Tensor:
        """The ``Directions`` protocol: sum_i s_i d_{k_i}, broadcast over the batch."""
        if self.per_timestep:
            t = int(state.t[0])
            if t not in self.timesteps:
                raise ValueError(f"no per-timestep direction at t={t}: exported for {self.timesteps}; use the time-invariant mean")
            table = self.per_step[:, self.timesteps.index(t)]
        else:
            table = self.mean
        table = table.to(h.device, h.dtype)
        delta = torch.zeros_like(h)
        for k, s in edits:
            k = torch.as_tensor(k, device=h.device).long().expand(h.shape[0])
            if not k.is_cuda and ((k < 0).any() or (k >= self.num_directions).any()):
                raise ValueError(f"direction index out of range: K={self.num_directions} directions (0..{self.num_directions - 1})")
            s = torch.as_tensor(s, device=h.device, dtype=h.dtype).expand(h.shape[0])
            delta = delta + s[:, None, None, None] * table[k]
        return delta


@torch.no_grad()
def mean_shifts(run: Run, num_samples: int = 20, seed: int = 0, directions: Sequence[int] | None = None) -> torch.Tensor:
    """Delta h^k_t = f_t(h_t, k) averaged over ``num_samples`` plain DDIM chains, at each step with t >= t_stop.

    Returns [K' x S x C x h x w] for the K' chosen directions and the S shifted timesteps.
    """
    model, block = run.model, run.shift_block
    ks = list(range(run.config.K)) if directions is None else list(directions)
    device = next(block.parameters()).device
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(num_samples, model.in_channels, model.image_size, model.image_size, generator=g).to(device)
    out = []
    for t, abar_t, abar_prev in chain_alpha_bars(model.alphas_cumprod, run.timesteps):
        h, state = model.encode(x, timestep_batch(t, x))
        if t >= run.config.t_stop:
            z = block.features(h, state.emb)
            out.append(torch.stack([block.apply_directions(z, [(k, 1.0)]).mean(0) for k in ks]))
        x = ddim_step(x, model.decode(h, state), abar_t, abar_prev)
    return torch.stack(out, dim=1)


def shifted_timesteps(run: Run) -> list[int]:
    return [t for t in run.timesteps if t >= run.config.t_stop]


def export_directions(run: Run, path: str | Path, num_samples: int = 20, seed: int = 0) -> Path:
    """Write the global directions of a run as safetensors (usable without the shift block)."""
    per_step = mean_shifts(run, num_samples, seed)
    meta = dict(config=run.config.to_dict(), timesteps=shifted_timesteps(run), num_samples=num_samples, run=str(run.folder))
    return save_tensors(path, {"per_step": per_step, "mean": per_step.mean(dim=1)}, KIND, **meta)


def load_directions(path: str | Path, per_timestep: bool = False) -> GlobalDirections:
    tensors, meta = load_tensors(path, KIND)
    return GlobalDirections(tensors["per_step"], meta["timesteps"], per_timestep)
