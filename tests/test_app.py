"""``hspace app``'s logic without a browser or Gradio: page state -> edits -> images -> the code that reproduces them."""

import importlib.util
import json
import shlex
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import hspace
from conftest import exit_code
from hspace import app_state
from hspace.app_state import Editor, PageError, PageState, Source, check_upload, enlarge, read_ranking
from hspace.data import load_images
from hspace.run import load_run, write_label


@pytest.fixture(scope="module")
def run(tiny_run_dir):
    return load_run(tiny_run_dir)


@pytest.fixture
def editor(run, tmp_path):
    return Editor(run, tmp_path)


def state(editor, source=None, sliders=None, steps=3, t_stop=None, last_moved=None) -> PageState:
    values = tuple(sliders or [0.0] * editor.K)
    t_stop = editor.run.config.t_stop if t_stop is None else t_stop
    return PageState(source or Source(), steps, t_stop, values, last_moved)


def exec_python_call(text: str) -> torch.Tensor:
    namespace: dict = {}
    exec(text, namespace)  # noqa: S102 -- the page's Python call, run as a user would paste it
    return namespace["edited"]


def png_file(path, array: np.ndarray, mode: str | None = None):
    Image.fromarray(array, mode).save(path)
    return path


# ---------------------------------------------------------------- state -> edits


def test_edits_are_the_nonzero_sliders_in_increasing_k(editor):
    assert editor.edits([0.0, -1.5, 0.0, 2.0]) == [(1, -1.5), (3, 2.0)]
    assert editor.edits([0.0] * 4) == []


@pytest.mark.parametrize("sliders", [[0.0, 2.5, 0, 0], [0.0, float("nan"), 0, 0], [0.0, 0.0]])
def test_edits_outside_the_run_are_refused(editor, sliders):
    with pytest.raises(PageError):
        editor.edits(sliders)


@pytest.mark.slow  # evaluate takes about 10 s on 2 cores; the table's parsing is tested fast below
def test_sliders_are_labelled_and_ordered_by_the_evaluate_ranking(tiny_run_dir, tmp_path):
    write_label(tiny_run_dir, 2, "thickness", 4)
    assert main_ok(["evaluate", str(tiny_run_dir), "--num-pairs", "4", "--recalibrate-pairs", "0", "--device", "cpu",
                    "--json", str(tmp_path / "eval.json")])  # fmt: skip
    editor = Editor(load_run(tiny_run_dir), tmp_path)
    assert editor.ranked and editor.order == json.loads((tmp_path / "eval.json").read_text())["ranking"]
    assert editor.slider_label(2) == "direction 2: thickness" and editor.slider_label(0) == "direction 0"


def main_ok(argv) -> bool:
    return exit_code(argv) == 0


def test_ranking_read_from_the_report_table(tmp_path):
    (tmp_path / "eval").mkdir()
    table = "| rank | k | score |\n|---|---|---|\n| 1 | 2 | 0.9 |\n| 2 | 0 | 0.5 |\n"
    (tmp_path / "eval" / "report.md").write_text(
        "# Evaluation\n\n| measure | value |\n|---|---|\n| RCA | 0.5 |\n\n" + table
    )
    assert read_ranking(tmp_path, 4) == [2, 0, 1, 3]


def test_labels_name_the_sliders(tiny_run_dir, tmp_path):
    write_label(tiny_run_dir, 2, "thickness", 4)
    editor = Editor(load_run(tiny_run_dir), tmp_path)
    assert editor.slider_label(2) == "direction 2: thickness" and editor.slider_label(0) == "direction 0"


def test_ranking_from_results_json_wins_and_is_completed(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "results.json").write_text(json.dumps({"ranking": [3, 1, 9]}))
    assert read_ranking(tmp_path, 4) == [3, 1, 0, 2]
    assert read_ranking(tmp_path / "nowhere", 4) is None


# ---------------------------------------------------------------- edits -> images, exactly as hspace.sample


