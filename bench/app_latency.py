"""How long ``hspace app`` takes to show the edited image after a slider is released, per update.

Times ``Editor.update`` (checks, the edited chain, PNG-ready pixels and the download file: all the
server computes per release) for slider moves like a person's: one slider at a time, to a value on
its grid. The source is prepared first (seed noise, or the DDIM inversion and reconstruction of a
shipped digit), as the app does once per source. Also: the first view of a source (what the caches
spare every later update), the sweep strip, and the one encoder pass that no edit changes.

    OMP_NUM_THREADS=2 python bench/app_latency.py [--run default] [--updates 12] [--json PATH]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from hspace.app_state import DEFAULT_INVERSION_STEPS, Editor, PageState, Source
from hspace.run import load_run
from hspace.sampling import timestep_batch


def timed(fn) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "p90": ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))],
        "max": ordered[-1],
    }


def slider_moves(editor: Editor, count: int, seed: int = 0) -> list[tuple[float, ...]]:
    """Slider settings after each of ``count`` moves: each move sets one slider to a value on its grid."""
    rng = random.Random(seed)
    grid = [round(editor.S * i / 50, 4) for i in range(-50, 51)]
    values = [0.0] * editor.K
    moves = []
    for _ in range(count):
        values[rng.randrange(editor.K)] = rng.choice(grid)
        moves.append(tuple(values))
    return moves


def bench_case(editor: Editor, source: Source, steps: int, updates: int) -> dict:
    t_stop = editor.run.config.t_stop
    first_wall, first_cpu, _ = timed(lambda: editor.prepare(source, steps))
    walls, cpus = [], []
    for sliders in slider_moves(editor, updates):
        wall, cpu, view = timed(functools.partial(editor.update, PageState(source, steps, t_stop, sliders)))
        assert view.edited is not None, view.message
        walls.append(wall)
        cpus.append(cpu)
    sweep_wall, _, _ = timed(lambda: editor.sweep(source, steps, t_stop, k=0))
    return {
        "source": source.kind,
        "steps": steps,
        "update_wall_s": summary(walls),
        "update_cpu_s": summary(cpus),
        "first_view_wall_s": first_wall,
        "first_view_cpu_s": first_cpu,
        "sweep_strip_wall_s": sweep_wall,
    }


def first_encoder_pass(editor: Editor, repeats: int = 20) -> float:
    """Seconds of the step-0 encoder pass on x_T, the only one that no edit changes (median)."""
    model = editor.run.model
    x_T = torch.randn(1, model.in_channels, model.image_size, model.image_size)
    t = timestep_batch(editor.timesteps(10)[0], x_T)
    with torch.no_grad():
        return statistics.median(timed(lambda: model.encode(x_T, t))[0] for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="default")
    parser.add_argument("--updates", type=int, default=12, help="slider moves timed per case")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()

    run = load_run(args.run)
    with tempfile.TemporaryDirectory(prefix="hspace-app-bench-") as temp:
        editor = Editor(run, temp, args.run)
        cases = [
            (Source("seed", seed=0), run.config.M),
            (Source("digit", digit=0), DEFAULT_INVERSION_STEPS),
            (Source("digit", digit=0), 100),
        ]
        records = [bench_case(editor, source, steps, args.updates) for source, steps in cases]
        encoder = first_encoder_pass(editor)
    machine = {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
        "torch": torch.__version__,
    }
    print(
        f"run {args.run}; {machine['cpus']} CPUs, torch threads {machine['torch_threads']}, "
        f"1-min load average {machine['load_average_1min']:.2f} (other processes compete for the cores)"
    )
    print(
        f"{'source':<8} {'steps':>5} | {'update: median / p90 / max wall s':>34} | {'CPU s':>6} | {'first view s':>12} | {'sweep s':>7}"
    )
    for r in records:
        u, c = r["update_wall_s"], r["update_cpu_s"]
        print(
            f"{r['source']:<8} {r['steps']:>5} | {u['median']:>14.3f} / {u['p90']:.3f} / {u['max']:.3f}    | "
            f"{c['median']:>6.3f} | {r['first_view_wall_s']:>12.3f} | {r['sweep_strip_wall_s']:>7.3f}"
        )
    print(f"the step-0 encoder pass (the only one no edit changes): {encoder * 1000:.1f} ms")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": machine, "cases": records, "first_encoder_pass_s": encoder}, indent=2)
        )
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
