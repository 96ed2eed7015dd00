"""How strongly a model's decoder reads h: the liveness check to run before any discovery.

Two measures along a plain DDIM chain from random x_T:

1. **Gain** of each feature the decoder reads at h's resolution (h itself and the encoder skips of
   the same size), and of the first full-resolution skip for reference: the top singular values
   sigma of d eps / d feature, by block power iteration per sample, made scale-free as
   ``sigma * |feature| / |eps|`` (a change of 100% of the feature's norm changes eps by at most
   gain x 100%). The x0 gain multiplies it by ``sqrt(1 - abar_t) |eps| / (sqrt(abar_t) |x0_pred|)``,
   since that is how a change of eps reaches the predicted x0.
2. **Delta x0**: mean |x~0 - x0| (images in [-1, 1]) when the whole shifting interval (t >= t_stop)
   adds to h a shift of ``size`` times h's norm, along fixed random directions or along each step's
   top singular direction. Discovery can only find what moves x0. For both also the **even
   share** of that change (``metrics.even_share``): how much of it the opposite shift
   makes too. Near 0 the model answers a shift of that size linearly (s and -s undo each other);
   from about 0.5 on, as much of the change is common to both signs as flips with the sign, and
   every direction's edit shares that common part (on the shipped default: the digit that was
   there is redrawn; docs/discovery.md, "Even edits").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial

import torch
from tqdm.auto import tqdm

from .backends.base import EncoderState, HSpaceModel
from .metrics import even_share
from .sampling import ddim_step, predict_x0, sample, timestep_batch
from .schedule import chain_alpha_bars, check_timesteps, uniform_timesteps

# Thresholds on mean |delta x0| for random h shifts of h's own norm (size 1), see docs/discovery.md.
# DEAD_BELOW sits just above the old default model's 0.0072, whose decoder reads h with gains of
# 0.001-0.06 against about 1 for its 32x32 skip. LIVE_ABOVE sits below the shipped default's 0.047
# (MNIST32-live), which carries K = 16 directions at RCA 0.86: the one model here known to be live.
DEAD_BELOW = 0.01
LIVE_ABOVE = 0.04


@dataclass
class LivenessReport:
    """What ``probe_liveness`` measured; ``verdict`` is one line for people."""

    timesteps: list[int]
    h_shape: list[int]
    gain: dict[str, list[float]]  # feature name -> top-1 eps gain per timestep (mean over samples)
    h_gain_top: list[list[float]]  # per timestep, the top singular gains of d eps / d h
    h_x0_gain: list[float]  # per timestep, the top-1 gain of d x0_pred / d h
    h_sigma: list[float]  # per timestep, the raw top singular value of d eps / d h
    delta_x0_random: dict[str, float]  # size -> mean |delta x0|
    delta_x0_top: dict[str, float]
    t_stop: int
    even_share_random: dict[str, float] = field(default_factory=dict)  # size -> mean even share
    even_share_top: dict[str, float] = field(default_factory=dict)
    verdict: str = ""
    live: bool | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        """Per-timestep gains as a Markdown table."""
        names = list(self.gain)
        lines = ["| t | " + " | ".join(names) + " | h x0 gain | h sigma |", "|---" * (len(names) + 3) + "|"]
        for i, t in enumerate(self.timesteps):
            cells = [f"{self.gain[n][i]:.3g}" for n in names] + [f"{self.h_x0_gain[i]:.3g}", f"{self.h_sigma[i]:.2g}"]
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _per_sample_norm(x: torch.Tensor) -> torch.Tensor:
    """||x_n|| for each sample [N]."""
    return x.flatten(1).norm(dim=1)


def top_singular(fn, x: torch.Tensor, k: int = 1, iters: int = 12, seed: int = 0, rel_step: float = 1e-3):
    """Top-k singular values [N x k] and right singular vectors [N x k x *x.shape[1:]] of the Jacobian of
    ``fn`` at x, per sample (fn must treat samples independently), by block power iteration on J^T J.

    J^T w is a backward pass; J v a central difference with a step of ``rel_step`` |x_n|: forward-mode
    and double-backward AD through the UNet's decoder were 10-30x slower than a pass on the CPU.
    """
    g = torch.Generator().manual_seed(seed)
    n, d = x.shape[0], x[0].numel()
    x = x.detach()
    with torch.enable_grad():
        x_grad = x.clone().requires_grad_()
        out = fn(x_grad)
    scale = _per_sample_norm(x).clamp_min(1.0) * rel_step  # [N]

    def jvp(u):  # u [N x D] -> J u [N x ...]
        step = (scale / _per_sample_norm(u).clamp_min(1e-30)).view(n, *[1] * (x.dim() - 1))
        du = u.reshape(x.shape) * step
        return (fn(x + du) - fn(x - du)) / (2 * step.view(n, *[1] * (out.dim() - 1)))

    def vjp(w):  # w [N x ...] -> J^T w [N x D]
        (grad,) = torch.autograd.grad(out, x_grad, w, retain_graph=True)
        return grad.reshape(n, d)

    v, _ = torch.linalg.qr(torch.randn(n, d, k, generator=g).to(x))  # [N x D x k], orthonormal columns per sample
    for _ in range(iters):
        v, _ = torch.linalg.qr(torch.stack([vjp(jvp(v[..., j])) for j in range(k)], dim=-1))
    sigma = torch.stack([_per_sample_norm(jvp(v[..., j])) for j in range(k)], dim=-1)  # [N x k]
    order = sigma.argsort(dim=1, descending=True)
    sigma = sigma.gather(1, order)
    v = v.gather(2, order[:, None, :].expand(n, d, k))
    return sigma, v.permute(0, 2, 1).reshape(n, k, *x.shape[1:])


def _decode_from_h(model: HSpaceModel, state: EncoderState, h: torch.Tensor) -> torch.Tensor:
    return model.decode(h, state)


def _decode_from_skip(
    model: HSpaceModel, h: torch.Tensor, state: EncoderState, index: int, skip: torch.Tensor
) -> torch.Tensor:
    """eps with skip ``index`` replaced by ``skip``."""
    skips = list(state.skips)
    skips[index] = skip
    return model.decode(h, EncoderState(state.emb, tuple(skips), state.t))


class _TimedDirections:
    """Directions protocol: at timestep t adds ``s * size * |h_n| * d_t`` (d_t unit-norm per sample;
    s the sum of the edits' magnitudes, whatever their k)."""

    def __init__(self, directions: dict[int, torch.Tensor], size: float):
        self.directions, self.size = directions, size

    def shift(self, h, state, edits):
        d = self.directions[int(state.t[0])]
        d = d / _per_sample_norm(d).clamp_min(1e-12).view(-1, *[1] * (d.dim() - 1))
        s = sum(float(magnitude) for _, magnitude in edits)
        return s * self.size * _per_sample_norm(h).view(-1, *[1] * (h.dim() - 1)) * d.expand_as(h)


@torch.no_grad()
def probe_liveness(
    model: HSpaceModel,
    M: int = 10,
    t_stop: int = 400,
    batch: int = 8,
    sizes: Sequence[float] = (0.25, 0.5, 1.0),
    top_k: int = 3,
    iters: int = 8,
    random_directions: int = 4,
    skips: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> LivenessReport:
    """Measure how strongly ``model``'s decoder reads h on an M-step DDIM chain (see the module doc).

    ``skips=False`` leaves out the skips' gains (the slowest part) for a quick check.
    """
    if M < 1 or batch < 1 or top_k < 1 or iters < 1 or random_directions < 1:
        raise ValueError("M, batch, top_k, iters and random_directions must all be >= 1")
    if not sizes or min(sizes) <= 0:
        raise ValueError(f"sizes={list(sizes)}: give shift sizes > 0 (relative to h's norm)")
    timesteps = check_timesteps(uniform_timesteps(M, model.num_train_steps), model.num_train_steps)
    if t_stop > timesteps[0]:
        raise ValueError(
            f"t_stop={t_stop} is above the chain's first timestep {timesteps[0]}: choose t_stop <= {timesteps[0]}"
        )
    device = next(iter(model.buffers())).device
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(batch, model.in_channels, model.image_size, model.image_size, generator=g).to(device)
    steps = chain_alpha_bars(model.alphas_cumprod, timesteps)

    gain: dict[str, list[float]] = {}
    h_gain_top, h_x0_gain, h_sigma, top_dirs = [], [], [], {}
    x = x_T
    bar = tqdm(steps, desc="probe", disable=not progress, leave=False)
    for t, abar_t, abar_prev in bar:
        tb = timestep_batch(t, x)
        h, state = model.encode(x, tb)
        eps = model.decode(h, state)
        eps_norm = _per_sample_norm(eps).clamp_min(1e-12)
        x0_norm = _per_sample_norm(predict_x0(x, eps, abar_t)).clamp_min(1e-12)
        to_x0 = math.sqrt(1 - abar_t) / math.sqrt(abar_t) * eps_norm / x0_norm  # [N]
        with torch.enable_grad():
            sig, vec = top_singular(partial(_decode_from_h, model, state), h, top_k, iters, seed)
        rel = sig * (_per_sample_norm(h) / eps_norm)[:, None]  # [N x k]
        gain.setdefault("h", []).append(rel[:, 0].mean().item())
        h_gain_top.append(rel.mean(0).tolist())
        h_x0_gain.append((rel[:, 0] * to_x0).mean().item())
        h_sigma.append(sig[:, 0].mean().item())
        top_dirs[t] = vec[:, 0]
        # The skips the decoder reads at h's resolution, and the first full-resolution one.
        same_level = [i for i, s in enumerate(state.skips) if s.shape[-2:] == h.shape[-2:]]
        for i in [*same_level, 0] if skips and state.skips else []:
            skip = state.skips[i]
            with torch.enable_grad():
                sig_s, _ = top_singular(partial(_decode_from_skip, model, h, state, i), skip, 1, iters, seed)
            name = f"skip{i} {tuple(skip.shape[1:])}"
            gain.setdefault(name, []).append((sig_s[:, 0] * _per_sample_norm(skip) / eps_norm).mean().item())
        x = ddim_step(x, eps, abar_t, abar_prev)
    x0 = x

    # Delta x0 over the whole shifting interval, for shifts of each size.
    shifted = [t for t in timesteps if t >= t_stop]

    def opposite_changes(dirs: _TimedDirections) -> tuple[torch.Tensor, torch.Tensor]:
        """x0's changes [N x C x H x W] when the shift is added, and when it is subtracted."""
        return tuple(sample(model, x_T, timesteps, dirs, [(0, sign)], t_stop) - x0 for sign in (1.0, -1.0))

    delta_random, delta_top, even_random, even_top = {}, {}, {}, {}
    h_shape = list(h.shape[1:])
    for size in sizes:
        changes, evens = [], []
        for r in range(random_directions):
            d = torch.randn(1, *h_shape, generator=torch.Generator().manual_seed(seed + 1 + r)).to(device)
            plus, minus = opposite_changes(_TimedDirections({t: d for t in shifted}, size))
            changes.append(plus.abs().mean().item())
            evens.append(even_share(plus, minus).mean().item())
        delta_random[f"{size:g}"] = sum(changes) / len(changes)
        even_random[f"{size:g}"] = sum(evens) / len(evens)
        plus, minus = opposite_changes(_TimedDirections({t: top_dirs[t] for t in shifted}, size))
        delta_top[f"{size:g}"] = plus.abs().mean().item()
        even_top[f"{size:g}"] = even_share(plus, minus).mean().item()

    report = LivenessReport(
        timesteps, h_shape, gain, h_gain_top, h_x0_gain, h_sigma, delta_random, delta_top, t_stop, even_random, even_top
    )
    report.live, report.verdict = _verdict(report)
    return report


def _verdict(report: LivenessReport) -> tuple[bool | None, str]:
    """One line: can this h-space carry directions? Judged on random shifts of h's own norm."""
    key = "1" if "1" in report.delta_x0_random else max(report.delta_x0_random, key=float)
    d = report.delta_x0_random[key]
    what = f"random h shifts of {key} x |h| for t >= {report.t_stop} move x0 by {d:.3f} on average"
    if d < DEAD_BELOW:
        return (
            False,
            f"DORMANT h-space: {what} (< {DEAD_BELOW}); expect few distinct directions, and only with large shifts",
        )
    if d < LIVE_ABOVE:
        return None, f"WEAK h-space: {what} ({DEAD_BELOW}..{LIVE_ABOVE}); directions need large shifts"
    return True, f"LIVE h-space: {what} (>= {LIVE_ABOVE})"
