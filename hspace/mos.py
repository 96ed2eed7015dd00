"""The mean opinion score study (paper 5.5): a page on which people mark directions, and the score from their marks.

For each direction an assessor sees 8 examples (rows, one seed each) x 9 magnitudes (columns, s evenly from
-S to S) and gives a mark of 1 when the transition is (a) smooth, (b) consistent across the examples and
(c) easy to interpret, else 0. The MOS of a direction is its mean mark over assessors; the overall MOS is the
mean over the marked directions.

``build_mos_page`` writes one self-contained HTML file (images inline, no network) that works opened from
disk; its "Save marks" button downloads ``mos-<assessor>-<run>.json``::

    {"run": "<run folder name>", "run_fingerprint": "<model fingerprint or null>", "assessor": "<name>",
     "K": 8, "marks": {"0": 1, "3": 0, ...}, "created": "2024-01-01T12:00:00.000Z"}

Skipped directions are left out of ``marks``. ``score_marks`` reads one file per assessor.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

from .artifacts import atomic_write
from .run import Run, load_run, resolve_direction
from .sampling import magnitudes as even_magnitudes
from .sampling import seed_noise
from .viz import default_scale, sheet

PAGE = "mos.html"
CRITERIA = (
    ("smooth", "the images change gradually from left to right, without jumps or sudden switches;"),
    ("consistent across the {rows} examples", "all rows show the same kind of change;"),
    ("easy to interpret", "you could name the change in a few words (e.g. \u201cthicker strokes\u201d)."),
)


def _open_png(path: Path) -> Image.Image | None:
    """A grid ``show`` wrote, or None when it cannot be read (then it is drawn again)."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError):
        return None


