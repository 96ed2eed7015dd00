"""The MOS study: the self-contained page, its JavaScript (under node, with a small DOM stub) and the scoring."""

import base64
import io
import json
import re
import shutil
import subprocess

import pytest
from PIL import Image

from hspace.cli import main
from hspace.mos import build_mos_page, format_scores, now_iso, score_marks
from hspace.run import load_run
from hspace.show import show
from hspace.viz import Layout

IMG = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def run(tiny_run_dir):
    (tiny_run_dir / "labels.json").write_text(json.dumps({"2": "stroke <width>"}))
    return load_run(tiny_run_dir)


@pytest.fixture(scope="module")
def page(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("page")
    assert build_mos_page(run, out, directions=[0, 2], progress=False) == out / "mos.html"
    return out / "mos.html"


def test_page_is_one_self_contained_file(page, run):
    assert sorted(p.name for p in page.parent.iterdir()) == ["mos.html"]  # the temp file is gone
    text = page.read_text(encoding="utf-8")
    assert len(IMG.findall(text)) == 2 and text.count("data:image/png;base64,") == 2
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"<(?:link|script)[^>]*\s(?:src|href)=", text)  # no external scripts or styles
    for words in ("smooth", "consistent across the 8 examples", "easy to interpret"):
        assert words in text
    assert 'id="assessor"' in text and 'id="save"' in text and 'id="progress"' in text
    assert "new Blob(" in text and "a.download" in text and "localStorage" in text
    assert "Direction 0" in text and "Direction 2: stroke &lt;width&gt;" in text and "Direction 1" not in text
    meta = json.loads(re.search(r'id="mos-meta">(.*?)</script>', text, re.S)[1])
    fingerprint = json.loads((run.folder / "config.json").read_text())["model"]["fingerprint"]
    assert meta == {"run": run.folder.name, "run_fingerprint": fingerprint, "K": 4, "directions": [0, 2]}


def test_embedded_grid_is_8_rows_by_9_columns(page):
    img = Image.open(io.BytesIO(base64.b64decode(IMG.findall(page.read_text())[0])))
    assert img.size == Layout(rows=8, cols=9, cell_h=64, cell_w=64).size  # 16 px images enlarged 4x by default


def test_page_scale_and_direction_labels(run, tmp_path):
    out = build_mos_page(
        str(run.folder),
        tmp_path / "p",
        directions=["stroke <width>"],
        seeds=[3, 4],
        num_magnitudes=3,
        scale=1,
        progress=False,
    )
    (data,) = IMG.findall(out.read_text())
    assert Image.open(io.BytesIO(base64.b64decode(data))).size == Layout(2, 3, 16, 16).size
    with pytest.raises(ValueError, match="out of range"):
        build_mos_page(run, tmp_path / "q", directions=[7], progress=False)
    assert not (tmp_path / "q").exists()


def test_page_reuses_the_grids_show_rendered(run, tmp_path):
    fresh = build_mos_page(run, tmp_path / "fresh", directions=[1], progress=False).read_text()
    show(run.folder, directions="1", seeds="0-7", mags="9", progress=False)
    grid = run.folder / "show" / "direction-001.png"
    assert IMG.findall(fresh) == [_data_uri_payload(grid)]  # show draws what the page draws
    Image.new("RGB", Image.open(grid).size, "black").save(grid)  # a marker: only a reused grid is black
    (data,) = IMG.findall(build_mos_page(run, tmp_path / "reused", directions=[1], progress=False).read_text())
    assert Image.open(io.BytesIO(base64.b64decode(data))).getextrema() == ((0, 0),) * 3
    grid.write_bytes(b"")  # a damaged grid is drawn again, not reused
    assert IMG.findall(
        build_mos_page(run, tmp_path / "redrawn", directions=[1], progress=False).read_text()
    ) == IMG.findall(fresh)


