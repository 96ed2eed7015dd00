"""``hspace show``: grids, overview, GIFs and the page, on a tiny run trained for two steps."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hspace import presets, sample
from hspace.cli import main
from hspace.run import check_directions, format_indices, load_run, parse_indices
from hspace.sampling import seed_noise
from hspace.show import parse_magnitudes, show, sweep
from hspace.viz import HEADER, LABEL, MARK, PAD, Layout, to_uint8

SCALE = 4  # the default for 16 px images: cells of 64 px


@pytest.fixture(scope="module")
def run_dir(tiny_run_dir):
    return tiny_run_dir


@pytest.fixture(scope="module")
def run(run_dir):
    return load_run(run_dir)


def cell(img: Image.Image, lay: Layout, r: int, c: int) -> np.ndarray:
    """Cell (r, c) of a sheet, shrunk back to the image's own pixels, one grey channel."""
    return np.asarray(img.convert("RGB").crop(lay.box(r, c)))[::SCALE, ::SCALE, 0].astype(int)


def plain_samples(run, seeds) -> np.ndarray:
    x_T = seed_noise(seeds, run.model.in_channels, run.model.image_size)
    return to_uint8(sample(run.model, x_T, run.timesteps))[..., 0].astype(int)


def test_sweep_zero_column_is_the_plain_sample(run):
    x = sweep(run, 1, [0, 5], [-2.0, 0.0, 2.0])
    assert x.shape == (2, 3, 1, 16, 16)
    x_T = seed_noise([0, 5], 1, 16)
    torch.testing.assert_close(x[:, 1], sample(run.model, x_T, run.timesteps), atol=1e-4, rtol=0)
    assert not torch.equal(x[:, 0], x[:, 1]) and not torch.equal(x[:, 0], x[:, 2])  # the shift does something


def test_show_writes_grids_overview_and_page(run_dir, run, tmp_path):
    (run_dir / "labels.json").write_text(json.dumps({"2": "stroke <width>"}))
    try:
        out = show(run_dir, tmp_path / "out", directions="0,2", seeds="0-1", mags="3", progress=False)
    finally:
        (run_dir / "labels.json").unlink()
    assert out == tmp_path / "out"
    names = ["direction-000.png", "direction-002.png", "index.html", "overview.png", "sweeps.json"]
    assert sorted(p.name for p in out.iterdir()) == names

    lay = Layout(rows=2, cols=3, cell_h=64, cell_w=64)
    assert lay.size == (PAD + 3 * (64 + PAD), HEADER + PAD + 2 * (64 + PAD))
    grid = Image.open(out / "direction-002.png")
    assert grid.size == lay.size and grid.mode == "RGB"
    # The middle column (s = 0) is the unshifted sample of the same seeds, and is framed.
    expected = plain_samples(run, [0, 1])
    for r in range(2):
        assert np.abs(cell(grid, lay, r, 1) - expected[r]).max() <= 1
    x0, y0 = lay.box(0, 1)[:2]
    assert grid.getpixel((x0 - 3, y0)) == MARK and grid.getpixel((lay.box(0, 0)[0] - 3, y0)) == (255, 255, 255)

    over = Image.open(out / "overview.png")
    over_lay = Layout(rows=2, cols=3, cell_h=64, cell_w=64, label=True)
    assert over.size == over_lay.size and over_lay.box(0, 0)[0] == LABEL + PAD
    assert np.array_equal(cell(over, over_lay, 1, 0), cell(grid, lay, 0, 0))  # row 2 of the overview: k=2, seed 0
    assert np.any(np.asarray(over.crop((0, HEADER, LABEL, over.height))) < 128)  # the direction indices are drawn

    page = (out / "index.html").read_text()
    for name in ("overview.png", "direction-000.png", "direction-002.png"):
        assert f'src="{name}"' in page
    assert "direction 2: stroke &lt;width&gt;" in page and "direction 1" not in page
    for row in (
        "<th>K</th><td>4</td>",
        "<th>S</th><td>2</td>",
        "<th>M</th><td>3</td>",
        "<th>t_stop</th><td>400</td>",
        "<th>step</th><td>3</td>",
    ):
        assert row in page
    assert "<th>model</th><td>tiny</td>" in page and "--directions 0,2 --seeds 0-1 --magnitudes=3" in page
    assert "://" not in page  # self-contained