def _png_data_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _json_for_script(obj) -> str:
    """JSON safe inside <script>: no '</script>' or '<!--' can end it early."""
    return json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page_path(out: str | Path) -> Path:
    """The study page inside the ``--out`` folder; refuses a file where the folder should be."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: give a folder for the study page (it writes {PAGE} there)")
    return out / PAGE


def rendered_sweeps(run: Run, seeds: list[int], mags: list[float], scale: int) -> dict[int, Path]:
    """Grids ``hspace show`` already rendered for this run with the same seeds, magnitudes and scale."""
    manifest = run.folder / "show" / "sweeps.json"
    try:
        saved = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return {}
    same = saved.get("seeds") == seeds and saved.get("magnitudes") == mags and saved.get("scale") == scale
    same = same and saved.get("step") == run.step
    if not same:
        return {}
    files = {int(k): manifest.parent / name for k, name in saved.get("files", {}).items()}
    return {k: path for k, path in files.items() if path.exists()}


@torch.no_grad()
def build_mos_page(
    run,
    out: str | Path,
    directions: Sequence[int | str] | None = None,
    seeds: Iterable[int] = range(8),
    num_magnitudes: int = 9,
    scale: int | None = None,
    progress: bool = True,
) -> Path:
    """Write the MOS page for ``run`` (a ``Run``, run folder or shipped run name) into the folder ``out``.

    Per direction (all by default; indices or labels) a grid of ``len(seeds)`` rows x ``num_magnitudes``
    columns (s evenly from -S to S), cells enlarged ``scale`` times (default: to at least 64 px); the grids
    ``hspace show`` rendered with the same settings are reused. Returns the page's path.
    """
    path = page_path(out)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("no seeds: the study needs examples, e.g. seeds=range(8)")
    if num_magnitudes < 2:
        raise ValueError(f"num_magnitudes={num_magnitudes}: need at least 2 columns to show a transition, e.g. 9")
    if scale is not None and (int(scale) != scale or scale < 1):
        raise ValueError(f"scale={scale}: give a whole number >= 1")
    if not isinstance(run, Run):
        run = load_run(run)
    cfg, model = run.config, run.model
    scale = int(scale or default_scale(model.image_size))
    labels = run.labels()
    if directions is None:
        ks = list(range(cfg.K))
    else:
        ks = list(dict.fromkeys(resolve_direction(str(d), labels, cfg.K) for d in directions))
    if not ks:
        raise ValueError("no directions: give at least one index (or leave directions=None for all)")
    mags = even_magnitudes(cfg.S, num_magnitudes)

    reused = rendered_sweeps(run, seeds, mags, scale)
    x_T = seed_noise(seeds, model.in_channels, model.image_size).to(run.device)
    entries = []
    for k in tqdm(ks, desc="mos page", unit="direction", disable=not progress):
        picture = _open_png(reused[k]) if k in reused else None
        if picture is None:
            picture = sheet(run.sweep(k, x_T, mags), scale, mags)
        uri = _png_data_uri(picture)
        entries.append((k, labels.get(k), uri))

    meta = {"run": run.folder.name, "run_fingerprint": run.model_ref.get("fingerprint"), "K": cfg.K, "directions": ks}
    page = render_page(meta, entries, mags, len(seeds), cfg.S)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))


def render_page(
    meta: dict, entries: Sequence[tuple[int, str | None, str]], mags: Sequence[float], rows: int, S: float
) -> str:
    """The HTML: ``meta`` (run, run_fingerprint, K, directions) and per entry (k, label, PNG data URI)."""
    e = html.escape
    crit = "".join(f"<li><b>{e(name.format(rows=rows))}</b>: {e(text)}</li>" for name, text in CRITERIA)
    cols = ", ".join(f"{s:g}" for s in mags)
    blocks = []
    for k, label, uri in entries:
        name = f"Direction {k}" + (f": {label}" if label else "")
        radios = "".join(
            f'<label><input type="radio" class="mark" name="mark-{k}" data-k="{k}" value="{v}"> {e(text)}</label>'
            for v, text in (("1", "1 = meets all three criteria"), ("0", "0 = does not"), ("skip", "skip"))
        )
        blocks.append(
            f'<section class="direction" id="k{k}"><h2>{e(name)}</h2>'
            f'<img src="{uri}" alt="{e(name)}: {rows} examples x {len(mags)} magnitudes">'
            f'<div class="marks">{radios}</div></section>'
        )
    n = len(entries)
    title = f"MOS study: {meta['run']}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body{{font-family:sans-serif;margin:0 2em 2em;max-width:100em}}
#bar{{position:sticky;top:0;background:#fff;border-bottom:1px solid #ccc;padding:.6em 0;z-index:1;
  display:flex;gap:1.2em;align-items:center;flex-wrap:wrap}}
.instructions{{background:#f4f4f4;padding:.5em 1em;border-radius:4px}}
img{{image-rendering:pixelated;max-width:100%;display:block;margin:.3em 0}}
section.direction{{border-left:6px solid #ccc;padding-left:1em;margin:1.5em 0}}
section.direction:has(input.mark:checked){{border-left-color:#3a3}}
.marks label{{margin-right:1.5em;cursor:pointer}}
button{{font-size:1em;padding:.3em 1em}}
</style></head><body>
<h1>{e(title)}</h1>
<div class="instructions">
<p>Each picture shows one direction: the <b>{rows} rows</b> are different examples, the <b>{len(mags)} columns</b>
apply the direction with magnitude s from {-S:g} to {S:g} (s = {cols}; the middle column is the unchanged image).</p>
<p>Give a direction the mark <b>1</b> only when its transition is all three of the following, otherwise <b>0</b>:</p>
<ol type="a">{crit}</ol>
<p>Your marks are kept in this browser while you work (reloading the page does not lose them).
When you are done, press <b>Save marks</b> and send the downloaded JSON file back.</p>
</div>
<div id="bar">
<label>Your name: <input id="assessor" type="text" autocomplete="name" placeholder="assessor name"></label>
<span id="progress">0 of {n} directions marked</span>
<button id="save" type="button">Save marks</button>
</div>
{"".join(blocks)}
<script type="application/json" id="mos-meta">{_json_for_script(meta)}</script>
<script>
{_SCRIPT}
</script>
</body></html>
"""


