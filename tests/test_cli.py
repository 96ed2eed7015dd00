"""The command line, run as a user would (in-process through ``main``)."""

import json

import pytest

from conftest import exit_code
from hspace.bench import DEFAULT_ALGORITHMS
from hspace.cli import main


def test_bench_writes_records_and_plot(tmp_path):
    out = tmp_path / "bench.json"
    assert (
        main(["bench", "--preset", "tiny", "--M", "1,3", "--batch-size", "2", "--repeats", "1", "--json", str(out)])
        == 0
    )
    records = json.loads(out.read_text())
    assert {(r["algorithm"], r["M"]) for r in records} == {(a, m) for a in DEFAULT_ALGORITHMS for m in (1, 3)}
    for r in records:
        assert {"algorithm", "M", "batch_size", "peak_mem_mb", "images_per_s", "max_rel_grad_diff"} <= set(r)
        assert r["max_rel_grad_diff"] <= 1e-5 and r["peak_mem_mb"] > 0 and r["images_per_s"] > 0
        same_m = {q["algorithm"]: q for q in records if q["M"] == r["M"]}  # ratios to the references at the same M
        assert r["speed_vs_checkpointed"] == round(r["images_per_s"] / same_m["checkpointed"]["images_per_s"], 3)
        assert r["speed_vs_vanilla"] == round(r["images_per_s"] / same_m["vanilla"]["images_per_s"], 3)
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "--preset", "nope"], "invalid choice: 'nope'"),
        (["bench", "--algorithms", "fast"], "unknown algorithm"),
        (["train-dm", "--preset", "nope", "--out", "x"], "invalid choice: 'nope'"),
    ],
)
def test_bad_input_is_one_line_naming_the_fix(argv, message, capsys):
    assert exit_code(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
