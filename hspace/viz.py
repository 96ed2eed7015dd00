"""Images to files: grids as PNG."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .artifacts import atomic_write


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[N x C x H x W] in [-1, 1] -> uint8 [N x H x W x C]."""
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def grid(x: torch.Tensor, ncol: int, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile images [N x C x H x W] into one uint8 picture [rows x cols], row-major."""
    imgs = to_uint8(x)
    n, h, w, c = imgs.shape
    nrow = -(-n // ncol)
    out = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), pad_value, dtype=np.uint8)
    for i, img in enumerate(imgs):
        r, q = divmod(i, ncol)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = img
    return out[..., 0] if c == 1 else out


def save_grid(x: torch.Tensor, path: str | Path, ncol: int, scale: int = 1) -> Path:
    """Save a grid PNG atomically; ``scale`` enlarges small images (nearest) for viewing."""
    img = Image.fromarray(grid(x, ncol))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def seed_noise(seeds: Sequence[int], channels: int, size: int) -> torch.Tensor:
    """x_T [R x C x H x W], row i from its own generator seeded ``seeds[i]``: independent of the batch."""
    return torch.stack([torch.randn(channels, size, size, generator=torch.Generator().manual_seed(s)) for s in seeds])


@torch.no_grad()
def direction_sweep(model, directions, timesteps, t_stop: int, k: int, x_T: torch.Tensor, magnitudes) -> torch.Tensor:
    """Samples for one direction: rows are the seeds of x_T [R x C x H x W], columns the magnitudes.

    Returns [R * len(magnitudes) x C x H x W], row-major. All magnitudes run as one batch per seed row.
    """
    from .sampling import sample

    mags = torch.as_tensor(list(magnitudes), dtype=x_T.dtype, device=x_T.device)
    rows, cols = x_T.shape[0], mags.shape[0]
    x = x_T.repeat_interleave(cols, dim=0)
    s = mags.repeat(rows)
    return sample(model, x, timesteps, directions=directions, edits=[(k, s)], t_stop=t_stop, clip_x0=True)


def magnitudes(S: float, n: int = 9) -> list[float]:
    """n magnitudes evenly from -S to S (n odd puts the unshifted sample in the middle column)."""
    return [(-S + 2 * S * i / (n - 1)) if n > 1 else 0.0 for i in range(n)]
