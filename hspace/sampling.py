"""DDIM, the asymmetric DDIM step of the paper's Eq. (2), sampling, direction sweeps and inversion.

Pure functions over explicit timesteps (see ``schedule.py``). eps-prediction throughout.

Notation (paper section 4):

| name here | paper | meaning |
|---|---|---|
| ``abar_t``, ``abar_prev`` | alpha_t, alpha_{t-1} (cumulative) | the noise level of x_t and of the next, less noisy step |
| ``eps`` | eps(x_t given h) | the frozen model's noise prediction |
| ``eps_hat`` | eps(x_t given h_hat) | the same with h shifted: h_hat = h + sum_i s_i f_t(h, k_i) |
| ``x0`` / ``x~0`` | x_0 / x~_0 | the end of the plain chain / of the shifted chain |
| ``t_stop`` | t_edit | shifts apply for t >= t_stop; plain DDIM below |
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


def seed_noise(seeds: Sequence[int], channels: int, size: int) -> torch.Tensor:
    """x_T [R x C x H x W], row i from its own generator seeded ``seeds[i]``: independent of the batch."""
    return torch.stack([torch.randn(channels, size, size, generator=torch.Generator().manual_seed(s)) for s in seeds])


def magnitudes(S: float, n: int = 9) -> list[float]:
    """n magnitudes evenly from -S to S (n odd puts the unshifted sample, exactly 0, in the middle column)."""
    if n == 1:
        return [0.0]
    values = [-S + 2 * S * i / (n - 1) for i in range(n)]
    return [0.0 if abs(s) <= 1e-9 * S else s for s in values]


@torch.no_grad()
def direction_sweep(
    model: HSpaceModel,
    directions: Directions,
    timesteps: Sequence[int],
    t_stop: int,
    k: int,
    x_T: torch.Tensor,
    mags: Sequence[float],
) -> torch.Tensor:
    """Samples of direction k: rows the x_T [R x C x H x W], columns the magnitudes; [R x n x C x H x W].

    All magnitudes run as one batch. No clipping of x0, as in training and RCA: the s = 0 column is
    the plain sample (or, from an inverted x_T, the reconstruction).
    """
    s_row = torch.as_tensor(list(mags), dtype=x_T.dtype, device=x_T.device)  # [n]
    rows, cols = x_T.shape[0], s_row.shape[0]
    x = x_T.repeat_interleave(cols, dim=0)  # [R * n x C x H x W], row-major
    s = s_row.repeat(rows)  # [R * n]
    x0 = sample(model, x, timesteps, directions=directions, edits=[(k, s)], t_stop=t_stop)
    return x0.unflatten(0, (rows, cols))


@torch.no_grad()
def invert(model: HSpaceModel, x_0: torch.Tensor, timesteps: Sequence[int], progress: bool = False) -> torch.Tensor:
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
