"""Discovery runs: folders that carry their config, exact resume, clear errors."""

import json

import pytest
import torch

from conftest import exit_code
from hspace import presets
from hspace.artifacts import load_tensors
from hspace.cli import main
from hspace.discover import discover
from hspace.run import load_parts, load_run
from hspace.train import DiscoveryTrainer

CFG = presets.run_preset("tiny")[1].replace(train_steps=4, batch_size=4, M=3)


@pytest.mark.parametrize("warmdown", [0.0, 0.75])  # the rates' schedule is a function of the step: it resumes too
def test_resumed_run_equals_uninterrupted_run(tmp_path, monkeypatch, warmdown):
    cfg = CFG.replace(lr_warmdown=warmdown)
    quick = dict(grid_every=0, rca_pairs=16, progress=False)  # held-out RCA on a few pairs: it must not move training
    straight = discover("tiny", cfg, tmp_path / "straight", **quick)
    # The same 4-step run interrupted after step 2 (a shorter train_steps would be another schedule).
    train_step = DiscoveryTrainer.train_step

    def interrupted_after_two(trainer, *args, **kwargs):
        if trainer.step == 2:
            raise KeyboardInterrupt
        return train_step(trainer, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(DiscoveryTrainer, "train_step", interrupted_after_two)
        with pytest.raises(KeyboardInterrupt):
            discover("tiny", cfg, tmp_path / "split", checkpoint_every=1, **quick)
    split = discover("tiny", cfg, tmp_path / "split", resume=True, **quick)
    a, b = load_run(straight), load_run(split)
    assert a.step == b.step == 4
    for (name, p), q in zip(a.shift_block.state_dict().items(), b.shift_block.state_dict().values()):
        assert torch.equal(p, q), name
    rows = (tmp_path / "split" / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]


def test_run_folder_carries_its_config(tmp_path):
    out = discover("tiny", CFG.replace(train_steps=1), tmp_path / "run", grid_every=1, rca_every=0, progress=False)
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"]["K"] == CFG.K and meta["model"]["source"] == "tiny" and meta["step"] == 1
    assert (out / "grids" / "step-000001.png").exists()
    run = load_run(out)
    assert run.config == CFG.replace(train_steps=1) and run.timesteps == [666, 333, 0]
    assert not any(p.requires_grad for p in run.shift_block.parameters())


def test_run_from_another_model_is_refused(tmp_path):
    out = discover("tiny", CFG.replace(train_steps=1), tmp_path / "run", grid_every=0, rca_every=0, progress=False)
    other = presets.DM_PRESETS["tiny"]
    from hspace.backends import build_adm

    with pytest.raises(ValueError, match="discovered on another model"):
        load_run(out, model=build_adm(other, seed=5, fill_zero_init=True))
    with pytest.raises(ValueError, match="not a discovery run"):
        load_run(tmp_path)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--K", "0"], "K=0"),
        (["--S", "0"], "S=0"),
        (["--t-stop", "999"], "t_stop=999"),
        (["--M", "5000"], "M=5000"),
        (["--preset", "nope"], "invalid choice: 'nope'"),
        (["--model", "missing.safetensors"], "no model at"),
    ],
)
def test_bad_discover_input_is_one_line(tmp_path, capsys, extra, message):
    argv = ["discover", "--preset", "tiny", "--out", str(tmp_path / "r"), "--train-steps", "1", *extra]
    assert exit_code(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_cli_resume_takes_the_runs_own_settings(tmp_path, capsys):
    out = tmp_path / "run"
    quick = ["--rca-every", "0", "--grid-every", "0", "--device", "cpu"]  # what this test is not about
    assert main(["discover", "--preset", "tiny", "--train-steps", "2", "--K", "3", "--out", str(out), *quick]) == 0
    # No --preset or --K now: the run's config.json says what they were; only the length changes.
    assert main(["discover", "--out", str(out), "--resume", "--train-steps", "3", *quick]) == 0
    meta = json.loads((out / "config.json").read_text())
    assert meta["step"] == 3 and meta["config"]["K"] == 3 and meta["model"]["source"] == "tiny"
    assert main(["discover", "--out", str(out), "--resume", "--K", "4"]) == 2
    assert "--resume with other settings (K: run has 3, now 4)" in capsys.readouterr().err


def test_first_step_says_what_makes_it_slow(tmp_path, capsys):
    discover("tiny", CFG.replace(train_steps=1), tmp_path / "optimised", grid_every=0, rca_every=0)
    assert (
        "step 1 also measures each chain step's graph memory and fills the real-chain cache" in capsys.readouterr().out
    )
    discover(
        "tiny", CFG.replace(train_steps=1, algorithm="checkpointed"), tmp_path / "plain", grid_every=0, rca_every=0
    )
    assert "step 1 also" not in capsys.readouterr().out  # Algorithm 1 measures and caches nothing


def test_a_run_can_start_from_another_runs_parts(tmp_path, capsys):
    quick = dict(grid_every=0, rca_every=0, progress=False)
    first = discover("tiny", CFG.replace(train_steps=2), tmp_path / "first", **quick)
    # Refined with another size: the free directions rescaled to |Delta h| = |s| 0.5 |h|, no random start needed.
    refined_cfg = CFG.replace(train_steps=0, init_from=str(first), shift_norm=0.5)
    refined = discover("tiny", refined_cfg, tmp_path / "refined", **quick)
    meta = json.loads((refined / "config.json").read_text())
    assert meta["step"] == 0 and meta["config"]["init_from"] == str(first)
    for part in ("shift_block", "reconstructor", "discriminator"):
        a = load_tensors(first / f"{part}.safetensors", f"hspace-{part}")[0]
        b = load_tensors(refined / f"{part}.safetensors", f"hspace-{part}")[0]
        assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a), part
    with pytest.raises(ValueError, match="trained on another model"):
        load_parts(
            first, DiscoveryTrainer(load_run(first).model, CFG, "cpu").modules, {"source": "x", "fingerprint": "0"}
        )
    argv = ["discover", "--preset", "tiny", "--K", "3", "--init-from", str(first), "--out", str(tmp_path / "r")]
    assert exit_code(argv) == 2
    err = capsys.readouterr().err.strip()
    assert f"that run has K={CFG.K}" in err and f"give --K {CFG.K}" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()
    # A new critic for found directions: the shift block and reconstructor come along, the discriminator is fresh.
    fresh_d = discover("tiny", refined_cfg.replace(init_discriminator=False), tmp_path / "fresh_d", **quick)
    new = DiscoveryTrainer(load_run(first).model, CFG, "cpu").modules.discriminator.state_dict()
    for part, source in (("reconstructor", first), ("discriminator", None)):
        a = load_tensors(fresh_d / f"{part}.safetensors", f"hspace-{part}")[0]
        b = new if source is None else load_tensors(source / f"{part}.safetensors", f"hspace-{part}")[0]
        assert all(torch.equal(a[n], b[n]) for n in a), part
    with pytest.raises(ValueError, match="give --init-from RUN or drop --no-init-discriminator"):
        CFG.replace(init_discriminator=False)
