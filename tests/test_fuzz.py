"""Each subcommand's parser and entry on random and malformed arguments: success or a one-line error, never a traceback.

Bounded: a fixed seed and a fixed number of cases per subcommand, each mutating a cheap, valid command line
(one token replaced by a malformed value, dropped, or a known option added with such a value).
"""

import random
import re

import pytest

from conftest import exit_code
from hspace.cli import build_parser

# Values that have broken command lines before: empty, negative, non-finite, not numbers, half ranges, bad JSON, paths.
POOL = [
    "",
    "-1",
    "0",
    "1",
    "2",
    "nan",
    "inf",
    "-inf",
    "1e309",
    "0.5",
    "x",
    "0-",
    "3-1",
    ",",
    ":",
    "{",
    "[]",
    '{"a": 1}',
    "none",
    "default",
    "tiny",
    "mnist:0",
    "mnist:x",
    "0:1",
    "x:y",
    "../nope",
    "/dev/null",
    "a\x00b",
    "é",
    "--",
]
ERROR = re.compile(r"^hspace( [\w-]+)?: (error|interrupted): ")
CASES = {
    "discover": 8,
    "train-dm": 5,
    "show": 8,
    "edit": 6,
    "label": 8,
    "export": 5,
    "mos": 5,
    "evaluate": 3,
    "probe": 3,
}


def base_commands(run: str, out: str) -> dict[str, list[str]]:
    """A cheap, valid command line per subcommand (each finishes in about a second on the tiny model)."""
    lines = {
        "discover": f"discover --preset tiny --train-steps 1 --batch-size 2 --M 2 --rca-every 0 --grid-every 0 --out {out}/d",
        "train-dm": f"train-dm --preset tiny --train-steps 1 --batch-size 2 --sample-every 0 --out {out}/dm",
        "show": f"show {run} --directions 0 --seeds 0 --magnitudes 2 --out {out}/show",
        "edit": f"edit {run} --image mnist:0 --edit 0:1 --sweep 1 --inversion-steps 2 --out {out}/edit",
        "label": f"label {run} 1 thin",
        "export": f"export {run} --num-samples 1 --out {out}/g.safetensors",
        "mos": f"mos {run} --directions 0 --out {out}/mos",
        "evaluate": f"evaluate {run} --num-pairs 2 --recalibrate-pairs 0 --out {out}/eval",
        "probe": "probe tiny --M 2 --batch-size 1 --quick --sizes 0.5",
    }
    no_device = {"label"}
    return {name: line.split() + ([] if name in no_device else ["--device", "cpu"]) for name, line in lines.items()}


def options(command: str) -> list[str]:
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    return [s for a in sub._actions for s in a.option_strings if s.startswith("--") and s not in ("--help", "--device")]


def mutate(argv: list[str], rng: random.Random) -> list[str]:
    argv = list(argv)
    kind = rng.choice(["replace", "replace", "drop", "add", "add"])
    i = rng.randrange(1, len(argv))
    if kind == "replace" and not argv[i].startswith("--"):
        argv[i] = rng.choice(POOL)
    elif kind == "drop":
        del argv[i]
    else:
        argv += [rng.choice([*options(argv[0]), "--nosuch"]), rng.choice(POOL)]
    return argv


def check(argv: list[str], capsys) -> None:
    try:
        code = exit_code(argv)
    except BaseException as e:  # a traceback: the case that fails
        raise AssertionError(f"hspace {argv!r} raised {type(e).__name__}: {e}") from e
    err = capsys.readouterr().err
    lines = [line for line in re.split(r"[\r\n]", err) if line.strip()]
    assert "Traceback" not in err, (argv, err)
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        assert ERROR.match(lines[-1]) and len(lines[-1]) < 400, (argv, err)
        assert sum(bool(ERROR.match(line)) for line in lines) == 1, (argv, err)


@pytest.mark.parametrize("command", list(CASES))
def test_fuzz_subcommand(command, tiny_run_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything a mutated --out points at stays in here
    rng = random.Random(f"hspace-fuzz-{command}")
    base = base_commands(str(tiny_run_dir), str(tmp_path))[command]
    for _ in range(CASES[command]):
        argv = mutate(base, rng)
        if rng.random() < 0.5:  # two faults at once, now and then
            argv = mutate(argv, rng)
        check(argv, capsys)


def test_fuzz_parsers_only(capsys):
    """Every subcommand's parser (bench included, whose entry takes minutes) on malformed options."""
    rng = random.Random("hspace-fuzz-parsers")
    parser = build_parser()
    for command in ["bench", *CASES]:
        for _ in range(20):
            argv = [command, rng.choice([*options(command), "--nosuch"]), rng.choice(POOL)]
            try:
                parser.parse_args(argv)
            except SystemExit as e:
                assert e.code == 2, argv
                err = capsys.readouterr().err.strip()
                assert len(err.splitlines()) == 1 and "error:" in err, (argv, err)
