"""Editing real images (paper 5.3): DDIM inversion to x_T, then the asymmetric chain with edits."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .artifacts import atomic_write
from .run import Run
from .sampling import invert, sample
from .schedule import uniform_timesteps

LABELS = "labels.json"


def read_labels(folder: Path) -> dict[int, str]:
    """Names of directions from ``labels.json`` ({"k": "name"}) in the run folder, if there is one."""
    path = Path(folder) / LABELS
    if not path.exists():
        return {}
    try:
        return {int(k): str(v) for k, v in json.loads(path.read_text()).items()}
    except (ValueError, AttributeError) as e:
        raise ValueError(f"{path} should map direction indices to names, like {{\"3\": \"thick\"}} ({e})") from None


def write_label(folder: Path, k: int, name: str, K: int) -> Path:
    """Name direction k of a run (``hspace label``); names are unique and not numbers."""
    if not 0 <= k < K:
        raise ValueError(f"direction {k} out of range: this run has K={K} directions (0..{K - 1})")
    if not name or name.lstrip("-").replace(".", "", 1).isdigit() or ":" in name:
        raise ValueError(f"label {name!r}: use a word such as 'thickness' (no ':' and not a number)")
    labels = read_labels(folder)
    taken = {v: i for i, v in labels.items()}
    if name in taken and taken[name] != k:
        raise ValueError(f"label {name!r} already names direction {taken[name]}: pick another name")
    labels[k] = name
    text = json.dumps({str(i): v for i, v in sorted(labels.items())}, indent=2)
    return atomic_write(Path(folder) / LABELS, lambda tmp: Path(tmp).write_text(text))


def resolve_direction(token: str, labels: dict[int, str], K: int) -> int:
    """A direction index or its label."""
    names = {v: i for i, v in labels.items()}
    if token in names:
        return names[token]
    try:
        k = int(token)
    except ValueError:
        known = ", ".join(sorted(names)) or "none yet: name one with `hspace label RUN K NAME`"
        raise ValueError(f"unknown direction {token!r}: give an index 0..{K - 1} or a label ({known})") from None
    if not 0 <= k < K:
        raise ValueError(f"direction {k} out of range: this run has K={K} directions (0..{K - 1})")
    return k


def parse_edit(text: str, labels: dict[int, str], K: int) -> tuple[int, float]:
    """``K:S`` or ``name:S`` -> (k, s)."""
    token, sep, magnitude = text.rpartition(":")
    if not sep or not token:
        raise ValueError(f"edit {text!r}: write DIRECTION:MAGNITUDE, e.g. 3:2.5 or thickness:-2")
    try:
        s = float(magnitude)
    except ValueError:
        raise ValueError(f"edit {text!r}: the magnitude {magnitude!r} is not a number") from None
    return resolve_direction(token, labels, K), s


@dataclass
class EditResult:
    x0: torch.Tensor  # the input images [N x C x H x W]
    x_T: torch.Tensor  # their DDIM inversions
    reconstruction: torch.Tensor  # plain DDIM from x_T
    edited: torch.Tensor | None  # with all edits applied together

    def reconstruction_error(self) -> dict[str, float]:
        """Mean absolute and mean squared error in [-1, 1] units, and PSNR (dB, peak-to-peak 2)."""
        mse = (self.reconstruction - self.x0).pow(2).mean().item()
        psnr = 10 * torch.log10(torch.tensor(4.0 / max(mse, 1e-12))).item()
        return {"mae": (self.reconstruction - self.x0).abs().mean().item(), "mse": mse, "psnr_db": psnr}


@torch.no_grad()
def edit_images(run: Run, images: torch.Tensor, edits: list[tuple[int, float]], steps: int = 100, directions=None) -> EditResult:
    """Invert with ``steps`` DDIM steps, reconstruct, and apply ``edits`` (h_hat = h + sum s_i f(h, k_i))."""
    model = run.model
    if images.shape[1:] != (model.in_channels, model.image_size, model.image_size):
        raise ValueError(f"images are {tuple(images.shape[1:])}, the model takes {(model.in_channels, model.image_size, model.image_size)}")
    ts = uniform_timesteps(steps, model.num_train_steps)
    x_T = invert(model, images, ts, progress=True)
    recon = sample(model, x_T, ts, progress=True)
    edited = None
    if edits:
        edited = sample(model, x_T, ts, directions=directions or run.shift_block, edits=edits, t_stop=run.config.t_stop, progress=True)
    return EditResult(images, x_T, recon, edited)


def edit_command(run_ref: str, image: str, edits: list[str], sweeps: list[str], out: str | None, steps: int = 100,
                 num_magnitudes: int = 9, global_directions: str | None = None, device: str = "cpu") -> tuple[Path, dict]:  # fmt: skip
    """``hspace edit``: inversion, reconstruction and its error, edited images and sweeps, as PNGs + report.json."""
    from .data import load_images
    from .export import load_directions
    from .run import load_run
    from .viz import magnitudes, save_grid

    run = load_run(run_ref, device=device)
    labels = read_labels(run.folder)
    K = run.config.K
    parsed = [parse_edit(e, labels, K) for e in edits]
    sweep_ks = [resolve_direction(s, labels, K) for s in sweeps]
    images = load_images(image, run.model.image_size, run.model.in_channels).to(device)
    directions = load_directions(global_directions) if global_directions else None
    out_dir = Path(out or f"edits/{Path(image).stem if ':' not in image else image.replace(':', '-').replace(',', '_')}")
    res = edit_images(run, images, parsed, steps, directions)
    save = lambda x, name, ncol=None: save_grid(x, out_dir / name, ncol=ncol or x.shape[0], scale=4)  # noqa: E731
    save(images, "input.png")
    save(res.reconstruction, "reconstruction.png")
    report = {"image": image, "run": str(run.folder), "inversion_steps": steps, "edits": parsed,
              "reconstruction_error": res.reconstruction_error(), "files": ["input.png", "reconstruction.png"]}  # fmt: skip
    if res.edited is not None:
        report["files"].append(str(save(res.edited.clamp(-1, 1), "edited.png").name))
    ts = uniform_timesteps(steps, run.model.num_train_steps)
    for k in sweep_ks:
        mags = magnitudes(run.config.S, num_magnitudes)
        x = res.x_T.repeat_interleave(len(mags), dim=0)
        s = torch.tensor(mags, device=x.device).repeat(res.x_T.shape[0])
        swept = sample(run.model, x, ts, directions=directions or run.shift_block, edits=[(k, s)], t_stop=run.config.t_stop, clip_x0=True)
        report["files"].append(str(save(swept, f"sweep-{k:03d}.png", ncol=len(mags)).name))
    text = json.dumps(report, indent=2)
    atomic_write(out_dir / "report.json", lambda tmp: Path(tmp).write_text(text))
    return out_dir, report
