"""``hspace show``: a grid per direction, an overview, optional GIFs and an ``index.html`` for a discovery run."""
from __future__ import annotations

import html
import json
import math
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from .artifacts import atomic_write
from .edit import read_labels
from .viz import direction_sweep, magnitudes as even_magnitudes, seed_noise, to_uint8

PAD, HEADER, LABEL = 4, 14, 32  # px: gap between cells, magnitude header row, direction label column
MARK = (230, 110, 0)  # frame and header colour of the unshifted (s = 0) column
MIN_CELL = 64  # by default small images are enlarged (nearest) to cells of at least this many px
_PART = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_indices(text: str, what: str = "direction") -> list[int]:
    """'0-7', '0,3,5' or '0-3,8' -> indices in the given order, duplicates dropped."""
    out: list[int] = []
    for part in str(text).split(","):
        if not part.strip():
            continue
        m = _PART.match(part)
        if m is None:
            raise ValueError(f"bad {what} list {text!r}: write indices like 0-7, 0,3,5 or 0-3,8")
        lo, hi = int(m[1]), int(m[2] or m[1])
        if hi < lo:
            raise ValueError(f"bad {what} range {part.strip()!r} in {text!r}: write the smaller index first")
        out.extend(range(lo, hi + 1))
    if not out:
        raise ValueError(f"no {what}s in {text!r}: give at least one, e.g. 0-7")
    return list(dict.fromkeys(out))


def format_indices(ks: Sequence[int]) -> str:
    """[0, 1, 2, 3, 8] -> '0-3,8' (the inverse of ``parse_indices``)."""
    parts: list[str] = []
    for k in ks:
        if parts and parts[-1].split("-")[-1] == str(k - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{k}"
        else:
            parts.append(str(k))
    return ",".join(parts)


def parse_magnitudes(text: str, S: float) -> list[float]:
    """'9' -> 9 magnitudes evenly from -S to S; '-5,-2.5,0,2.5,5' -> those values."""
    text = str(text).strip()
    if text.isdigit():
        if int(text) < 1:
            raise ValueError(f"--magnitudes {text}: need at least one column, e.g. 9")
        return [0.0 if abs(s) <= 1e-9 * S else s for s in even_magnitudes(S, int(text))]
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(s) for s in values):
        raise ValueError(f"bad magnitudes {text!r}: give a count like 9, or values like --magnitudes=-5,-2.5,0,2.5,5")
    return values


def check_directions(ks: Sequence[int], K: int) -> list[int]:
    """The indices unchanged, or a ValueError naming the run's range."""
    for k in ks:
        if not 0 <= k < K:
            raise ValueError(f"direction {k} out of range: this run has K={K} directions (0..{K - 1})")
    return list(ks)


@torch.no_grad()
def sweep(run, k: int, seeds: Sequence[int], mags: Sequence[float]) -> torch.Tensor:
    """Samples of direction k [R x n x C x H x W] in [-1, 1]: rows seeds, columns magnitudes, one ``sample`` call."""
    m = run.model
    x_T = seed_noise(seeds, m.in_channels, m.image_size).to(next(run.shift_block.parameters()).device)
    x = direction_sweep(m, run.shift_block, run.timesteps, run.config.t_stop, k, x_T, mags)
    return x.unflatten(0, (len(seeds), len(mags)))


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


def compose(cells: np.ndarray, scale: int, mags: Sequence[float], row_labels: Sequence[str] | None = None,
            header: bool = True) -> Image.Image:  # fmt: skip
    """An RGB sheet of uint8 cells [R x n x H x W x C] enlarged ``scale`` times, the s = 0 column framed."""
    R, n, h, w, c = cells.shape
    rgb = np.repeat(cells, 3, axis=-1) if c == 1 else cells[..., :3]
    rgb = rgb.repeat(scale, axis=2).repeat(scale, axis=3)
    lay = Layout(R, n, h * scale, w * scale, header, row_labels is not None)
    img = Image.new("RGB", lay.size, "white")
    draw = ImageDraw.Draw(img)
    for r in range(R):
        for q in range(n):
            img.paste(Image.fromarray(np.ascontiguousarray(rgb[r, q])), lay.box(r, q)[:2])
        if row_labels is not None:
            draw.text((3, lay.box(r, 0)[1] + lay.cell_h // 2 - 6), row_labels[r], fill="black")
    for q, s in enumerate(mags):
        x0, y0, x1, _ = lay.box(0, q)
        if header:
            text = format_s(s)
            draw.text(((x0 + x1 - draw.textlength(text)) / 2, 1), text, fill=MARK if s == 0 else "black")
        if s == 0:
            draw.rectangle([x0 - 3, y0 - 3, x1 + 2, lay.box(R - 1, q)[3] + 2], outline=MARK, width=2)
    return img


def save_image(img: Image.Image, path: Path) -> Path:
    """A PNG, atomically."""
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def save_gif(cells: np.ndarray, scale: int, mags: Sequence[float], path: Path, ms: int = 250) -> Path:
    """An animated GIF of the columns (all seeds), s from -S to S and back, looping forever."""
    order = sorted(range(len(mags)), key=lambda q: mags[q])
    order += order[-2:0:-1]
    frames = [compose(cells[:, q : q + 1], scale, [mags[q]]) for q in order]
    return atomic_write(path, lambda tmp: frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                                                         duration=ms, loop=0))  # fmt: skip


def render_index(title: str, info: dict, entries: Sequence[tuple[int, str | None, str, str | None]],
                 commands: dict[str, str]) -> str:  # fmt: skip
    """A self-contained page: ``info`` as a table, the overview, then per entry (k, label, png, gif) its grid."""
    e = html.escape
    rows = "".join(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in info.items())
    cmds = "".join(f"<p>{e(k)}:</p><pre>{e(v)}</pre>" for k, v in commands.items())
    blocks = []
    for k, label, png, gif in entries:
        name = f"direction {k}" + (f": {label}" if label else "")
        anim = f' <img src="{e(gif)}" alt="{e(name)}, animated">' if gif else ""
        blocks.append(f'<section id="k{k}"><h2>{e(name)}</h2><img src="{e(png)}" alt="{e(name)}">{anim}</section>')
    toc = " ".join(f'<a href="#k{k}">{k}</a>' for k, *_ in entries)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:100em}} img{{image-rendering:pixelated;max-width:100%}}
