"""Editing: labels, inversion + edits, exported global directions."""

import json

import pytest
import torch

from hspace import sample
from hspace.cli import main
from hspace.directions import load_directions, mean_shifts
from hspace.edit import edit_images, edit_noise
from hspace.export import export_directions
from hspace.run import load_run, parse_edit, read_labels, write_label
from hspace.sampling import magnitudes, seed_noise
from hspace.schedule import uniform_timesteps


@pytest.fixture(scope="module")
def run(tiny_run_dir):
    r = load_run(tiny_run_dir)
    with torch.no_grad():  # trained directions are non-zero; two steps barely move them
        r.shift_block.out_weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    return r


def test_labels_name_directions(run):
    write_label(run.folder, 1, "thickness", run.config.K)
    assert read_labels(run.folder) == {1: "thickness"}
    assert parse_edit("thickness:-2", read_labels(run.folder), run.config.K) == (1, -2.0)
    assert parse_edit("3:2.5", {}, run.config.K) == (3, 2.5)
    with pytest.raises(ValueError, match="already names direction 1"):
        write_label(run.folder, 2, "thickness", run.config.K)
    with pytest.raises(ValueError, match="out of range"):
        parse_edit("9:1", {}, run.config.K)
    with pytest.raises(ValueError, match="unknown direction 'slant'"):
        parse_edit("slant:1", {}, run.config.K)
    with pytest.raises(ValueError, match="DIRECTION:MAGNITUDE"):
        parse_edit("3", {}, run.config.K)


def test_edit_reconstructs_and_edits(run):
    x0 = sample(run.model, torch.randn(2, 1, 16, 16), run.timesteps)  # images the model can reach
    res = edit_images(run, x0.clamp(-1, 1), [(0, 2.0), (1, -1.0)], steps=20)
    assert res.reconstruction.shape == x0.shape and res.edited.shape == x0.shape
    assert set(res.reconstruction_error()) == {"mae", "mse", "psnr_db"}
    assert (res.edited - res.reconstruction).abs().max() > 1e-3  # the edit changes the image
    none = edit_images(run, x0.clamp(-1, 1), [(0, 0.0)], steps=20)
    assert torch.equal(none.edited, none.reconstruction)  # s = 0: plain DDIM exactly
    with pytest.raises(ValueError, match="the model takes"):
        edit_images(run, torch.zeros(1, 3, 16, 16), [])


def test_exported_directions_round_trip_and_edit(run, tmp_path):
    path = export_directions(run, tmp_path / "dirs.safetensors", num_samples=3)
    dirs = load_directions(path)
    shifted = [t for t in run.timesteps if t >= run.config.t_stop]
    assert dirs.per_step.shape[:2] == (run.config.K, len(shifted)) and dirs.timesteps == shifted
    torch.testing.assert_close(dirs.per_step, mean_shifts(run, 3))
    x_T = torch.randn(2, 1, 16, 16)
    plain = sample(run.model, x_T, run.timesteps)
    # The per-timestep mean edit tracks the shift block's own edit (both shift h by a similar amount).
    block = sample(
        run.model, x_T, run.timesteps, directions=run.shift_block, edits=[(2, 1.5)], t_stop=run.config.t_stop
    )
    mean_t = sample(
        run.model,
        x_T,
        run.timesteps,
        directions=dirs.using(per_timestep=True),
        edits=[(2, 1.5)],
        t_stop=run.config.t_stop,
    )
    glob = sample(run.model, x_T, run.timesteps, directions=dirs, edits=[(2, 1.5)], t_stop=run.config.t_stop)
    for edited in (mean_t, glob):  # the averaged directions change the image the way the block does (0.64 measured)
        cosine = torch.nn.functional.cosine_similarity((edited - plain).flatten(), (block - plain).flatten(), dim=0)
        assert cosine > 0.5
    assert (mean_t - block).abs().mean() < (block - plain).abs().mean()