# Plain ES5, DOM calls kept to a few so it also runs under a small stub (tests) and from file://.
_SCRIPT = r"""(function () {
  "use strict";
  var META = JSON.parse(document.getElementById("mos-meta").textContent);
  var KEY = "hspace-mos:" + META.run + ":" + (META.run_fingerprint || "");
  var nameInput = document.getElementById("assessor");
  var radios = document.querySelectorAll("input.mark");

  function loadState() {
    try { return JSON.parse(window.localStorage.getItem(KEY)) || {}; } catch (err) { return {}; }
  }
  function storeState(state) {
    try { window.localStorage.setItem(KEY, JSON.stringify(state)); } catch (err) { /* private mode: no persistence */ }
  }
  function currentState() {
    var choices = {};
    for (var i = 0; i < radios.length; i++) {
      if (radios[i].checked) { choices[radios[i].getAttribute("data-k")] = radios[i].value; }
    }
    return {assessor: nameInput.value.trim(), choices: choices};
  }
  function payload(state) {
    var marks = {};
    META.directions.forEach(function (k) {
      var c = state.choices[String(k)];
      if (c === "0" || c === "1") { marks[String(k)] = Number(c); }
    });
    return {run: META.run, run_fingerprint: META.run_fingerprint, assessor: state.assessor, K: META.K,
            marks: marks, created: new Date().toISOString()};
  }
  function safe(text) { return String(text).replace(/[^A-Za-z0-9_.-]+/g, "_").replace(/^[_.]+|[_.]+$/g, "") || "x"; }
  function fileName(state) { return "mos-" + safe(state.assessor) + "-" + safe(META.run) + ".json"; }

  function update() {
    var state = currentState();
    var marked = 0, skipped = 0;
    META.directions.forEach(function (k) {
      var c = state.choices[String(k)];
      if (c === "0" || c === "1") { marked++; } else if (c === "skip") { skipped++; }
    });
    document.getElementById("progress").textContent = marked + " of " + META.directions.length +
      " directions marked" + (skipped ? " (" + skipped + " skipped)" : "");
    storeState(state);
    return state;
  }

  function save() {
    var state = update();
    if (!state.assessor) {
      window.alert("Please enter your name first.");
      nameInput.focus();
      return null;
    }
    var data = payload(state);
    var open = META.directions.length - Object.keys(data.marks).length;
    if (open > 0 && !window.confirm(open + " direction(s) have no mark 0 or 1. Save anyway?")) { return null; }
    var blob = new Blob([JSON.stringify(data, null, 2) + "\n"], {type: "application/json"});
    var url = URL.createObjectURL(blob);
    var a = document.createElement("a");
    a.href = url;
    a.download = fileName(state);
    document.body.appendChild(a);
    a.click();
    document.body.removeChild(a);
    window.setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
    return data;
  }

  var saved = loadState();
  if (typeof saved.assessor === "string") { nameInput.value = saved.assessor; }
  var choices = saved.choices || {};
  for (var i = 0; i < radios.length; i++) {
    if (choices[radios[i].getAttribute("data-k")] === radios[i].value) { radios[i].checked = true; }
    radios[i].addEventListener("change", update);
  }
  nameInput.addEventListener("input", update);
  document.getElementById("save").addEventListener("click", save);
  update();
  window.hspaceMos = {state: currentState, payload: payload, fileName: fileName, save: save, key: KEY};
})();"""