def test_edited_seed_image_is_hspace_sample_and_the_python_call(editor, run):
    view = editor.update(state(editor, Source("seed", seed=5), [0.0, 1.5, 0.0, -2.0]))
    assert view.edits == [(1, 1.5), (3, -2.0)]
    x_T = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(5))
    ts = hspace.uniform_timesteps(3, run.model.num_train_steps)
    expected = hspace.sample(
        run.model, x_T, ts, directions=run.shift_block, edits=[(1, 1.5), (3, -2.0)], t_stop=run.config.t_stop
    )
    assert np.array_equal(view.edited, enlarge(expected))
    assert torch.equal(exec_python_call(view.python), expected)
    plain = hspace.sample(run.model, x_T, ts)
    assert np.array_equal(view.original, enlarge(plain)) and not np.array_equal(view.original, view.edited)
    assert np.array_equal(np.asarray(Image.open(view.download)), enlarge(expected, min_px=1))  # the PNG, unscaled
    assert shlex.split(view.command)[3:5] == ["--image", "seed:5"]


def run_shown_command(view, monkeypatch, out):
    """Run the page's `hspace edit` command as shown; the EditResult it computed."""
    import hspace.edit

    seen = {}
    edit_noise = hspace.edit.edit_noise  # every edit, inverted or generated, ends in edit_noise

    def recording(*args, **kwargs):
        seen["result"] = result = edit_noise(*args, **kwargs)
        return result

    monkeypatch.setattr(hspace.edit, "edit_noise", recording)
    assert exit_code([*shlex.split(view.command)[1:], "--out", str(out), "--device", "cpu"]) == 0
    return seen["result"]


def test_digit_edit_matches_the_hspace_edit_command(editor, run, monkeypatch, tmp_path):
    """The shown command, run as it is, computes the very image the page shows."""
    view = editor.update(state(editor, Source("digit", digit=7), [0.0, 0.0, 1.25, 0.5], steps=4))
    assert "Inversion reconstruction error: MAE" in view.message
    assert shlex.split(view.command)[1:5] == ["edit", str(run.folder), "--image", "mnist:7"]
    result = run_shown_command(view, monkeypatch, tmp_path / "edit")
    assert np.array_equal(view.edited, enlarge(result.edited))
    assert np.array_equal(view.original, enlarge(result.reconstruction))
    assert torch.equal(exec_python_call(view.python), result.edited)


def test_seed_edit_with_other_t_stop_matches_the_hspace_edit_command(editor, monkeypatch, tmp_path):
    view = editor.update(state(editor, Source("seed", seed=9), [0.75, 0.0, 0.0, -1.0], t_stop=200))
    result = run_shown_command(view, monkeypatch, tmp_path / "edit")
    assert np.array_equal(view.edited, enlarge(result.edited))
    assert np.array_equal(view.original, enlarge(result.reconstruction))


def test_inversion_and_unedited_chain_are_computed_once_per_source(editor, monkeypatch):
    calls = {"invert": 0, "sample": 0}

    def counting(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(app_state, "invert", counting("invert", app_state.invert))
    monkeypatch.setattr(app_state, "sample", counting("sample", app_state.sample))
    source = Source("digit", digit=3)
    for s in (0.5, 1.0, 0.5, 0.0):  # the third is the first again, the fourth the unedited image
        editor.update(state(editor, source, [s, 0.0, 0.0, 0.0]))
    assert calls == {"invert": 1, "sample": 3}  # reconstruction, s = 0.5, s = 1.0


def test_sweep_strip_is_the_last_moved_direction_from_minus_to_plus_S(editor, run):
    view = editor.update(state(editor, Source("seed", seed=1), [0.0, 0.0, 1.0, 0.0], last_moved=2), with_sweep=True)
    x_T = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    row = run.sweep(
        2, x_T, hspace.sampling.magnitudes(run.config.S, app_state.SWEEP_COLUMNS), timesteps=hspace.uniform_timesteps(3)
    )
    assert np.array_equal(view.sweep, app_state.strip(row[0]))


def test_other_t_stop_and_steps_reach_the_chain_and_the_code(editor):
    view = editor.update(state(editor, Source("digit", digit=0), [1.0, 0.0, 0.0, 0.0], steps=2, t_stop=100))
    assert "--t-stop 100" in view.command and "--inversion-steps 2" in view.command
    assert "t_stop=100" in view.python and "uniform_timesteps(2," in view.python
    assert np.array_equal(view.edited, enlarge(exec_python_call(view.python)))


# ---------------------------------------------------------------- bad input: a message, never an exception


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"steps": 0}, "steps 0"),
        ({"t_stop": 1000}, "t_stop 1000"),
        ({"source": Source("digit", digit=10**6)}, "held-out digits run"),
        ({"source": Source("upload")}, "upload an image first"),
        ({"last_moved": 9}, "out of range"),
    ],
)
def test_bad_settings_give_a_message(editor, changes, words):
    view = editor.update(state(editor, **changes))
    assert view.edited is None and words in view.message and view.message.startswith("**Cannot edit:**")


