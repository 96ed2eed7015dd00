"""``hspace bench``: memory, throughput and gradient agreement of the training algorithms (paper 5.1, Fig. 4).

On CUDA, peak memory is ``torch.cuda.max_memory_allocated``; on CPU it is the peak RSS of a fresh
subprocess per case, so that cases do not inherit each other's high-water mark.
"""

from __future__ import annotations

import copy
import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .config import DiscoveryConfig
from .models import load_model
from .presets import run_preset
from .speed import tune_model
from .train import DiscoveryModules, DiscoveryTrainer, generator_gradients, max_relative_difference

GRAD_CHECK_BATCH = 8
ALGORITHMS = {
    "vanilla": dict(algorithm="vanilla"),
    "checkpointed": dict(algorithm="checkpointed"),  # the paper's Algorithm 1
    "optimised": dict(algorithm="optimised"),  # hspace's default (see speed.py)
    "optimised-compiled": dict(algorithm="optimised", compile=True),  # + torch.compile; on request (slow warm-up)
}
DEFAULT_ALGORITHMS = ["vanilla", "checkpointed", "optimised"]


@dataclass
class BenchRecord:
    algorithm: str
    M: int
    batch_size: int
    peak_mem_mb: float
    images_per_s: float
    max_rel_grad_diff: float
    device: str = "cpu"
    speed_vs_vanilla: float | None = None  # images/s over vanilla's at the same M, same run
    memory_vs_vanilla: float | None = None
    speed_vs_checkpointed: float | None = None  # images/s over Algorithm 1's at the same M, same run
    kept_steps: int | None = None  # steps whose autograd graph the first pass keeps


def case_config(preset: str, algorithm: str, M: int, batch_size: int) -> DiscoveryConfig:
    _, cfg = run_preset(preset)
    t_stop = min(cfg.t_stop, 1000 - 1000 // M)  # keep at least the first step shifted for small M
    return cfg.replace(M=M, batch_size=batch_size, t_stop=t_stop, **ALGORITHMS[algorithm])


def measure_case(
    model_source: str, preset: str, algorithm: str, M: int, batch_size: int, repeats: int, device: str
) -> dict:
    """Time ``repeats`` training steps after one warm-up step; report peak memory and images/s.
    The warm-up step also fills the optimised algorithm's real-chain cache to its steady share."""
    model = load_model(model_source)
    trainer = DiscoveryTrainer(model, case_config(preset, algorithm, M, batch_size), device=device)
    cuda = trainer.device.type == "cuda"
    trainer.train_step()  # warm-up: allocator, kernels, compilation
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(repeats):
        trainer.train_step()
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb()
    return {"peak_mem_mb": peak, "images_per_s": repeats * batch_size / elapsed, "kept_steps": trainer.kept_steps}


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM belongs to the process image, whereas
    ``ru_maxrss`` is inherited across fork/exec and would report the parent's peak if larger."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def gradient_agreement(
    model_source: str, preset: str, M: int, batch_size: int, device: str, algorithms: list[str] = DEFAULT_ALGORITHMS
) -> dict[str, float]:
    """Max relative difference of each algorithm's gradients from vanilla's, from one shared state."""
    model = load_model(model_source).to(device)
    vanilla_cfg = case_config(preset, "vanilla", M, batch_size)
    trainer = DiscoveryTrainer(model, vanilla_cfg, device=device)
    with torch.no_grad():  # non-zero directions, so that every shift-block parameter has a gradient
        g = torch.Generator().manual_seed(0)
        trainer.modules.shift_block.out_weight.copy_(
            torch.randn(trainer.modules.shift_block.out_weight.shape, generator=g) * 1e-2
        )
    base: DiscoveryModules = trainer.modules
    batch = trainer.draw()
    reference = generator_gradients(model, copy.deepcopy(base), batch, trainer.timesteps, vanilla_cfg)
    out = {}
    for name in algorithms:
        cfg = case_config(preset, name, M, batch_size)
        tuned = tune_model(model, cfg.plan())
        grads = generator_gradients(tuned, copy.deepcopy(base), batch, trainer.timesteps, cfg)
        out[name] = max_relative_difference(grads, reference)
    return out


