"""Directions in h-space: the shift block f_t(h, k) of the paper's section 4.2 (Asyrp's DeltaBlock with K
output convs), and global directions (paper 5.4), its Delta h averaged over samples, per timestep and over time.

``GlobalDirections`` edits without the shift block: ``h_hat = h + sum_i s_i d_{k_i}`` where d is
the time-invariant direction (the mean over the shifting interval) or, with ``per_timestep``,
the mean at that step.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .backends.base import EncoderState
from .layers import normalization


def rms(x: torch.Tensor) -> torch.Tensor:
    """Root mean square of each sample [N x 1 x 1 x 1] of x [N x C x h x w]."""
    return x.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()


def direction_indices(k, batch: int, device, K: int) -> torch.Tensor:
    """k (a number or one index per sample) as indices [batch], checked to be in 0..K-1 (on CPU: no GPU sync)."""
    k = torch.as_tensor(k, device=device, dtype=torch.long).expand(batch)
    if not k.is_cuda and ((k < 0).any() or (k >= K).any()):
        raise ValueError(f"direction index out of range: K={K} directions (0..{K - 1})")
    return k


def magnitudes(s, batch: int, device, dtype) -> torch.Tensor:
    """s (a number or one magnitude per sample) as magnitudes [batch]."""
    return torch.as_tensor(s, device=device, dtype=dtype).expand(batch)


class ShiftBlock(nn.Module):
    """``f_t(h, k)``: GroupNorm, SiLU, 1x1 conv, plus the frozen UNet's time embedding, GroupNorm, SiLU,
    then the k-th of K independent 1x1 output convs.

    The K output convs are stored as one weight ``[K x C x C]`` and bias ``[K x C]``, all zero at
    initialisation, so that training starts from x~0 == x0. With ``shift_norm`` r, each direction's
    output is rescaled per sample to RMS r x RMS(h): it learns where to point, s alone sets how far.
    """

    def __init__(self, h_channels: int, emb_channels: int, num_directions: int, shift_norm: float | None = None):
        super().__init__()
        if num_directions < 1:
            raise ValueError(f"K={num_directions}: the number of directions must be at least 1")
        self.h_channels, self.emb_channels, self.num_directions = h_channels, emb_channels, num_directions
        self.shift_norm = shift_norm
        self.in_layers = nn.Sequential(normalization(h_channels), nn.SiLU(), nn.Conv2d(h_channels, h_channels, 1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, h_channels))
        self.out_norm = nn.Sequential(normalization(h_channels), nn.SiLU())
        self.out_weight = nn.Parameter(torch.zeros(num_directions, h_channels, h_channels))
        self.out_bias = nn.Parameter(torch.zeros(num_directions, h_channels))

    def features(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """The shared body, before the direction-specific output conv [N x C x h x w]."""
        z = self.in_layers(h) + self.emb_layers(emb).type(h.dtype)[..., None, None]
        return self.out_norm(z)

    def combine(self, edits: Sequence[tuple], batch: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample output conv ``sum_i s_i W[k_i]`` [N x C x C] and bias [N x C] for a list of (k, s)."""
        weight = bias = 0
        for k, s in edits:
            k = direction_indices(k, batch, device, self.num_directions)
            s = magnitudes(s, batch, device, self.out_weight.dtype)
            weight = weight + s[:, None, None] * self.out_weight[k]
            bias = bias + s[:, None] * self.out_bias[k]
        return weight, bias

    def delta(self, h: torch.Tensor, emb: torch.Tensor, edits: Sequence[tuple]) -> torch.Tensor:
        """Delta h = sum_i s_i f_t(h, k_i) for edits ``[(k, s), ...]``, k and s scalars or per sample [N]."""
        z = self.features(h, emb)
        if self.shift_norm is None:
            return self.apply_directions(z, edits)  # one einsum for any number of edits
        delta = torch.zeros_like(h)
        for k, s in edits:
            s = magnitudes(s, h.shape[0], h.device, h.dtype)
            delta = delta + s[:, None, None, None] * self.direction(z, h, k)
        return delta

    def direction(self, z: torch.Tensor, h: torch.Tensor, k) -> torch.Tensor:
        """f_t(h, k) [N x C x h x w] from the shared features z: the shift at s = 1."""
        d = self.apply_directions(z, [(k, 1.0)])
        if self.shift_norm is None:
            return d
        return d * (self.shift_norm * rms(h) / rms(d).clamp_min(1e-12))

    def apply_directions(self, z: torch.Tensor, edits: Sequence[tuple]) -> torch.Tensor:
        """The output convs on shared features z [N x C x h x w]: sum_i s_i (W[k_i] z + b[k_i])."""
        weight, bias = self.combine(edits, z.shape[0], z.device)
        return torch.einsum("nij,njhw->nihw", weight.to(z.dtype), z) + bias.to(z.dtype)[..., None, None]

    def shift(self, h: torch.Tensor, state: EncoderState, edits: Sequence[tuple]) -> torch.Tensor:
        """The ``Directions`` protocol of ``sampling``: the shift for h given the encoder's state."""
        return self.delta(h, state.emb, edits)

    def forward(self, h: torch.Tensor, emb: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """f_t(h, k) [N x C x h x w] for per-sample direction indices k [N]."""
        return self.delta(h, emb, [(k, 1.0)])


GLOBAL_KIND = "hspace-global-directions"


class GlobalDirections:
    """Fixed h-space directions: ``per_step`` [K x S x C x h x w] for the shifted timesteps, ``mean`` over them."""

    def __init__(self, per_step: torch.Tensor, timesteps: Sequence[int], per_timestep: bool = False):
        self.per_step = per_step
        self.mean = per_step.mean(dim=1)  # [K x C x h x w]
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
                raise ValueError(
                    f"no per-timestep direction at t={t}: exported for {self.timesteps}; use the time-invariant mean"
                )
            table = self.per_step[:, self.timesteps.index(t)]
        else:
            table = self.mean
        table = table.to(h.device, h.dtype)
        delta = torch.zeros_like(h)
        for k, s in edits:
            k = direction_indices(k, h.shape[0], h.device, self.num_directions)
            s = magnitudes(s, h.shape[0], h.device, h.dtype)
            delta = delta + s[:, None, None, None] * table[k]
        return delta


@torch.no_grad()
def mean_shifts(run, num_samples: int = 20, seed: int = 0, directions: Sequence[int] | None = None) -> torch.Tensor:
    """Delta h^k_t = f_t(h_t, k) averaged over ``num_samples`` plain DDIM chains of a ``Run``, at each t >= t_stop.

    Returns [K' x S x C x h x w] for the K' chosen directions and the S shifted timesteps.
    """
    from .sampling import ddim_step, timestep_batch
    from .schedule import chain_alpha_bars

    model, block = run.model, run.shift_block
    ks = list(range(run.config.K)) if directions is None else list(directions)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(num_samples, model.in_channels, model.image_size, model.image_size, generator=g).to(run.device)
    out = []
    for t, abar_t, abar_prev in chain_alpha_bars(model.alphas_cumprod, run.timesteps):
        h, state = model.encode(x, timestep_batch(t, x))
        if t >= run.config.t_stop:
            z = block.features(h, state.emb)
            out.append(torch.stack([block.direction(z, h, k).mean(0) for k in ks]))
        x = ddim_step(x, model.decode(h, state), abar_t, abar_prev)
    return torch.stack(out, dim=1)


def load_directions(path: str | Path, per_timestep: bool = False) -> GlobalDirections:
    """Global directions written by ``hspace export``."""
    from .artifacts import load_tensors

    tensors, meta = load_tensors(path, GLOBAL_KIND)
    return GlobalDirections(tensors["per_step"], meta["timesteps"], per_timestep)