def test_seeds_do_not_depend_on_the_batch(run_dir, tmp_path):
    a = Image.open(show(run_dir, tmp_path / "a", "3", seeds="0-3", mags="3", progress=False) / "direction-003.png")
    b = Image.open(show(run_dir, tmp_path / "b", "3", seeds="2-3", mags="3", progress=False) / "direction-003.png")
    la, lb = Layout(4, 3, 64, 64), Layout(2, 3, 64, 64)
    for ra, rb in ((2, 0), (3, 1)):
        for c in range(3):
            assert np.abs(cell(a, la, ra, c) - cell(b, lb, rb, c)).max() <= 1


def test_gif_sweeps_there_and_back(run_dir, tmp_path):
    out = show(run_dir, tmp_path, directions=[1], seeds=[0, 1], mags=[-2, -1, 0, 1, 2], gif=True, progress=False)
    gif = Image.open(out / "direction-001.gif")
    assert gif.n_frames == 2 * 5 - 2 and gif.info["loop"] == 0
    assert gif.size == Layout(2, 1, 64, 64).size  # each frame is one column: the seeds at one magnitude
    assert 'src="direction-001.gif"' in (out / "index.html").read_text()


def test_default_output_folders(run_dir, tmp_path, monkeypatch):
    assert show(run_dir, directions="0", seeds="0", mags="1", progress=False) == run_dir / "show"
    assert (run_dir / "show" / "index.html").exists()
    monkeypatch.setitem(presets.SHIPPED_RUNS, "default", run_dir)
    monkeypatch.chdir(tmp_path)
    out = show("default", directions="0", seeds="0", mags="1", progress=False)
    assert out == Path("show-default") and (tmp_path / "show-default" / "overview.png").exists()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0-7", list(range(8))),
        ("0,3,5", [0, 3, 5]),
        ("0-3,8", [0, 1, 2, 3, 8]),
        (" 1 , 4-5,", [1, 4, 5]),
        ("3,3,1", [3, 1]),
    ],
)
def test_parse_indices(text, expected):
    assert parse_indices(text) == expected
    assert parse_indices(format_indices(expected)) == expected


def test_parse_magnitudes():
    assert parse_magnitudes("9", 5.0) == [-5.0, -3.75, -2.5, -1.25, 0.0, 1.25, 2.5, 3.75, 5.0]
    assert parse_magnitudes("3", 0.3)[1] == 0.0  # the middle column is exactly unshifted
    assert parse_magnitudes("-5,-2.5,0,2.5,5", 2.0) == [-5.0, -2.5, 0.0, 2.5, 5.0]
    assert parse_magnitudes("1.5", 2.0) == [1.5] and parse_magnitudes("1", 2.0) == [0.0]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: parse_indices("a-b"), r"bad direction list 'a-b': write indices like 0-7"),
        (lambda: parse_indices("-1"), r"bad direction list '-1'"),
        (lambda: parse_indices("5-2"), r"bad direction range '5-2' in '5-2': write the smaller index first"),
        (lambda: parse_indices(" , ", "seed"), r"no seeds in ' , '"),
        (lambda: parse_magnitudes("0", 2.0), r"--magnitudes 0: need at least one column"),
        (lambda: parse_magnitudes("1,x", 2.0), r"bad magnitudes '1,x'"),
        (lambda: parse_magnitudes("nan", 2.0), r"bad magnitudes 'nan'"),
        (lambda: check_directions([0, 40], 32), r"direction 40 out of range: this run has K=32 directions \(0\.\.31\)"),
    ],
)
def test_bad_input_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_out_of_range_direction_names_the_runs_range(run_dir, tmp_path):
    with pytest.raises(ValueError, match=r"direction 4 out of range: this run has K=4 directions \(0\.\.3\)"):
        show(run_dir, tmp_path, directions="2-4", progress=False)
    with pytest.raises(ValueError, match="no seeds"):
        show(run_dir, tmp_path, seeds=[], progress=False)
    assert not any(tmp_path.iterdir())  # nothing written