def _run_isolated(args: dict) -> dict:
    """One case in a fresh interpreter, so its peak RSS is its own."""
    code = "import json, sys; from hspace.bench import measure_case; print(json.dumps(measure_case(**json.loads(sys.argv[1]))))"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark case {args} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_bench(
    preset: str,
    steps: list[int],
    batch_size: int | None = None,
    model: str | None = None,
    repeats: int = 2,
    device: str = "cpu",
    algorithms: list[str] | None = None,
    log=print,
) -> list[BenchRecord]:
    """Every (algorithm, M) case; a row per case is logged as it finishes."""
    dm, cfg = run_preset(preset)
    model = model or dm
    batch_size = batch_size or cfg.batch_size
    algorithms = algorithms or DEFAULT_ALGORITHMS
    unknown = set(algorithms) - set(ALGORITHMS)
    if unknown:
        raise ValueError(f"unknown algorithm(s) {sorted(unknown)}: choose from {', '.join(ALGORITHMS)}")
    records = []
    log(
        f"{'algorithm':>13} {'M':>4} {'batch':>5} {'kept':>4} {'peak MB':>9} {'img/s':>8} {'x vanilla':>9} {'x ckpt':>7} {'grad diff':>10}"
    )
    for M in steps:
        # Gradients are compared on a batch of 8 whatever the timing batch: BatchNorm over 2 or 3
        # samples is so ill-conditioned that rounding alone moves some gradients by 1e-4.
        grads = gradient_agreement(model, preset, M, GRAD_CHECK_BATCH, device, algorithms)
        vanilla = checkpointed = None
        for name in sorted(algorithms, key=lambda a: (a != "vanilla", a != "checkpointed")):  # the references first
            args = dict(
                model_source=model,
                preset=preset,
                algorithm=name,
                M=M,
                batch_size=batch_size,
                repeats=repeats,
                device=device,
            )
            res = measure_case(**args) if device.startswith("cuda") else _run_isolated(args)
            rec = BenchRecord(
                name,
                M,
                batch_size,
                round(res["peak_mem_mb"], 1),
                round(res["images_per_s"], 3),
                grads[name],
                device,
                kept_steps=res["kept_steps"],
            )
            vanilla = vanilla or (rec if name == "vanilla" else None)
            checkpointed = checkpointed or (rec if name == "checkpointed" else None)
            if vanilla is not None:
                rec.speed_vs_vanilla = round(rec.images_per_s / vanilla.images_per_s, 3)
                rec.memory_vs_vanilla = round(rec.peak_mem_mb / vanilla.peak_mem_mb, 3)
            if checkpointed is not None:
                rec.speed_vs_checkpointed = round(rec.images_per_s / checkpointed.images_per_s, 3)
            records.append(rec)
            ratios = [
                f"{r:>{w}.2f}" if r is not None else f"{'-':>{w}}"
                for r, w in [(rec.speed_vs_vanilla, 9), (rec.speed_vs_checkpointed, 7)]
            ]
            log(
                f"{name:>13} {M:>4} {batch_size:>5} {rec.kept_steps:>4} {rec.peak_mem_mb:>9.1f} {rec.images_per_s:>8.2f} {' '.join(ratios)} "
                f"{rec.max_rel_grad_diff:>10.2e}"
            )
        if checkpointed is not None and vanilla is not None:  # vanilla ran before Algorithm 1 was there to compare with
            vanilla.speed_vs_checkpointed = round(vanilla.images_per_s / checkpointed.images_per_s, 3)
    return records


def write_results(records: list[BenchRecord], path: str | Path) -> tuple[Path, Path]:
    """The JSON records and a Figure-4-like plot (memory and throughput against M) beside them."""
    from .artifacts import atomic_write

    path = Path(path)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps([asdict(r) for r in records], indent=2)))
    return path, plot_results(records, path.with_suffix(".png"))


def plot_results(records: list[BenchRecord], png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .artifacts import atomic_write

    fig, (ax_mem, ax_speed) = plt.subplots(1, 2, figsize=(9, 3.5))
    styles = {"vanilla": "--", "checkpointed": "-", "optimised": "-.", "optimised-compiled": ":"}
    for name in dict.fromkeys(r.algorithm for r in records):
        rows = sorted((r for r in records if r.algorithm == name), key=lambda r: r.M)
        ms = [r.M for r in rows]
        ax_mem.plot(ms, [r.peak_mem_mb for r in rows], styles.get(name, ":"), marker="o", label=name)
        ax_speed.plot(ms, [r.images_per_s for r in rows], styles.get(name, ":"), marker="o", label=name)
    ax_mem.set(xlabel="M (DDIM steps)", ylabel="peak memory (MB)", title="memory")
    ax_speed.set(xlabel="M (DDIM steps)", ylabel="images / s", title="throughput")
    ax_mem.legend()
    fig.tight_layout()
    atomic_write(png, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return png
