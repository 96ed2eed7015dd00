"""DDIM, the asymmetric DDIM step of the paper's Eq. (2), sampling and inversion.

Pure functions over explicit timesteps (see ``schedule.py``). eps-prediction throughout.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from tqdm.auto import tqdm

from .backends.base import EncoderState, HSpaceModel
from .schedule import CLEAN, alpha_bar, chain_alpha_bars, check_timesteps

# An edit is a direction index and a magnitude, each a Python number or one value per sample [N].
Edit = tuple[int | torch.Tensor, float | torch.Tensor]


class Directions(Protocol):
    """Anything that turns edits into an h-space shift: a ``ShiftBlock`` or exported global directions."""

    def shift(self, h: torch.Tensor, state: EncoderState, edits: Sequence[Edit]) -> torch.Tensor: ...


def predict_x0(x_t: torch.Tensor, eps: torch.Tensor, abar_t: float) -> torch.Tensor:
    """P_t(eps) = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
    return (x_t - math.sqrt(1.0 - abar_t) * eps) / math.sqrt(abar_t)


def asymmetric_ddim_step(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    eps_hat: torch.Tensor,
    abar_t: float,
    abar_prev: float,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    clip_x0: bool = False,
) -> torch.Tensor:
    """Eq. (2): x_prev = sqrt(abar_prev) P_t(eps(x_t | h_hat)) + D_t(eps(x_t | h)) [+ sigma z].

    With ``eps_hat is eps`` this is the DDIM step (eta = 0: deterministic). ``clip_x0`` clamps the
    predicted x0 to [-1, 1]; it is a sampling option, never used in the differentiable path.
    """
    x0 = predict_x0(x_t, eps_hat, abar_t)
    if clip_x0:
        x0 = x0.clamp(-1.0, 1.0)
    sigma = 0.0
    if eta > 0.0 and abar_prev < 1.0:
        sigma = eta * math.sqrt((1.0 - abar_prev) / (1.0 - abar_t) * (1.0 - abar_t / abar_prev))
    x_prev = math.sqrt(abar_prev) * x0 + math.sqrt(max(1.0 - abar_prev - sigma**2, 0.0)) * eps
    if sigma > 0.0:
        if noise is None:
            raise ValueError("eta > 0 needs a noise tensor for the stochastic DDIM step")
        x_prev = x_prev + sigma * noise
    return x_prev


def ddim_step(x_t, eps, abar_t, abar_prev, eta=0.0, noise=None, clip_x0=False):
    """The DDIM update (Song et al. 2021, Eq. 12); eta = 0 is deterministic."""
    return asymmetric_ddim_step(x_t, eps, eps, abar_t, abar_prev, eta, noise, clip_x0)


def shifted_eps(
    model: HSpaceModel,
    x_t: torch.Tensor,
    t: torch.Tensor,
    directions: Directions | None = None,
    edits: Sequence[Edit] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(eps(x_t | h), eps(x_t | h_hat))`` with one encoder pass and one batched decoder call.

    Without directions, edits or a non-zero shift both are the same tensor (the decoder runs once).
    """
    h, state = model.encode(x_t, t)
    delta = directions.shift(h, state, edits) if directions is not None and edits else None
    # A zero shift (s = 0, or a fresh block) decodes once: exactly plain DDIM, since batched
    # kernels are not bitwise batch-invariant. Under autograd the graph must include h_hat.
    if delta is None or (not torch.is_grad_enabled() and not delta.any()):
        eps = model.decode(h, state)
        return eps, eps
    eps, eps_hat = model.decode(torch.cat([h, h + delta]), state.repeat(2)).chunk(2)
    return eps, eps_hat


def timestep_batch(t: int, x: torch.Tensor) -> torch.Tensor:
    """The model's timestep input [N] for a batch x."""
    return torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)


@torch.no_grad()
def sample(
    model: HSpaceModel,
    x_T: torch.Tensor,
    timesteps: Sequence[int],
    directions: Directions | None = None,
    edits: Sequence[Edit] = (),
    t_stop: int = 0,
    eta: float = 0.0,
    clip_x0: bool = False,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Run the chain from x_T [N x C x H x W] to x0 with DDIM; asymmetric (Eq. 2) while t >= t_stop.

    ``edits`` is a list of ``(k, s)``: h_hat = h + sum_i s_i f_t(h, k_i). ``callback`` receives
    ``{"i", "t", "x", "x0_pred"}`` after every step.
    """
    ts = check_timesteps(timesteps, model.num_train_steps)
    x = x_T
    steps = chain_alpha_bars(model.alphas_cumprod, ts)
    for i, (t, abar_t, abar_prev) in enumerate(tqdm(steps, desc="sampling", disable=not progress, leave=False)):
        active = directions is not None and t >= t_stop
        eps, eps_hat = shifted_eps(model, x, timestep_batch(t, x), directions if active else None, edits)
        noise = None
        if eta > 0.0 and abar_prev < 1.0:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x_next = asymmetric_ddim_step(x, eps, eps_hat, abar_t, abar_prev, eta, noise, clip_x0)
        if callback is not None:
            callback({"i": i, "t": t, "x": x_next, "x0_pred": predict_x0(x, eps_hat, abar_t)})
        x = x_next
    return x


@torch.no_grad()
def invert(
    model: HSpaceModel, x_0: torch.Tensor, timesteps: Sequence[int], progress: bool = False
) -> torch.Tensor:
    """Deterministic DDIM inversion: walk the chain backwards from x_0 to x_T.

    Each step reuses eps predicted at the less noisy end (at the clean end, the model's smallest
    timestep in the chain stands in for t = 0). ``sample(model, invert(model, x0, ts), ts)`` ~ x0.
    """
    ts = check_timesteps(timesteps, model.num_train_steps)
    levels = [CLEAN] + ts[::-1]
    x = x_0
    for t_from, t_to in tqdm(list(zip(levels, levels[1:])), desc="inverting", disable=not progress, leave=False):
        t_model = ts[-1] if t_from == CLEAN else t_from
        eps = model(x, timestep_batch(t_model, x))
        abar_from, abar_to = alpha_bar(model.alphas_cumprod, t_from), alpha_bar(model.alphas_cumprod, t_to)
        x = math.sqrt(abar_to) * predict_x0(x, eps, abar_from) + math.sqrt(1.0 - abar_to) * eps
    return x
