import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import exit_code
from hspace.monitor import HeldOutPairs
from hspace.nets import build_reconstructor
from hspace.polish import POLISH_LOG, PolishConfig, polish
from hspace.run import load_run

QUICK = PolishConfig(steps=3, batch_size=4, rca_every=2, rca_pairs=8)


def held_out_rca(folder, num_pairs):
    run = load_run(folder)
    reconstructor = run.load_part("reconstructor", build_reconstructor(run.config.reconstructor, 1, run.config.K))
    pairs = HeldOutPairs(run.model, run.config, run.timesteps, num_pairs)
    return pairs.evaluate(run.shift_block, reconstructor)["rca_heldout"]


def test_polish_trains_the_reconstructor_only_and_keeps_the_rest(tiny_run_dir, tmp_path):
    out = tmp_path / "polished"
    figures = polish(tiny_run_dir, out, QUICK, progress=False)
    # The directions, discriminator, training log and labels are the source's, byte for byte.
    for name in ("shift_block.safetensors", "discriminator.safetensors", "log.csv"):
        assert (out / name).read_bytes() == (tiny_run_dir / name).read_bytes(), name
    before = load_file(tiny_run_dir / "reconstructor.safetensors")
    after = load_file(out / "reconstructor.safetensors")
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[n], after[n]) for n in before)
    # The held-out figures are those of a fresh evaluation on the same pairs, before and after.
    assert figures["rca_heldout_before"] == held_out_rca(tiny_run_dir, QUICK.rca_pairs)
    assert figures["rca_heldout_after"] == held_out_rca(out, QUICK.rca_pairs)
    meta = json.loads((out / "config.json").read_text())
    assert meta["polished"]["steps"] == 3 and meta["polished"]["from"] == str(tiny_run_dir)
    assert meta["config"] == json.loads((tiny_run_dir / "config.json").read_text())["config"]
    rows = (out / POLISH_LOG).read_text().splitlines()
    assert rows[0].startswith("step,loss_r,acc,rca_heldout") and len(rows) == 1 + QUICK.steps
    assert load_run(out).step == load_run(tiny_run_dir).step  # the polished run opens like any other


def test_polish_of_a_shipped_run_names_it_not_its_path(tiny_run_dir, tmp_path, monkeypatch):
    from hspace import presets

    monkeypatch.setitem(presets.SHIPPED_RUNS, "default", tiny_run_dir)
    out = tmp_path / "polished"
    polish("default", out, QUICK, progress=False)
    assert json.loads((out / "config.json").read_text())["polished"]["from"] == "default"


def test_polish_refuses_to_write_over_a_run(tiny_run_dir, tmp_path):
    with pytest.raises(ValueError, match="is the run being polished"):
        polish(tiny_run_dir, tiny_run_dir, QUICK, progress=False)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="already holds a run: choose another --out"):
        polish(tiny_run_dir, taken, QUICK, progress=False)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(steps=0), "steps=0: give at least 1"),
        (dict(lr=0.0), "lr=0.0: give a learning rate > 0"),
        (dict(batch_size=1), "BatchNorm needs at least 2 pairs"),
        (dict(warmdown=1.5), r"choose a share of the steps in \[0, 1\]"),
    ],
)
def test_polish_settings_are_checked_with_the_fix_named(change, message):
    with pytest.raises(ValueError, match=message):
        PolishConfig(**change).check()


def test_cli_polish_errors_exit_2_before_any_work(tiny_run_dir, tmp_path, capsys):
    assert exit_code(["polish", str(tiny_run_dir), "--out", str(tmp_path / "p"), "--lr", "-1"]) == 2
    assert "lr=-1.0: give a learning rate > 0" in capsys.readouterr().err
    assert exit_code(["polish", str(tmp_path / "nothing"), "--out", str(tmp_path / "p")]) == 2
    assert "is not a discovery run" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