def _data_uri_payload(png) -> str:
    buf = io.BytesIO()
    Image.open(png).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def test_cli_mos_out_must_be_a_folder(run, tmp_path, capsys):
    (tmp_path / "taken.html").write_text("")
    assert main(["mos", str(run.folder), "--out", str(tmp_path / "taken.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a file: give a folder" in err and len(err.splitlines()) == 1


# The page's script under node: a stub with just the DOM calls the script makes, two page loads sharing storage.
DRIVER = r"""
const vm = require("vm");
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const storage = {};
function element(attrs) {
  const listeners = {};
  return Object.assign({value: "", checked: false, textContent: "", focus() {},
    getAttribute(n) { return attrs[n]; },
    addEventListener(t, f) { (listeners[t] = listeners[t] || []).push(f); },
    fire(t) { (listeners[t] || []).forEach(f => f({target: this})); }}, attrs);
}
function load() {
  const ids = {"mos-meta": element({}), assessor: element({}), progress: element({}), save: element({})};
  ids["mos-meta"].textContent = input.meta;
  const radios = input.radios.map(r => element({"data-k": r.k, name: r.name, value: r.value}));
  const downloads = [];
  const ctx = {
    document: {
      getElementById: id => ids[id],
      querySelectorAll: sel => (sel === "input.mark" ? radios : []),
      createElement: () => ({click() { downloads.push({name: this.download, body: ctx.blobs[this.href]}); }}),
      body: {appendChild() {}, removeChild() {}},
    },
    localStorage: {getItem: k => (k in storage ? storage[k] : null), setItem: (k, v) => { storage[k] = String(v); }},
    Blob: function (parts) { this.text = parts.join(""); },
    URL: {createObjectURL: b => { const u = "blob:" + Object.keys(ctx.blobs).length; ctx.blobs[u] = b.text; return u; },
          revokeObjectURL() {}},
    blobs: {}, alerts: [], confirms: 0, setTimeout() {}, Date, JSON, Object, String, Number,
    alert: m => ctx.alerts.push(m), confirm: () => { ctx.confirms++; return true; },
  };
  ctx.window = ctx;
  vm.runInNewContext(input.script, ctx);
  return {ctx, ids, radios, downloads};
}
function pick(p, k, v) {  // as a browser does: checking one radio unchecks the others of its group
  p.radios.forEach(r => { r.checked = r["data-k"] === k ? r.value === v : r.checked; });
  p.radios.find(r => r["data-k"] === k && r.value === v).fire("change");
}

const a = load();
const out = {progress0: a.ids.progress.textContent};
out.noName = a.ctx.hspaceMos.save();
out.alerts = a.ctx.alerts.length;
a.ids.assessor.value = "Ada L."; a.ids.assessor.fire("input");
pick(a, "0", "1"); pick(a, "2", "skip");
out.progress1 = a.ids.progress.textContent;
const b = load();  // reload: name and choices come back from localStorage
out.restored = {name: b.ids.assessor.value,
                checked: b.radios.filter(r => r.checked).map(r => r["data-k"] + ":" + r.value)};
pick(b, "2", "0");
b.ctx.hspaceMos.save();
out.downloads = b.downloads; out.confirms = b.ctx.confirms;
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_page_script_marks_persists_and_saves(page, run, tmp_path):
    text = page.read_text(encoding="utf-8")
    found = re.findall(r'<input type="radio" class="mark" name="([^"]+)" data-k="(\d+)" value="(\w+)">', text)
    radios = [dict(name=n, k=k, value=v) for n, k, v in found]
    assert len(radios) == 6
    script = re.findall(r"<script>(.*?)</script>", text, re.S)[-1]
    meta = re.search(r'id="mos-meta">(.*?)</script>', text, re.S)[1]
    proc = subprocess.run(
        ["node", "-e", DRIVER],
        input=json.dumps(dict(meta=meta, radios=radios, script=script)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["progress0"] == "0 of 2 directions marked"
    assert out["noName"] is None and out["alerts"] == 1  # no download without a name
    assert out["progress1"] == "1 of 2 directions marked (1 skipped)"
    assert out["restored"] == {"name": "Ada L.", "checked": ["0:1", "2:skip"]}
    assert out["confirms"] == 0  # everything marked: no question asked
    (dl,) = out["downloads"]
    assert dl["name"] == f"mos-Ada_L-{run.folder.name}.json"
    saved = json.loads(dl["body"])
    fingerprint = json.loads((run.folder / "config.json").read_text())["model"]["fingerprint"]
    assert {k: v for k, v in saved.items() if k != "created"} == {
        "run": run.folder.name,
        "run_fingerprint": fingerprint,
        "assessor": "Ada L.",
        "K": 4,
        "marks": {"0": 1, "2": 0},
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", saved["created"])
    (tmp_path / dl["name"]).write_text(dl["body"])
    assert score_marks([tmp_path / dl["name"]])["per_direction"] == {0: {"mos": 1.0, "n": 1}, 2: {"mos": 0.0, "n": 1}}


def marks_file(path, assessor, marks, run="run", fingerprint="abc123", K=4):
    data = {
        "run": run,
        "run_fingerprint": fingerprint,
        "assessor": assessor,
        "K": K,
        "marks": {str(k): v for k, v in marks.items()},
        "created": now_iso(),
    }
    path.write_text(json.dumps(data, indent=2))
    return path


def test_score_two_assessors(tmp_path):
    a = marks_file(tmp_path / "mos-a-run.json", "a", {0: 1, 1: 1, 3: 0})
    b = marks_file(tmp_path / "mos-b-run.json", "b", {0: 1, 1: 0})
    res = score_marks([a, b])
    assert res["num_assessors"] == 2
    assert res["per_direction"] == {0: {"mos": 1.0, "n": 2}, 1: {"mos": 0.5, "n": 2}, 3: {"mos": 0.0, "n": 1}}
    assert res["unmarked"] == [2]
    assert res["mos"] == pytest.approx(0.5)
    table = format_scores(res)
    assert "0.50" in table and "unmarked" in table and "2" in table.splitlines()[-1]
    assert score_marks(str(a))["mos"] == pytest.approx(2 / 3)


def test_score_rejects_bad_files(tmp_path):
    good = marks_file(tmp_path / "good.json", "a", {0: 1})
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json.*not a JSON"):
        score_marks([good, tmp_path / "broken.json"])
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"list\.json.*JSON object"):
        score_marks([tmp_path / "list.json"])
    (tmp_path / "nomarks.json").write_text('{"run": "run"}')
    with pytest.raises(ValueError, match=r"nomarks\.json.*\"marks\""):
        score_marks([tmp_path / "nomarks.json"])
    bad = (("two.json", {0: 2}), ("half.json", {0: 0.5}), ("true.json", {0: True}), ("str.json", {0: "1"}))
    for name, marks in bad:
        with pytest.raises(ValueError, match=rf"{re.escape(name)}.*marks are 0 or 1"):
            score_marks([marks_file(tmp_path / name, "x", marks)])
    (tmp_path / "key.json").write_text(json.dumps({"K": 4, "marks": {"first": 1}}))
    with pytest.raises(ValueError, match=r"key\.json.*not a direction index"):
        score_marks([tmp_path / "key.json"])
    with pytest.raises(ValueError, match=r"range\.json.*out of range"):
        score_marks([marks_file(tmp_path / "range.json", "x", {4: 1})])
    with pytest.raises(ValueError, match=r"other\.json.*another run"):
        score_marks([good, marks_file(tmp_path / "other.json", "b", {0: 1}, fingerprint="fff000")])
    with pytest.raises(ValueError, match=r"renamed\.json.*another run"):
        score_marks([good, marks_file(tmp_path / "renamed.json", "b", {0: 1}, run="run2")])
    with pytest.raises(ValueError, match=r"again\.json.*good\.json.*assessor 'A'"):
        score_marks([good, marks_file(tmp_path / "again.json", "A", {0: 0})])
    with pytest.raises(ValueError, match="no marks"):
        score_marks([marks_file(tmp_path / "empty.json", "x", {})])
    with pytest.raises(ValueError, match="no marks files"):
        score_marks([])