def test_cli_label_export_edit(run, tmp_path):
    folder = str(run.folder)
    assert main(["label", folder, "2", "slant"]) == 0
    assert main(["export", folder, "--out", str(tmp_path / "g.safetensors"), "--num-samples", "2"]) == 0
    out = tmp_path / "edit"
    argv = ["edit", folder, "--image", "mnist:0,5", "--edit", "slant:1.5", "--sweep", "slant"]
    argv += ["--inversion-steps", "10", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["edits"] == [[2, 1.5]] and report["reconstruction_error"]["mae"] >= 0
    assert {"input.png", "reconstruction.png", "edited.png", "sweep-002.png"} <= {p.name for p in out.iterdir()}
    assert main([*argv[:-1], str(tmp_path / "edit2"), "--global-directions", str(tmp_path / "g.safetensors")]) == 0


def test_sweep_zero_column_is_the_reconstruction(run):
    """One rule for every picture: no clipping of x0, so the s = 0 column is exactly what edit reconstructs."""
    x0 = sample(run.model, torch.randn(2, 1, 16, 16), run.timesteps).clamp(-1, 1)
    res = edit_images(run, x0, [], steps=10)
    mags = magnitudes(run.config.S, 5)
    swept = run.sweep(1, res.x_T, mags, timesteps=uniform_timesteps(10))  # [2 x 5 x 1 x 16 x 16]
    assert mags[2] == 0.0
    # Batched kernels are not bitwise batch-invariant: 8e-5 measured here, far below a grey level (2 / 255).
    torch.testing.assert_close(swept[:, 2], res.reconstruction, atol=1e-3, rtol=0)
    assert (swept[:, 0] - swept[:, 2]).abs().max() > 1e-3  # the other columns are edits


def test_export_of_a_shipped_run_writes_here_not_into_the_package(tiny_run_dir, tmp_path, monkeypatch):
    from hspace import presets

    monkeypatch.setitem(presets.SHIPPED_RUNS, "default", tiny_run_dir)
    monkeypatch.chdir(tmp_path)
    assert main(["export", "default", "--num-samples", "1", "--device", "cpu"]) == 0
    assert load_directions(tmp_path / "global-directions-default.safetensors").num_directions == 4
    assert not (tiny_run_dir / "global_directions.safetensors").exists()


def test_edit_of_a_generated_sample_is_hspace_sample_with_its_t_stop(run, tmp_path):
    """`--image seed:N` edits the sample x_T = seed_noise([N]) generates; `--t-stop` replaces the run's."""
    out = tmp_path / "seed"
    argv = ["edit", str(run.folder), "--image", "seed:4,6", "--edit", "1:1.5", "--inversion-steps", "5"]
    assert main([*argv, "--t-stop", "200", "--sweep", "1", "--out", str(out), "--device", "cpu"]) == 0
    x_T = seed_noise([4, 6], 1, 16)
    ts = uniform_timesteps(5)
    per_step = 1.5 * run.config.M / 5  # s is per step of the run's own M-step chain
    edited = sample(run.model, x_T, ts, directions=run.shift_block, edits=[(1, per_step)], t_stop=200)
    assert torch.equal(edit_noise(run, x_T, [(1, 1.5)], steps=5, t_stop=200).edited, edited)
    report = json.loads((out / "report.json").read_text())
    assert report["t_stop"] == 200 and report["reconstruction_error"] is None
    assert report["shift_scale"] == run.config.M / 5
    assert {"input.png", "reconstruction.png", "edited.png", "sweep-001.png"} <= set(report["files"])
    run_t_stop = edit_noise(run, x_T, [(1, 1.5)], steps=5).edited  # the run's t_stop, 400: fewer shifted steps
    assert not torch.equal(run_t_stop, edited)


def test_a_shift_applies_as_on_the_runs_own_chain_whatever_the_step_count(run, tmp_path):
    """A shift is added on every step while t >= t_stop: on N steps, each applies s * M / N (measured on
    the default run: unscaled, 100 steps over-apply a 10-step run's edit 1.7-3.4x in norm; scaled, 0.80-1.12x)."""
    x_T = seed_noise([2], 1, 16)
    t_stop, M = run.config.t_stop, run.config.M

    def chain(n, s):
        ts = uniform_timesteps(n)
        return sample(run.model, x_T, ts, directions=run.shift_block, edits=[(3, s)], t_stop=t_stop)

    assert torch.equal(edit_noise(run, x_T, [(3, 2.0)], steps=M).edited, chain(M, 2.0))  # the run's chain: s as is
    assert torch.equal(edit_noise(run, x_T, [(3, 2.0)], steps=4 * M).edited, chain(4 * M, 0.5))
    assert torch.equal(edit_noise(run, x_T, [(3, 2.0)], steps=4 * M, scale_to_chain=False).edited, chain(4 * M, 2.0))
    mags = [-2.0, 0.0, 2.0]
    swept = run.sweep(3, x_T, mags, uniform_timesteps(4 * M))[0]  # [3 x C x H x W]
    torch.testing.assert_close(swept[2:], chain(4 * M, 0.5), atol=1e-4, rtol=0)  # batched: not bitwise
    out = tmp_path / "unscaled"
    argv = ["edit", str(run.folder), "--image", "seed:2", "--edit", "3:2", "--inversion-steps", str(4 * M)]
    assert main([*argv, "--per-step-shifts", "--out", str(out), "--device", "cpu"]) == 0
    assert json.loads((out / "report.json").read_text())["shift_scale"] == 1.0


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--image", "seed:x"], "write seed:3"),
        (["--image", "seed:-1"], "seeds run 0"),
        (["--image", "seed:1", "--t-stop", "1000"], "--t-stop 1000"),
    ],
)
def test_bad_seed_and_t_stop_are_one_line_errors(run, tmp_path, capsys, argv, words):
    assert main(["edit", str(run.folder), *argv, "--edit", "0:1", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err
    assert not (tmp_path / "x").exists()