@pytest.mark.parametrize(
    "values",
    [
        ("generated (seed)", float("nan"), 0, None, 3, 400, 0, 0, 0, 0),  # NaN seed
        ("generated (seed)", 1e30, 0, None, 3, 400, 0, 0, 0, 0),  # past the generator's seeds
        ("generated (seed)", 0, 0, None, 3, 400, 0, "x", 0, 0),  # a slider that is not a number
        ("shipped digit", 0, -1, None, 3, 400, 0, 0, 0, 0),
        ("your image", 0, 0, "/etc/passwd", 3, 400, 0, 0, 0, 0),  # a path from outside the app's folder
    ],
)
def test_values_no_widget_sends_give_a_message(editor, values):
    from hspace.app import page_view

    view = page_view(editor, values, None)
    assert view.edited is None and view.message.startswith("**Cannot edit:**")


def test_slider_float_noise_stays_out_of_the_command(editor):
    from hspace.app import page_view

    view = page_view(editor, ("shipped digit", 0, 2, None, 2, 400, 0.1 + 0.2, 0, 0, 0), None)
    assert view.edits == [(0, 0.3)] and "--edit 0:0.3" in view.command


def test_uploaded_image_is_inverted_as_hspace_edit_loads_it(editor, tmp_path):
    digit = ((load_images("mnist:4", 28, 1)[0, 0] + 1) * 127.5).round().byte().numpy()
    path = png_file(tmp_path / "four.png", digit)
    view = editor.update(state(editor, Source("upload", path=str(path), name="four.png"), [0.0, 0.0, 0.0, 1.0]))
    assert view.edited is not None and "your image four.png" in view.message and "PSNR" in view.message
    assert "--image four.png" in view.command
    rgb = png_file(
        tmp_path / "four-rgb.png", np.stack([digit] * 3, axis=-1)
    )  # colour: made grey, as `hspace edit` does
    assert editor.update(state(editor, Source("upload", path=str(rgb), name="four-rgb.png"))).edited is not None


def test_bad_uploads_are_named_and_refused(editor, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 8)).save(cmyk)
    big = png_file(tmp_path / "big.png", np.zeros((64, 64), np.uint8))
    with pytest.raises(PageError, match="not an image"):
        check_upload(tmp_path / "notes.txt", tmp_path)
    with pytest.raises(PageError, match="4 channels"):
        check_upload(cmyk, tmp_path)
    with pytest.raises(PageError, match="at most"):
        check_upload(big, tmp_path, max_bytes=10)
    with pytest.raises(PageError, match="not an upload of this page"):
        check_upload(big, tmp_path / "uploads")  # nothing outside the app's temporary folder is read
    view = editor.update(state(editor, Source("upload", path=str(tmp_path / "notes.txt"), name="notes.txt")))
    assert view.edited is None and "notes.txt is not an image" in view.message


def test_too_many_pixels_are_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(app_state, "MAX_UPLOAD_PIXELS", 100)
    path = png_file(tmp_path / "wide.png", np.zeros((10, 11), np.uint8))
    with pytest.raises(PageError, match="10 px"):
        check_upload(path, tmp_path)


# ---------------------------------------------------------------- the command line


def test_app_without_gradio_names_the_extra(monkeypatch, capsys, tiny_run_dir):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    assert exit_code(["app", str(tiny_run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'hspace[app]'" in err


@pytest.mark.parametrize(
    ("argv", "words"),
    [(["app", "nowhere"], "not a discovery run"), (["app", "default", "--port", "70000"], "--port 70000")],
)
def test_app_arguments_are_checked_before_loading(argv, words, capsys):
    if importlib.util.find_spec("gradio") is None:
        pytest.skip("without Gradio the missing extra is the error (tested above)")
    assert exit_code(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err


def test_app_help_is_import_light():
    from hspace.cli import build_parser

    args = build_parser().parse_args(["app", "default", "--port", "7999"])
    assert (args.run, args.host, args.port) == ("default", "127.0.0.1", 7999)
