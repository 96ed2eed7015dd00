"""Noise schedules and explicit timestep lists.

A sampling chain is a decreasing list of model timesteps ``tau_M > ... > tau_1``; the step from
the last one lands on the clean target, whose alpha-bar is 1. Nothing here assumes a fixed stride.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

CLEAN = -1  # the timestep of the clean target: alpha-bar = 1


def linear_alphas_cumprod(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """abar_t = prod_{s<=t} (1 - beta_s) for linearly spaced betas, as in DDPM/ADM [T] (float64)."""
    betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def uniform_timesteps(num_steps: int, num_train_steps: int = 1000) -> list[int]:
    """M evenly strided model timesteps, largest first: ``[T - T/M, ..., T/M, 0]`` (DDIM's 'uniform' skip).

    The stride is ``T // M`` as in DDIM and diffusers' 'leading' spacing, so M = 20 gives 950, 900, ..., 0.
    """
    if not 1 <= num_steps <= num_train_steps:
        raise ValueError(
            f"M={num_steps} steps cannot be taken from a schedule of {num_train_steps} timesteps: "
            f"choose 1 <= M <= {num_train_steps}"
        )
    stride = num_train_steps // num_steps
    return [i * stride for i in reversed(range(num_steps))]


def check_timesteps(timesteps: Sequence[int], num_train_steps: int) -> list[int]:
    """Validate an explicit chain: integers, strictly decreasing, inside the model's schedule."""
    ts = [int(t) for t in timesteps]
    if not ts:
        raise ValueError("the timestep list is empty: give at least one timestep, e.g. uniform_timesteps(20)")
    if any(a <= b for a, b in zip(ts, ts[1:])):
        raise ValueError(f"timesteps must be strictly decreasing (largest first), got {ts}")
    if ts[0] >= num_train_steps or ts[-1] < 0:
        raise ValueError(f"timesteps must lie in [0, {num_train_steps - 1}] for this model, got {ts[0]}..{ts[-1]}")
    return ts


def alpha_bar(alphas_cumprod: torch.Tensor, t: int) -> float:
    """abar at timestep t, with ``CLEAN`` (or any negative t) meaning the clean target (abar = 1)."""
    return 1.0 if t < 0 else float(alphas_cumprod[t])


def chain_alpha_bars(alphas_cumprod: torch.Tensor, timesteps: Sequence[int]) -> list[tuple[int, float, float]]:
    """Per step ``(t, abar_t, abar_prev)``, where prev is the next entry of the chain or the clean target."""
    ts = list(timesteps)
    nxt = ts[1:] + [CLEAN]
    return [(t, alpha_bar(alphas_cumprod, t), alpha_bar(alphas_cumprod, p)) for t, p in zip(ts, nxt)]
