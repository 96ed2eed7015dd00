"""Every user error is one line naming the fix, exit 2, checked before any computing, leaving nothing behind."""

import json

import pytest
import torch

from conftest import TINY_RUN, exit_code
from hspace import cli
from hspace.discover import discover


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"hspace {command}: error: ") or err.startswith(f"hspace {command}: "), err
    return err


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A tiny run stopped after one step, to resume."""
    return discover(
        "tiny",
        TINY_RUN.replace(train_steps=1),
        tmp_path_factory.mktemp("stopped") / "run",
        grid_every=0,
        progress=False,
    )


def test_corrupt_discover_checkpoint(stopped_run, tmp_path, capsys):
    import shutil

    run = shutil.copytree(stopped_run, tmp_path / "run")
    (run / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:1000])  # cut short, as by a full disk
    assert exit_code(["discover", "--out", str(run), "--resume", "--device", "cpu"]) == 2
    err = one_line_error(capsys, "discover")
    assert "checkpoint.pt is unreadable" in err and "weights_only" not in err


def test_corrupt_train_dm_checkpoint(tmp_path, capsys):
    (tmp_path / "dm").mkdir()
    (tmp_path / "dm" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    argv = ["train-dm", "--preset", "tiny", "--out", str(tmp_path / "dm"), "--resume", "--device", "cpu"]
    assert exit_code(argv) == 2
    assert "checkpoint.pt is unreadable" in one_line_error(capsys, "train-dm")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", [["show", "default"], ["discover", "--preset", "tiny"], ["train-dm", "--out", "x"]])
def test_cuda_without_cuda(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert exit_code([*command, "--device", "cuda"]) == 2
    assert "CUDA is not available on this machine; use --device cpu" in one_line_error(capsys, command[0])
    assert not any(tmp_path.iterdir())


def test_unknown_device(capsys):
    assert exit_code(["show", "default", "--device", "tpu"]) == 2
    assert "--device tpu: give cpu, cuda, cuda:N or auto" in one_line_error(capsys, "show")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--features", "nosuch:x"], "cannot import 'nosuch'"),
        (["--features", "torch.nn:Nosuch"], "'torch.nn' has no 'Nosuch'"),
        (["--features", ":x"], "write MODULE:ATTR"),
        (["--num-pairs", "-1"], "--num-pairs -1: give at least one pair"),
        (["--recalibrate-pairs", "-5"], "--recalibrate-pairs -5"),
    ],
)
def test_evaluate_arguments(tiny_run_dir, tmp_path, capsys, extra, message):
    argv = ["evaluate", str(tiny_run_dir), "--out", str(tmp_path / "eval"), "--device", "cpu", *extra]
    assert exit_code(argv) == 2
    assert message in one_line_error(capsys, "evaluate")
    assert not (tmp_path / "eval").exists()


def test_evaluate_json_takes_a_path_not_the_run():
    args = cli.build_parser().parse_args(["evaluate", "--json", "figures.json", "default"])
    assert (args.run, args.json) == ("default", "figures.json")


@pytest.mark.parametrize(
    "flags, message",
    [
        ("{not json", "argument --model-flags: not valid JSON"),
        ("[1, 2]", "argument --model-flags: expected a JSON object"),
    ],
)
def test_model_flags_errors_name_the_flag(flags, message, tmp_path, capsys):
    argv = ["discover", "--preset", "tiny", "--out", str(tmp_path / "r"), "--model-flags", flags]
    assert exit_code(argv) == 2
    assert message in one_line_error(capsys, "discover")


def test_model_flags_refused_for_a_preset_model(tmp_path, capsys):
    argv = [
        "discover",
        "--preset",
        "tiny",
        "--out",
        str(tmp_path / "r"),
        "--model-flags",
        '{"image_size": 64}',
        "--device",
        "cpu",
    ]
    assert exit_code(argv) == 2
    assert "--model-flags is for a guided-diffusion .pt checkpoint; tiny carries its own: drop it" in one_line_error(
        capsys, "discover"
    )
    assert not (tmp_path / "r").exists()


def test_edit_steps_named_as_typed(tiny_run_dir, tmp_path, capsys):
    argv = [
        "edit",
        str(tiny_run_dir),
        "--image",
        "mnist:0",
        "--inversion-steps",
        "0",
        "--out",
        str(tmp_path / "e"),
        "--device",
        "cpu",
    ]
    assert exit_code(argv) == 2
    err = one_line_error(capsys, "edit")
    assert "--steps 0" not in err and "M=0" not in err and "--inversion-steps 0" in err
    assert not (tmp_path / "e").exists()


def test_bad_image_is_not_told_to_delete_itself(tiny_run_dir, tmp_path, capsys):
    (tmp_path / "photo.png").write_bytes(b"\x89PNG not really")
    argv = [
        "edit",
        str(tiny_run_dir),
        "--image",
        str(tmp_path / "photo.png"),
        "--out",
        str(tmp_path / "e"),
        "--device",
        "cpu",
    ]
    assert exit_code(argv) == 2
    err = one_line_error(capsys, "edit")
    assert "cannot read image" in err and "remove" not in err and "give a PNG, JPEG" in err
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["discover", "--preset", "tiny", "--resume", "--device", "cpu", "--out"],
        ["train-dm", "--preset", "tiny", "--resume", "--device", "cpu", "--out"],
    ],
)
def test_resume_without_checkpoint_leaves_no_folder(argv, tmp_path, capsys):
    assert exit_code([*argv, str(tmp_path / "new")]) == 2
    assert "no checkpoint.pt" in one_line_error(capsys, argv[0])
    assert not (tmp_path / "new").exists()


def test_resume_refuses_another_model(stopped_run, tmp_path, capsys):
    import shutil

    from hspace.backends import build_adm, save_model
    from hspace.presets import DM_PRESETS

    run = shutil.copytree(stopped_run, tmp_path / "run")
    other = save_model(build_adm(DM_PRESETS["tiny"], seed=7, fill_zero_init=True), tmp_path / "other.safetensors")
    assert exit_code(["discover", "--out", str(run), "--resume", "--model", str(other), "--device", "cpu"]) == 2
    err = one_line_error(capsys, "discover")
    fingerprint = json.loads((run / "config.json").read_text())["model"]["fingerprint"]
    assert "--resume with another model" in err and fingerprint in err


def test_resume_refuses_other_settings(stopped_run, tmp_path, capsys):
    import shutil

    run = shutil.copytree(stopped_run, tmp_path / "run")
    assert exit_code(["discover", "--out", str(run), "--resume", "--S", "3", "--device", "cpu"]) == 2
    assert "--resume with other settings (S: run has 2, now 3.0)" in one_line_error(capsys, "discover")


def test_train_dm_resume_refuses_other_settings(tmp_path, capsys):
    argv = ["train-dm", "--preset", "tiny", "--out", str(tmp_path / "dm"), "--train-steps", "1", "--batch-size", "2"]
    assert exit_code([*argv, "--sample-every", "0", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert exit_code([*argv, "--lr", "0.1", "--resume", "--device", "cpu"]) == 2
    assert "--resume with other settings (lr: checkpoint has 0.0005, now 0.1)" in one_line_error(capsys, "train-dm")
    # The batch size may change (a run goes on with bigger batches elsewhere); the checkpoint then records the new one.
    assert exit_code([*argv[:-1], "3", "--train-steps", "2", "--resume", "--device", "cpu"]) == 0
    state = torch.load(tmp_path / "dm" / "checkpoint.pt", weights_only=True)
    assert (state["step"], json.loads(state["config"])["batch_size"]) == (2, 3)


@pytest.mark.parametrize("command, resumable", [("show", False), ("discover", True)])
def test_interrupt_advises_resume_only_where_there_is_one(command, resumable, monkeypatch, capsys):
    def interrupted(_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, f"cmd_{command}", interrupted)
    assert exit_code([command, "default"] if command == "show" else [command]) == 130
    err = one_line_error(capsys, command)
    assert ("--resume" in err) == resumable


def test_version(capsys):
    assert exit_code(["--version"]) == 0
    from hspace import __version__

    assert capsys.readouterr().out.strip() == f"hspace {__version__}"


def test_parser_imports_no_torch():
    import subprocess
    import sys

    code = "import sys; from hspace.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )


@pytest.mark.parametrize("name", ["1e309", "nan", "-2.5", " ", "a:b"])
def test_label_names_are_words(tiny_run_dir, name, capsys):
    assert exit_code(["label", str(tiny_run_dir), "1", name]) == 2
    assert "use a word such as 'thickness'" in one_line_error(capsys, "label")


def test_evaluate_out_is_a_folder(tiny_run_dir, tmp_path, capsys):
    (tmp_path / "taken").write_text("")
    assert (
        exit_code(
            ["evaluate", str(tiny_run_dir), "--num-pairs", "2", "--out", str(tmp_path / "taken"), "--device", "cpu"]
        )
        == 2
    )
    assert "--out" in one_line_error(capsys, "evaluate") and (tmp_path / "taken").read_text() == ""


def test_missing_global_directions(tiny_run_dir, tmp_path, capsys):
    argv = ["edit", str(tiny_run_dir), "--image", "mnist:0", "--global-directions", str(tmp_path / "none.safetensors")]
    assert exit_code([*argv, "--out", str(tmp_path / "e"), "--device", "cpu"]) == 2
    assert "no such file; write one with `hspace export RUN`" in one_line_error(capsys, "edit")


def test_plots_need_the_extra(tiny_run_dir, monkeypatch, capsys):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else find_spec(name, *a)
    )
    assert exit_code(["evaluate", str(tiny_run_dir), "--device", "cpu"]) == 2
    assert "pip install 'hspace[plots]'" in one_line_error(capsys, "evaluate")
