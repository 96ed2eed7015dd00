"""Editing real images (paper 5.3): DDIM inversion to x_T, then the asymmetric chain with edits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .artifacts import atomic_write
from .metrics import reconstruction_error
from .run import Run, check_run_folder, load_run, parse_edit, resolve_direction
from .sampling import invert, magnitudes, sample, seed_noise
from .schedule import uniform_timesteps
from .viz import save_image, sheet


@dataclass
class EditResult:
    x0: torch.Tensor  # the input images [N x C x H x W]
    x_T: torch.Tensor  # their DDIM inversions
    reconstruction: torch.Tensor  # plain DDIM from x_T
    edited: torch.Tensor | None  # with all edits applied together

    def reconstruction_error(self) -> dict[str, float]:
        return reconstruction_error(self.reconstruction, self.x0)


def check_steps(steps: int) -> int:
    if steps < 1:
        raise ValueError(f"--inversion-steps {steps}: inversion needs at least one DDIM step (paper: 100)")
    return steps


def check_t_stop(t_stop: int, num_train_steps: int) -> int:
    if not 0 <= t_stop < num_train_steps:
        raise ValueError(f"--t-stop {t_stop}: shifts apply while t >= t_stop; choose 0 to {num_train_steps - 1}")
    return t_stop


def parse_seeds(image: str) -> list[int] | None:
    """``seed:3`` or ``seed:3,5`` -> [3, 5] (generated samples, x_T from those seeds); anything else -> None."""
    if not image.startswith("seed:"):
        return None
    try:
        seeds = [int(i) for i in image[len("seed:") :].split(",")]
    except ValueError:
        raise ValueError(f"--image {image!r}: write seed:3 or seed:3,17 (x_T from those seeds)") from None
    if any(not 0 <= seed < 2**63 for seed in seeds):
        raise ValueError(f"--image {image!r}: seeds run 0 to {2**63 - 1}")
    return seeds


@torch.no_grad()
def edit_images(
    run: Run,
    images: torch.Tensor,
    edits: list[tuple[int, float]],
    steps: int = 100,
    directions=None,
    t_stop: int | None = None,
    scale_to_chain: bool = True,
) -> EditResult:
    """Invert with ``steps`` DDIM steps, reconstruct, and apply ``edits`` (h_hat = h + sum s_i f(h, k_i)).

    ``scale_to_chain``: each s applies as on the run's own chain (``Run.shift_scale``); False: as given
    on every one of ``steps`` steps."""
    model = run.model
    expected = (model.in_channels, model.image_size, model.image_size)
    if images.shape[1:] != expected:
        raise ValueError(f"images are {tuple(images.shape[1:])}, the model takes {expected}")
    ts = uniform_timesteps(check_steps(steps), model.num_train_steps)
    x_T = invert(model, images, ts, progress=True)
    return edit_noise(run, x_T, edits, steps, directions, t_stop, images, scale_to_chain)


@torch.no_grad()
def edit_noise(
    run: Run,
    x_T: torch.Tensor,
    edits: list[tuple[int, float]],
    steps: int = 100,
    directions=None,
    t_stop: int | None = None,
    images: torch.Tensor | None = None,
    scale_to_chain: bool = True,
) -> EditResult:
    """The plain chain from x_T [N x C x H x W] and the edited one; ``images`` are what x_T inverts (None:
    generated samples, whose input is their own chain). ``scale_to_chain`` as in ``edit_images``."""
    model = run.model
    ts = uniform_timesteps(check_steps(steps), model.num_train_steps)
    t_stop = run.config.t_stop if t_stop is None else check_t_stop(t_stop, model.num_train_steps)
    plain = sample(model, x_T, ts, progress=True)
    edited = None
    if edits:
        block = directions or run.shift_block
        per_step = run.scaled_edits(edits, ts) if scale_to_chain else list(edits)
        edited = sample(model, x_T, ts, directions=block, edits=per_step, t_stop=t_stop, progress=True)
    return EditResult(plain if images is None else images, x_T, plain, edited)


def default_out(image: str) -> Path:
    """edits/<image name>; mnist:3,5 -> edits/mnist-3_5; seed:7 -> edits/seed-7."""
    name = Path(image).stem if ":" not in image else image.replace(":", "-").replace(",", "_")
    return Path("edits") / name


def edit_command(
    run_ref: str,
    image: str,
    edits: list[str],
    sweeps: list[str],
    out: str | None,
    steps: int = 100,
    num_magnitudes: int = 9,
    global_directions: str | None = None,
    device: str = "cpu",
    t_stop: int | None = None,
    scale_to_chain: bool = True,
) -> tuple[Path, dict]:
    """``hspace edit``: inversion, reconstruction and its error, edited images and sweeps, as PNGs + report.json.

    ``image`` ``seed:N[,M...]``: generated samples instead (x_T from those seeds, no inversion)."""
    from .data import load_images
    from .directions import load_directions

    check_steps(steps)
    seeds = parse_seeds(image)
    check_run_folder(run_ref)
    if global_directions and not Path(global_directions).is_file():
        raise ValueError(f"--global-directions {global_directions}: no such file; write one with `hspace export RUN`")
    run = load_run(run_ref, device=device)
    labels, K = run.labels(), run.config.K
    parsed = [parse_edit(e, labels, K) for e in edits]
    sweep_ks = [resolve_direction(s, labels, K) for s in sweeps]
    directions = load_directions(global_directions) if global_directions else None
    model = run.model
    if t_stop is not None:
        check_t_stop(t_stop, model.num_train_steps)
    out_dir = Path(out) if out else default_out(image)

    if seeds is None:
        images = load_images(image, model.image_size, model.in_channels).to(device)
        res = edit_images(run, images, parsed, steps, directions, t_stop, scale_to_chain)
    else:
        x_T = seed_noise(seeds, model.in_channels, model.image_size).to(device)
        res = edit_noise(run, x_T, parsed, steps, directions, t_stop, scale_to_chain=scale_to_chain)
        images = res.x0
    ts = uniform_timesteps(steps, run.model.num_train_steps)
    mags = magnitudes(run.config.S, num_magnitudes)
    # Every picture is rendered before any is written: a failure leaves no partial folder behind.
    pictures = {"input.png": sheet(images[None], 4), "reconstruction.png": sheet(res.reconstruction[None], 4)}
    if res.edited is not None:
        pictures["edited.png"] = sheet(res.edited[None], 4)
    for k in sweep_ks:
        swept = run.sweep(k, res.x_T, mags, ts, directions, t_stop, scale_to_chain)  # [N x n x C x H x W]
        pictures[f"sweep-{k:03d}.png"] = sheet(swept, 4, mags)
    for name, picture in pictures.items():
        save_image(picture, out_dir / name)
    report = {
        "image": image,
        "run": run.name,
        "inversion_steps": steps,
        "t_stop": run.config.t_stop if t_stop is None else t_stop,
        "edits": parsed,
        "shift_scale": run.shift_scale(ts) if scale_to_chain else 1.0,  # what each step applies of s
        "reconstruction_error": res.reconstruction_error() if seeds is None else None,
        "files": list(pictures),
    }
    text = json.dumps(report, indent=2)
    atomic_write(out_dir / "report.json", lambda tmp: Path(tmp).write_text(text))
    return out_dir, report
