"""Pictures of samples: one sheet renderer for every grid (``show``, ``edit``, ``mos``, training), PNG and GIF.

A sheet is R rows x n columns of cells, optionally a header row of shift magnitudes with the s = 0
column framed, and a label column. Nothing here samples: callers pass the images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from .artifacts import atomic_write

PAD, HEADER, LABEL = 4, 14, 32  # px: gap between cells, magnitude header row, row label column
MARK = (230, 110, 0)  # frame and header colour of the unshifted (s = 0) column
MIN_CELL = 64  # by default small images are enlarged (nearest) to cells of at least this many px


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[N x C x H x W] in [-1, 1] -> uint8 [N x H x W x C]."""
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def default_scale(image_size: int) -> int:
    """How many times to enlarge images so that cells are at least ``MIN_CELL`` px."""
    return max(1, -(-MIN_CELL // image_size))


@dataclass(frozen=True)
class Layout:
    """Where the cells of a sheet land: ``rows x cols`` cells, optional header row and label column."""

    rows: int
    cols: int
    cell_h: int
    cell_w: int
    header: bool = True
    label: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the sheet in px."""
        x1, y1 = self.box(self.rows - 1, self.cols - 1)[2:]
        return x1 + PAD, y1 + PAD

    def box(self, r: int, c: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of cell (r, c), right and bottom exclusive."""
        x0 = (LABEL if self.label else 0) + PAD + c * (self.cell_w + PAD)
        y0 = (HEADER if self.header else 0) + PAD + r * (self.cell_h + PAD)
        return x0, y0, x0 + self.cell_w, y0 + self.cell_h


def format_s(s: float) -> str:
    """A magnitude as a short column header: '-2.5', '0', '+1.25'."""
    return "0" if s == 0 else f"{s:+.3g}"


def compose(
    cells: np.ndarray,
    scale: int,
    mags: Sequence[float] | None = None,
    row_labels: Sequence[str] | None = None,
    header: bool = True,
) -> Image.Image:
    """An RGB sheet of uint8 cells [R x n x H x W x C] enlarged ``scale`` times.

    With ``mags`` (one per column) the columns get a header (``header``) and the s = 0 column a frame.
    """
    R, n, h, w, c = cells.shape
    rgb = np.repeat(cells, 3, axis=-1) if c == 1 else cells[..., :3]
    rgb = rgb.repeat(scale, axis=2).repeat(scale, axis=3)
    has_header = header and mags is not None
    lay = Layout(R, n, h * scale, w * scale, has_header, row_labels is not None)
    img = Image.new("RGB", lay.size, "white")
    draw = ImageDraw.Draw(img)
    for r in range(R):
        for q in range(n):
            img.paste(Image.fromarray(np.ascontiguousarray(rgb[r, q])), lay.box(r, q)[:2])
        if row_labels is not None:
            draw.text((3, lay.box(r, 0)[1] + lay.cell_h // 2 - 6), row_labels[r], fill="black")
    for q, s in enumerate(mags or []):
        x0, y0, x1, _ = lay.box(0, q)
        if has_header:
            text = format_s(s)
            draw.text(((x0 + x1 - draw.textlength(text)) / 2, 1), text, fill=MARK if s == 0 else "black")
        if s == 0:
            draw.rectangle([x0 - 3, y0 - 3, x1 + 2, lay.box(R - 1, q)[3] + 2], outline=MARK, width=2)
    return img


def sheet(
    x: torch.Tensor,
    scale: int,
    mags: Sequence[float] | None = None,
    row_labels: Sequence[str] | None = None,
) -> Image.Image:
    """``compose`` for samples x [R x n x C x H x W] in [-1, 1]."""
    cells = to_uint8(x.flatten(0, 1))  # [R * n x H x W x C]
    return compose(cells.reshape(*x.shape[:2], *cells.shape[1:]), scale, mags, row_labels)


def as_rows(x: torch.Tensor, ncol: int) -> torch.Tensor:
    """Images [N x C x H x W] as rows of ``ncol`` [R x ncol x C x H x W]; N must be a multiple of ncol."""
    return x.unflatten(0, (-1, ncol))


def save_image(img: Image.Image, path: str | Path) -> Path:
    """A PNG, atomically."""
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def save_gif(cells: np.ndarray, scale: int, mags: Sequence[float], path: Path, ms: int = 250) -> Path:
    """An animated GIF of the columns (all rows), s from -S to S and back, looping forever."""
    order = sorted(range(len(mags)), key=lambda q: mags[q])
    order += order[-2:0:-1]
    frames = [compose(cells[:, q : q + 1], scale, [mags[q]]) for q in order]

    def write(tmp: str) -> None:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=ms, loop=0)

    return atomic_write(path, write)