def _read_marks(path: Path) -> dict:
    """One marks file, checked; ValueError naming the file otherwise."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ValueError(f"{path}: cannot read the marks file ({err.strerror or err})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a JSON marks file ({err}); use the file saved by the MOS page") from None
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected a JSON object with "marks", got {type(data).__name__}')
    marks = data.get("marks")
    if not isinstance(marks, dict):
        raise ValueError(f'{path}: "marks" should map direction indices to 0 or 1, like {{"0": 1, "3": 0}}')
    K = data.get("K")
    if K is not None and (not isinstance(K, int) or isinstance(K, bool) or K < 1):
        raise ValueError(f'{path}: "K" should be the run\'s number of directions, got {K!r}')
    out = {}
    for key, mark in marks.items():
        if not key.isdigit():
            raise ValueError(f'{path}: mark key {key!r} is not a direction index ("0", "1", ...)')
        k = int(key)
        if K is not None and k >= K:
            raise ValueError(f"{path}: direction {k} out of range: the run has K={K} directions (0..{K - 1})")
        if isinstance(mark, bool) or mark not in (0, 1):
            raise ValueError(f"{path}: the mark of direction {k} is {mark!r}; marks are 0 or 1")
        out[k] = int(mark)
    assessor = data.get("assessor")
    return {
        "path": Path(path),
        "run": data.get("run"),
        "run_fingerprint": data.get("run_fingerprint"),
        "K": K,
        "assessor": assessor.strip() if isinstance(assessor, str) else "",
        "marks": out,
    }


def score_marks(paths: str | Path | Iterable[str | Path]) -> dict:
    """MOS from one marks file per assessor, all of the same run.

    Returns ``{"mos", "num_assessors", "per_direction": {k: {"mos", "n"}}, "unmarked": [k, ...]}`` plus ``run``,
    ``run_fingerprint``, ``K`` and ``assessors``. ``unmarked`` lists the directions 0..K-1 nobody marked; they
    are left out of the overall MOS (the mean of the per-direction means).
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise ValueError("no marks files: give one JSON file per assessor, saved from the MOS page")
    files = [_read_marks(p) for p in paths]
    first = files[0]
    seen: dict[str, Path] = {}
    for f in files:
        for field in ("run", "run_fingerprint", "K"):
            if f[field] != first[field]:
                raise ValueError(
                    f"{f['path']} is from another run than {first['path']} ({field} {f[field]!r} vs "
                    f"{first[field]!r}): score each run's marks separately"
                )
        who = f["assessor"].casefold()
        if who and who in seen:
            raise ValueError(
                f"{f['path']} and {seen[who]} are both from assessor {f['assessor']!r}: give one file per assessor"
            )
        seen[who] = f["path"]
    K = first["K"]
    marked = sorted({k for f in files for k in f["marks"]})
    if not marked:
        raise ValueError(f"no marks in {', '.join(str(f['path']) for f in files)}: every direction was skipped")
    per_direction = {}
    for k in marked:
        values = [f["marks"][k] for f in files if k in f["marks"]]
        per_direction[k] = {"mos": sum(values) / len(values), "n": len(values)}
    unmarked = [k for k in range(K) if k not in per_direction] if K is not None else []
    mos = sum(d["mos"] for d in per_direction.values()) / len(per_direction)
    return {
        "mos": mos,
        "num_assessors": len(files),
        "per_direction": per_direction,
        "unmarked": unmarked,
        "run": first["run"],
        "run_fingerprint": first["run_fingerprint"],
        "K": K,
        "assessors": [f["assessor"] or f["path"].name for f in files],
    }


def format_scores(result: dict) -> str:
    """``score_marks``'s result as a table for the terminal."""
    lines = []
    if result.get("run") is not None:
        fp = result.get("run_fingerprint")
        lines.append(f"run: {result['run']}" + (f" (model fingerprint {fp})" if fp else ""))
    names = result.get("assessors")
    lines.append(f"assessors: {result['num_assessors']}" + (f" ({', '.join(names)})" if names else ""))
    lines.append("")
    lines.append(f"{'direction':>9}  {'MOS':>5}  {'marks':>5}")
    for k, d in sorted(result["per_direction"].items()):
        lines.append(f"{k:>9}  {d['mos']:>5.2f}  {d['n']:>5}")
    n = len(result["per_direction"])
    lines.append(f"{'overall':>9}  {result['mos']:>5.2f}  {'':>5}  (mean over {n} directions)")
    if result["unmarked"]:
        lines.append(f"unmarked (not in the MOS): {', '.join(str(k) for k in result['unmarked'])}")
    return "\n".join(lines)


def now_iso() -> str:
    """The timestamp format the page writes in ``created`` (UTC, ISO 8601)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