th{{text-align:left;padding-right:1em}} pre{{background:#f4f4f4;padding:.5em;white-space:pre-wrap}}
.s0{{color:rgb{MARK}}}</style></head><body>
<h1>{e(title)}</h1>
<p>Rows are seeds, columns shift magnitudes s from -S to S; the <span class="s0">framed column</span> is s = 0,
the unshifted sample.</p>
<table>{rows}</table>
<h2>Overview</h2><p>One row per direction (first seed). Directions: {toc}</p>
<img src="overview.png" alt="overview: one row per direction">
{"".join(blocks)}
<h2>Reproduce</h2>{cmds}
</body></html>
"""


def show(run_ref: str | Path, out: str | Path | None = None, directions: str | Sequence[int] | None = None,
         seeds: str | Sequence[int] = "0-7", mags: str | Sequence[float] = "9", gif: bool = False,
         device: str = "cpu", scale: int | None = None, progress: bool = True) -> Path:  # fmt: skip
    """Write grids, ``overview.png``, GIFs (``gif``) and ``index.html`` for a run; returns the output folder."""
    from . import presets
    from .run import load_run

    seeds = parse_indices(seeds, "seed") if isinstance(seeds, str) else list(seeds)
    if not seeds:
        raise ValueError("no seeds: give at least one, e.g. --seeds 0-7")
    if scale is not None and scale < 1:
        raise ValueError(f"--scale {scale}: give a whole number >= 1")
    run = load_run(run_ref, device=device)
    cfg, m = run.config, run.model
    if isinstance(directions, str):
        directions = parse_indices(directions)
    ks = check_directions(list(range(cfg.K) if directions is None else directions), cfg.K)
    # A list becomes text for the command on the page; a lone value keeps a comma so it is not read as a count.
    if not isinstance(mags, str):
        mags = ",".join(f"{float(s):.10g}" for s in mags) + "," * (len(mags) == 1)
    mag_text = mags.strip()
    mags = parse_magnitudes(mag_text, cfg.S)
    scale = scale or max(1, math.ceil(MIN_CELL / m.image_size))
    shipped = str(run_ref) in presets.SHIPPED_RUNS
    out = Path(out) if out is not None else Path(f"show-{run_ref}") if shipped else run.folder / "show"
    labels = read_labels(run.folder)
    entries, first = [], []
    for k in tqdm(ks, desc="show", unit="direction", disable=not progress):
        x = sweep(run, k, seeds, mags)
        cells = to_uint8(x.flatten(0, 1))
        cells = cells.reshape(len(seeds), len(mags), *cells.shape[1:])
        png = save_image(compose(cells, scale, mags), out / f"direction-{k:03d}.png").name
        anim = save_gif(cells, scale, mags, out / f"direction-{k:03d}.gif").name if gif else None
        entries.append((k, labels.get(k), png, anim))
        first.append(cells[0])
    save_image(compose(np.stack(first), scale, mags, [str(k) for k in ks]), out / "overview.png")

    meta = json.loads((run.folder / "config.json").read_text()) if (run.folder / "config.json").exists() else {}
    model_ref = meta.get("model", {})
    source = model_ref.get("source", "?")
    info = {"run": run.folder, "K": cfg.K, "S": cfg.S, "M": cfg.M, "t_stop": cfg.t_stop, "step": run.step,
            "model": source, "model fingerprint": model_ref.get("fingerprint", "?")}  # fmt: skip
    show_cmd = ["hspace", "show", str(run_ref), "--out", str(out), "--directions", format_indices(ks), "--seeds",
                format_indices(seeds), f"--magnitudes={mag_text}", "--scale", str(scale)] + ["--gif"] * gif  # fmt: skip
    overrides = [a for f in fields(cfg) for a in (f"--{f.name.replace('_', '-')}", str(getattr(cfg, f.name)))]
    commands = {"these pictures": shlex.join(show_cmd),
                "the run itself": shlex.join(["hspace", "discover", "--model", str(source), "--out", str(run.folder),
                                              *overrides])}  # fmt: skip
    page = render_index(f"hspace directions: {run.folder.name}", info, entries, commands)
    atomic_write(out / "index.html", lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return out
