"""Images to files: grids as PNG."""
from __future__ import annotations

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
