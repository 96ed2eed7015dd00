"""Resume after a crash: ``discover`` and ``train-dm`` killed with SIGKILL at random moments (in a step, a
checkpoint write or a grid write), then resumed, end where an uninterrupted run with the same seed ends."""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

# Each run is killed this many times, then resumed to the end: once in `make test` (about 25 s on 2 busy
# cores), three times in `make test-slow` (about 80 s each).
SLOW_KILLS = pytest.param(3, marks=pytest.mark.slow)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # both runs with the same threads: the same float rounding

# Cheap runs that checkpoint every step and write a grid (discover) or samples (train-dm) along the way.
DISCOVER = "discover --preset tiny --train-steps 6 --batch-size 4 --M 3 --rca-every 0 --checkpoint-every 1".split()
DISCOVER += "--grid-every 1 --device cpu".split()
TRAIN_DM = "train-dm --preset tiny --train-steps 8 --batch-size 4 --sample-every 4 --checkpoint-every 1".split()
TRAIN_DM += "--device cpu".split()


def hspace(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hspace", *argv], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-2000:]


def steps_done(path: Path) -> int:
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except OSError:
        return 0


def kill_at_random(proc: subprocess.Popen, progress, rng: random.Random) -> None:
    """SIGKILL once the run has made progress since it started, after a random share of a step more."""
    start = progress()
    deadline = time.monotonic() + 300
    while progress() <= start and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(rng.uniform(0, 0.4))
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def check_nothing_half_written(folder: Path) -> None:
    """Every file a reader could open is whole (temporaries of interrupted writes are named .*.tmp)."""
    for path in folder.rglob("*"):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix == ".safetensors":
            load_file(str(path))
        elif path.suffix == ".pt":
            torch.load(path, weights_only=True)
        elif path.suffix == ".png":
            Image.open(path).load()
        elif path.suffix == ".json":
            json.loads(path.read_text())


def crash_and_resume(argv: list[str], out: Path, progress, seed: int, kills: int) -> None:
    rng = random.Random(seed)

    def command() -> list[str]:  # killed before its first checkpoint, a run starts again
        return [*argv, "--out", str(out), *["--resume"] * (out / "checkpoint.pt").exists()]

    for _ in range(kills):
        kill_at_random(hspace(command()), progress, rng)
        check_nothing_half_written(out)
    finish(hspace(command()))


@pytest.mark.parametrize("kills", [1, SLOW_KILLS])
def test_discover_resumes_after_sigkill(tmp_path, kills):
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    finish(hspace([*DISCOVER, "--out", str(straight)]))
    crash_and_resume(DISCOVER, crashed, lambda: steps_done(crashed / "log.csv"), seed=kills, kills=kills)
    for part in ("shift_block", "reconstructor", "discriminator"):
        a, b = load_file(str(straight / f"{part}.safetensors")), load_file(str(crashed / f"{part}.safetensors"))
        assert all(torch.equal(a[name], b[name]) for name in a), part
    with (crashed / "log.csv").open(newline="") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5, 6]  # each step logged once
    assert sorted(p.name for p in (crashed / "grids").iterdir()) == [f"step-{s:06d}.png" for s in range(1, 7)]
    assert not list(crashed.rglob(".*.tmp"))  # resuming cleared what the kills left mid-write


@pytest.mark.slow
def test_train_dm_resumes_after_sigkill(tmp_path):
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    finish(hspace([*TRAIN_DM, "--out", str(straight)]))

    def progress() -> int:  # a new checkpoint replaces the old one: its time stamp moves (cheaper than reading it)
        try:
            return (crashed / "checkpoint.pt").stat().st_mtime_ns
        except OSError:  # not written yet
            return 0

    crash_and_resume(TRAIN_DM, crashed, progress, seed=1, kills=3)
    a, b = (
        torch.load(straight / "checkpoint.pt", weights_only=True),
        torch.load(crashed / "checkpoint.pt", weights_only=True),
    )
    assert a["step"] == b["step"] == 8
    for key in ("model", "ema"):
        assert all(torch.equal(a[key][name], b[key][name]) for name in a[key]), key
    assert load_file(str(straight / "ema.safetensors")).keys() == load_file(str(crashed / "ema.safetensors")).keys()
    assert sorted(p.name for p in crashed.glob("samples-*.png")) == [f"samples-{s:06d}.png" for s in (4, 8)]
    assert not list(crashed.rglob(".*.tmp"))