def test_cli_show(run_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["show", str(run_dir), "--out", str(out), "--directions", "0-1", "--seeds", "0-1", "--magnitudes", "3"]
    assert main(argv) == 0
    assert str(out / "index.html") in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {
        "direction-000.png",
        "direction-001.png",
        "overview.png",
        "index.html",
        "sweeps.json",
    }
    assert Image.open(out / "direction-001.png").size == Layout(2, 3, 64, 64).size
    # Values starting with a minus sign go after '=', as the page's command writes them.
    assert main(["show", str(run_dir), "--out", str(out), "--directions=0", "--seeds=0", "--magnitudes=-1,0,.5"]) == 0
    assert "--magnitudes=-1,0,.5" in (out / "index.html").read_text()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--directions", "0-9"], "direction 4 out of range: this run has K=4 directions (0..3)"),
        (["--seeds", "0-x"], "bad seed list '0-x'"),
        (["--seeds", ","], "no seeds"),
        (["--magnitudes", "1,two"], "bad magnitudes '1,two'"),
    ],
)
def test_cli_show_errors_are_one_line(run_dir, tmp_path, capsys, extra, message):
    assert main(["show", str(run_dir), "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hspace show: error: ") and message in err and len(err.splitlines()) == 1


def test_bad_labels_file(run_dir, tmp_path):
    (run_dir / "labels.json").write_text('["thick"]')
    try:
        with pytest.raises(ValueError, match="labels.json should map direction indices to names"):
            show(run_dir, tmp_path, directions="0", seeds="0", mags="1", progress=False)
    finally:
        (run_dir / "labels.json").unlink()


def test_cli_show_not_a_run(tmp_path, capsys):
    assert main(["show", str(tmp_path)]) == 2
    assert "is not a discovery run" in capsys.readouterr().err


def _reproduce_commands(page: str) -> dict[str, list[str]]:
    import html
    import re
    import shlex

    found = re.findall(r"<p>([^<]*):</p><pre>(.*?)</pre>", page, re.S)
    return {html.unescape(name): shlex.split(html.unescape(cmd)) for name, cmd in found}


@pytest.mark.parametrize("overrides", [{}, {"shift_lr": None, "lambda1": 0.1, "balanced_k": False, "seed": -3}])
def test_reproduce_command_parses_to_the_runs_settings(run, tmp_path, overrides):
    from hspace.cli import build_parser, discover_argv, discover_settings

    cfg = run.config.replace(**overrides)
    argv = discover_argv("tiny", cfg, str(tmp_path / "again"))
    assert argv[:2] == ["hspace", "discover"] and "None" not in " ".join(argv)
    model, parsed_cfg, out = discover_settings(build_parser().parse_args(argv[1:]))
    assert (model, parsed_cfg, out) == ("tiny", cfg, tmp_path / "again")
    if not overrides:  # the tiny preset with three changes: only those are written
        assert argv[2:] == [
            "--preset",
            "tiny",
            "--out",
            str(tmp_path / "again"),
            "--M=3",
            "--batch-size=4",
            "--train-steps=3",
        ]


def test_page_commands_run_for_a_shipped_run(run_dir, tmp_path, monkeypatch):
    from hspace.cli import build_parser, discover_settings

    monkeypatch.setitem(presets.SHIPPED_RUNS, "default", run_dir)
    monkeypatch.chdir(tmp_path)
    out = show("default", directions="0", seeds="0", mags="1", progress=False)
    commands = _reproduce_commands((out / "index.html").read_text())
    model, cfg, folder = discover_settings(build_parser().parse_args(commands["the run itself"][1:]))
    assert (model, cfg, folder) == ("tiny", load_run(run_dir).config, Path("runs/default"))  # not into the package
    assert build_parser().parse_args(commands["these pictures"][1:]).run == "default"
