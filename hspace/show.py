"""``hspace show``: a grid per direction, an overview, optional GIFs and an ``index.html`` for a discovery run."""

from __future__ import annotations

import html
import json
import math
import shlex
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .artifacts import atomic_write
from .run import Run, check_directions, check_run_folder, format_indices, load_run, parse_indices
from .sampling import magnitudes as even_magnitudes
from .sampling import seed_noise
from .viz import MARK, compose, default_scale, save_gif, save_image, to_uint8


def parse_magnitudes(text: str, S: float) -> list[float]:
    """'9' -> 9 magnitudes evenly from -S to S; '-5,-2.5,0,2.5,5' -> those values."""
    text = str(text).strip()
    if text.isdigit():
        if int(text) < 1:
            raise ValueError(f"--magnitudes {text}: need at least one column, e.g. 9")
        return even_magnitudes(S, int(text))
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(s) for s in values):
        raise ValueError(f"bad magnitudes {text!r}: give a count like 9, or values like --magnitudes=-5,-2.5,0,2.5,5")
    return values


def magnitudes_text(mags: str | Sequence[float]) -> str:
    """Magnitudes as ``--magnitudes`` takes them; a lone value keeps a comma so it is not read as a count."""
    if isinstance(mags, str):
        return mags.strip()
    return ",".join(f"{float(s):.10g}" for s in mags) + "," * (len(mags) == 1)


def sweep(run: Run, k: int, seeds: Sequence[int], mags: Sequence[float]):
    """Samples of direction k [R x n x C x H x W] in [-1, 1]: rows seeds, columns magnitudes."""
    x_T = seed_noise(seeds, run.model.in_channels, run.model.image_size).to(run.device)
    return run.sweep(k, x_T, mags)


def render_index(
    title: str,
    info: dict,
    entries: Sequence[tuple[int, str | None, str, str | None]],
    commands: dict[str, str],
) -> str:
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


def show(
    run_ref: str | Path,
    out: str | Path | None = None,
    directions: str | Sequence[int] | None = None,
    seeds: str | Sequence[int] = "0-7",
    mags: str | Sequence[float] = "9",
    gif: bool = False,
    device: str = "cpu",
    scale: int | None = None,
    progress: bool = True,
) -> Path:
    """Write grids, ``overview.png``, GIFs (``gif``) and ``index.html`` for a run; returns the output folder."""
    from .cli import discover_argv

    # Every argument is checked before the run is loaded and anything sampled.
    seeds = parse_indices(seeds, "seed") if isinstance(seeds, str) else list(seeds)
    if not seeds:
        raise ValueError("no seeds: give at least one, e.g. --seeds 0-7")
    if scale is not None and scale < 1:
        raise ValueError(f"--scale {scale}: give a whole number >= 1")
    if isinstance(directions, str):
        directions = parse_indices(directions)
    mag_text = magnitudes_text(mags)
    parse_magnitudes(mag_text, 1.0)
    check_run_folder(run_ref)
    run = load_run(run_ref, device=device)
    cfg = run.config
    ks = check_directions(list(range(cfg.K)) if directions is None else directions, cfg.K)
    mags = parse_magnitudes(mag_text, cfg.S)
    scale = scale or default_scale(run.model.image_size)
    out = Path(out) if out is not None else Path(f"show-{run.name}") if run.shipped else run.folder / "show"
    labels = run.labels()
    entries, first = [], []
    for k in tqdm(ks, desc="show", unit="direction", disable=not progress):
        x = sweep(run, k, seeds, mags)  # [R x n x C x H x W]
        cells = to_uint8(x.flatten(0, 1))
        cells = cells.reshape(len(seeds), len(mags), *cells.shape[1:])  # [R x n x H x W x C]
        png = save_image(compose(cells, scale, mags), out / f"direction-{k:03d}.png").name
        anim = save_gif(cells, scale, mags, out / f"direction-{k:03d}.gif").name if gif else None
        entries.append((k, labels.get(k), png, anim))
        first.append(cells[0])
    save_image(compose(np.stack(first), scale, mags, [str(k) for k in ks]), out / "overview.png")
    # What the grids were drawn with: ``hspace mos`` reuses them when it would draw the same.
    files = {str(k): png for k, _, png, _ in entries}
    drawn = {"step": run.step, "seeds": seeds, "magnitudes": mags, "scale": scale, "files": files}
    atomic_write(out / "sweeps.json", lambda tmp: Path(tmp).write_text(json.dumps(drawn)))

    source = run.model_ref.get("source", "?")
    info = {
        "run": run.name,
        "K": cfg.K,
        "S": cfg.S,
        "M": cfg.M,
        "t_stop": cfg.t_stop,
        "step": run.step,
        "model": source,
        "model fingerprint": run.model_ref.get("fingerprint", "?"),
    }
    show_cmd = ["hspace", "show", str(run_ref), "--out", str(out)]
    show_cmd += ["--directions", format_indices(ks), "--seeds", format_indices(seeds)]
    show_cmd += [f"--magnitudes={mag_text}", "--scale", str(scale)] + ["--gif"] * gif
    run_out = f"runs/{run.name}" if run.shipped else str(run.folder)
    commands = {
        "these pictures": shlex.join(show_cmd),
        "the run itself": shlex.join(discover_argv(source, cfg, run_out)),
    }
    page = render_index(f"hspace directions: {run.folder.name}", info, entries, commands)
    atomic_write(out / "index.html", lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return out
