"""The editing app's logic without a web framework: page state -> edits -> images, and the code that reproduces them.

``hspace app`` (``app.py``) is Gradio glue around ``Editor.update``; everything it shows is computed
here, so that it is tested in plain Python. Exactness: the edited image is ``hspace.sample`` with the
page's edits as one list ``[(k, s), ...]`` in increasing k (h_hat = h + sum_i s_i f(h, k_i)), from x_T of
batch 1, as ``hspace edit`` and the shown Python call compute it.

What stays fixed while sliders move is cached: x_T (the DDIM inversion of an uploaded or shipped
image), the unedited chain, the last edits' images and each direction's sweep strip. The edited chain
itself cannot be reused across edits: from its first step on, its x_t (and so every encoder pass)
depends on the edits (``bench/app_latency.py`` measures what is left).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import shlex
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from .metrics import reconstruction_error
from .run import Run
from .sampling import invert, magnitudes, sample, seed_noise
from .schedule import uniform_timesteps
from .viz import to_uint8

SourceKind = Literal["seed", "digit", "upload"]
SOURCE_KINDS: tuple[SourceKind, ...] = ("seed", "digit", "upload")
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_PIXELS = 4096 * 4096  # decoded size; larger files are refused before decoding
# PIL modes of greyscale or colour images (with or without alpha); anything else (CMYK, LAB, HSV,
# multi-band) has channels that are not the model's.
IMAGE_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L", "F"}
# Inverting real images: the paper's 100 steps cost about 2 s an update on 2 cores for the default
# model; 50 keep an update near 1 s at a reconstruction PSNR of 27 dB on held-out digits (31 at 100).
DEFAULT_INVERSION_STEPS = 50
SWEEP_COLUMNS = 9
DISPLAY_MIN_PX = 256  # small images are enlarged (nearest, an integer factor) to at least this size
CACHE_ENTRIES = 32


class PageError(ValueError):
    """Bad input from the page: shown there as a message; the server keeps running."""


# ---------------------------------------------------------------- the page's state


@dataclass(frozen=True)
class Source:
    """Where the unedited image comes from: a seed, a held-out shipped digit, or an uploaded file."""

    kind: SourceKind = "seed"
    seed: int = 0
    digit: int = 0
    path: str | None = None  # an upload, inside the app's temporary folder
    name: str | None = None  # the upload's own file name, for the command text

    @property
    def inverted(self) -> bool:
        return self.kind != "seed"


@dataclass(frozen=True)
class PageState:
    """Everything the page sends: the source, the advanced settings and one slider value per direction k."""

    source: Source
    steps: int
    t_stop: int
    sliders: tuple[float, ...]  # indexed by direction k
    last_moved: int | None = None  # the direction of the sweep strip


@dataclass
class PageView:
    """Everything the page shows; images are uint8 [H x W x C], enlarged for display."""

    original: np.ndarray | None = None
    edited: np.ndarray | None = None
    sweep: np.ndarray | None = None
    message: str = ""
    command: str = ""
    python: str = ""
    download: Path | None = None
    edits: list[tuple[int, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Prepared:
    """A source made ready for editing: x_T [1 x C x H x W], the unedited chain's x0 and, for images, the input."""

    x_T: torch.Tensor
    original: torch.Tensor
    image: torch.Tensor | None
    reconstruction_error: dict[str, float] | None


# ---------------------------------------------------------------- helpers


class LRU:
    """A small least-recently-used cache of computed tensors."""

    def __init__(self, size: int = CACHE_ENTRIES):
        self.size = size
        self.items: OrderedDict[Hashable, object] = OrderedDict()

    def get(self, key: Hashable, compute: Callable[[], object]) -> object:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = compute()
        self.items[key] = value
        if len(self.items) > self.size:
            self.items.popitem(last=False)
        return value


def read_ranking(folder: str | Path, K: int) -> list[int] | None:
    """The directions in the order ``hspace evaluate`` ranked them, if the run folder holds an evaluation.

    Reads ``eval/results.json`` (a ``"ranking"`` list) where there is one, else the ranking table of
    ``eval/report.md`` (``| rank | k | ...``). Directions the ranking leaves out follow in index order.
    """
    folder = Path(folder) / "eval"
    ranking: list[int] = []
    results = folder / "results.json"
    report = folder / "report.md"
    if results.is_file():
        try:
            ranking = [int(k) for k in json.loads(results.read_text()).get("ranking", [])]
        except (ValueError, TypeError, AttributeError):
            ranking = []
    if not ranking and report.is_file():
        _, header, table = report.read_text().partition("| rank | k |")
        rows = re.findall(r"^\|\s*\d+\s*\|\s*(\d+)\s*\|", table, flags=re.MULTILINE) if header else []
        ranking = [int(k) for k in rows]
    ranking = list(dict.fromkeys(k for k in ranking if 0 <= k < K))
    if not ranking:
        return None
    return ranking + [k for k in range(K) if k not in ranking]


def pixels(x: torch.Tensor) -> np.ndarray:
    """One image [1 x C x H x W] in [-1, 1] -> uint8 [H x W] (grey) or [H x W x 3], as a PNG stores it."""
    img = to_uint8(x)[0]
    return img[..., 0] if img.shape[-1] == 1 else img


def enlarge(x: torch.Tensor, min_px: int = DISPLAY_MIN_PX) -> np.ndarray:
    """``pixels(x)`` enlarged by a whole factor (nearest), to at least ``min_px`` px: every pixel a square block."""
    img = pixels(x)
    factor = max(1, -(-min_px // img.shape[0]))
    return img.repeat(factor, axis=0).repeat(factor, axis=1)


def strip(x: torch.Tensor, gap: int = 2, min_px: int = 96) -> np.ndarray:
    """Images [n x C x H x W] side by side, each enlarged, with white gaps."""
    cells = [enlarge(x[i : i + 1], min_px) for i in range(x.shape[0])]
    white = np.full((cells[0].shape[0], gap, *cells[0].shape[2:]), 255, dtype=np.uint8)
    parts = [part for cell in cells for part in (cell, white)][:-1]
    return np.concatenate(parts, axis=1)


def check_upload(path: str | Path, allowed_root: str | Path, max_bytes: int = MAX_UPLOAD_BYTES) -> Path:
    """An uploaded file the app may read: inside its temporary folder, an image, not too large, with
    greyscale or colour channels. Raises ``PageError`` naming what to upload instead."""
    path = Path(path).resolve()
    if not path.is_relative_to(Path(allowed_root).resolve()):
        raise PageError("that file is not an upload of this page: upload the image again")
    if not path.is_file():
        raise PageError("the upload is gone (the app restarted?): upload the image again")
    size = path.stat().st_size
    if size > max_bytes:
        raise PageError(f"{path.name} is {size / 2**20:.1f} MB: upload an image of at most {max_bytes / 2**20:.0f} MB")
    try:
        with Image.open(path) as im:
            width, height, mode, bands = im.width, im.height, im.mode, len(im.getbands())
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise PageError(
            f"{path.name} is not an image PIL can read: upload a PNG, JPEG, BMP, GIF, TIFF or WebP"
        ) from None
    if width * height > MAX_UPLOAD_PIXELS:
        raise PageError(
            f"{path.name} is {width} x {height} px: upload an image of at most {MAX_UPLOAD_PIXELS:,} pixels"
        )
    if mode not in IMAGE_MODES:
        raise PageError(f"{path.name} has {bands} channels ({mode}): upload a greyscale or RGB(A) image")
    return path


# ---------------------------------------------------------------- the editor


class Editor:
    """A run, ready to edit with from a page: one per app, shared by its sessions (calls are serialised)."""

    def __init__(self, run: Run, temp_dir: str | Path, run_ref: str | None = None):
        self.run = run
        self.run_ref = run_ref or run.name
        self.temp_dir = Path(temp_dir)
        self.labels = run.labels()
        ranking = read_ranking(run.folder, run.config.K)
        self.ranked = ranking is not None  # ordered by ``hspace evaluate``'s ranking, else by index
        self.order = ranking or list(range(run.config.K))
        self._prepared = LRU(8)
        self._edited = LRU()
        self._sweeps = LRU()
        self._lock = threading.Lock()

    # ------------------------------------------------ what the page is made of

    @property
    def S(self) -> float:
        return float(self.run.config.S)

    @property
    def K(self) -> int:
        return self.run.config.K

    def slider_label(self, k: int) -> str:
        """'direction 3: thickness', or 'direction 3' without a label."""
        name = self.labels.get(k)
        return f"direction {k}: {name}" if name else f"direction {k}"

    def default_steps(self, kind: SourceKind) -> int:
        """The run's own chain for generated samples; ``DEFAULT_INVERSION_STEPS`` for images."""
        return self.run.config.M if kind == "seed" else DEFAULT_INVERSION_STEPS

    @functools.cached_property
    def num_digits(self) -> int:
        """How many held-out shipped digits there are (``mnist:0`` .. ``mnist:N-1``)."""
        from .data import load_mnist

        return len(load_mnist("heldout", self.run.model.image_size)[1])

    # ------------------------------------------------ state -> edits

    def edits(self, sliders: Sequence[float]) -> list[tuple[int, float]]:
        """The non-zero sliders as ``[(k, s), ...]`` in increasing k; s checked to lie in [-S, S]."""
        if len(sliders) != self.K:
            raise PageError(f"expected {self.K} slider values, got {len(sliders)}: reload the page")
        edits = []
        for k, value in enumerate(sliders):
            s = float(value or 0.0)
            if not math.isfinite(s) or abs(s) > self.S:
                raise PageError(f"direction {k}: magnitude {value} is outside [-{self.S:g}, {self.S:g}]")
            if s != 0.0:
                edits.append((k, s))
        return edits

    def check(self, state: PageState) -> None:
        """Settings the chain needs, checked before any computing."""
        T = self.run.model.num_train_steps
        if not 1 <= state.steps <= T:
            raise PageError(f"steps {state.steps}: choose 1 to {T}")
        if not 0 <= state.t_stop < T:
            raise PageError(f"t_stop {state.t_stop}: choose 0 to {T - 1}")
        if state.last_moved is not None and not 0 <= state.last_moved < self.K:
            raise PageError(f"direction {state.last_moved} out of range 0..{self.K - 1}")
        if state.source.kind not in SOURCE_KINDS:
            raise PageError(f"unknown source {state.source.kind!r}: choose one of {', '.join(SOURCE_KINDS)}")
        if not 0 <= state.source.seed < 2**63:
            raise PageError(f"seed {state.source.seed}: choose 0 to {2**63 - 1}")
        if state.source.kind == "digit" and not 0 <= state.source.digit < self.num_digits:
            raise PageError(f"digit {state.source.digit}: the shipped held-out digits run 0..{self.num_digits - 1}")
        if state.source.kind == "upload" and not state.source.path:
            raise PageError("upload an image first (PNG, JPEG, ...), or pick a seed or a shipped digit")

    # ------------------------------------------------ edits -> images

    def timesteps(self, steps: int) -> list[int]:
        return uniform_timesteps(steps, self.run.model.num_train_steps)

    def source_image(self, source: Source) -> torch.Tensor:
        """The image to invert [1 x C x H x W], loaded as ``hspace edit --image`` loads it."""
        from .data import load_images

        model = self.run.model
        if source.kind == "digit":
            return load_images(f"mnist:{source.digit}", model.image_size, model.in_channels)
        path = check_upload(source.path, self.temp_dir)
        try:
            return load_images(path, model.image_size, model.in_channels)
        except ValueError as e:
            raise PageError(f"{source.name or path.name}: {e}") from None

    def prepare(self, source: Source, steps: int) -> Prepared:
        """x_T and the unedited chain for a source, cached: the inversion runs once per image and step count."""
        return self._prepared.get((source, steps), lambda: self._prepare(source, steps))

    def _prepare(self, source: Source, steps: int) -> Prepared:
        model = self.run.model
        ts = self.timesteps(steps)
        device = self.run.device
        if not source.inverted:
            x_T = seed_noise([source.seed], model.in_channels, model.image_size).to(device)  # as `edit --image seed:N`
            return Prepared(x_T, sample(model, x_T, ts), None, None)
        image = self.source_image(source).to(device)
        x_T = invert(model, image, ts)
        reconstruction = sample(model, x_T, ts)
        error = reconstruction_error(reconstruction, image)
        return Prepared(x_T, reconstruction, image, error)

    def edited(self, source: Source, steps: int, t_stop: int, edits: list[tuple[int, float]]) -> torch.Tensor:
        """x~0 [1 x C x H x W] for the edits: ``hspace.sample`` with h_hat = h + sum_i s_i f_t(h, k_i) while t >= t_stop."""
        prepared = self.prepare(source, steps)
        if not edits:
            return prepared.original
        return self._edited.get(
            (source, steps, t_stop, tuple(edits)), lambda: self._sample(prepared, steps, t_stop, edits)
        )

    def _sample(self, prepared: Prepared, steps: int, t_stop: int, edits: list[tuple[int, float]]) -> torch.Tensor:
        block, chain = self.run.shift_block, self.timesteps(steps)
        per_step = self.run.scaled_edits(edits, chain)  # s as on the run's own chain, whatever the step count
        return sample(self.run.model, prepared.x_T, chain, directions=block, edits=per_step, t_stop=t_stop)

    def sweep(self, source: Source, steps: int, t_stop: int, k: int) -> torch.Tensor:
        """Direction k alone from -S to S [n x C x H x W]: the row ``hspace edit --sweep K`` draws."""
        return self._sweeps.get(
            (source, steps, t_stop, k), lambda: self._sweep(self.prepare(source, steps), steps, t_stop, k)
        )

    def _sweep(self, prepared: Prepared, steps: int, t_stop: int, k: int) -> torch.Tensor:
        mags = magnitudes(self.S, SWEEP_COLUMNS)
        return self.run.sweep(k, prepared.x_T, mags, self.timesteps(steps), t_stop=t_stop)[0]

    def save_png(self, x: torch.Tensor) -> Path:
        """x [1 x C x H x W] as a PNG at the model's resolution in the temporary folder, named by its content."""
        img = pixels(x)
        path = self.temp_dir / "downloads" / f"edited-{hashlib.sha256(img.tobytes()).hexdigest()[:12]}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            Image.fromarray(img).save(path, format="PNG")
        return path

    # ------------------------------------------------ the whole page

    def update(self, state: PageState, with_sweep: bool = False) -> PageView:
        """The page for a state; bad input gives a view with only a message."""
        try:
            self.check(state)
            edits = self.edits(state.sliders)
            with self._lock:
                prepared = self.prepare(state.source, state.steps)
                edited = self.edited(state.source, state.steps, state.t_stop, edits)
                swept = None
                if with_sweep and state.last_moved is not None:
                    swept = self.sweep(state.source, state.steps, state.t_stop, state.last_moved)
        except PageError as e:
            return PageView(message=f"**Cannot edit:** {e}")
        return PageView(
            original=enlarge(prepared.original),
            edited=enlarge(edited),
            sweep=None if swept is None else strip(swept),
            message=self.describe(state, prepared, edits),
            command=self.command(state, edits),
            python=self.python_call(state, edits),
            download=self.save_png(edited),
            edits=edits,
        )

    def describe(self, state: PageState, prepared: Prepared, edits: list[tuple[int, float]]) -> str:
        """One line on what is shown: the source, the chain, the edits and the inversion's error."""
        what = {
            "seed": f"generated from seed {state.source.seed}",
            "digit": f"held-out digit {state.source.digit}",
            "upload": f"your image {state.source.name or ''}".rstrip(),
        }[state.source.kind]
        text = f"{what}, {state.steps} DDIM steps, shifts while t >= {state.t_stop}"
        text += "; edits: " + (", ".join(f"{self.slider_label(k)} s = {s:g}" for k, s in edits) if edits else "none")
        if prepared.reconstruction_error is not None:
            err = prepared.reconstruction_error
            text += f". Inversion reconstruction error: MAE {err['mae']:.4f}, PSNR {err['psnr_db']:.1f} dB"
        return text + "."

    # ------------------------------------------------ the code that reproduces the edited image

    def command(self, state: PageState, edits: list[tuple[int, float]]) -> str:
        """The ``hspace edit`` command whose ``edited.png`` is this image."""
        image = {
            "seed": f"seed:{state.source.seed}",
            "digit": f"mnist:{state.source.digit}",
            "upload": state.source.name or "IMAGE",
        }[state.source.kind]
        words = ["hspace", "edit", self.run_ref, "--image", image, "--inversion-steps", str(state.steps)]
        if state.t_stop != self.run.config.t_stop:
            words += ["--t-stop", str(state.t_stop)]
        for k, s in edits:
            words += ["--edit", f"{k}:{s!r}"]
        return shlex.join(words)

    def python_call(self, state: PageState, edits: list[tuple[int, float]]) -> str:
        """Python that computes this very image as ``edited`` [1 x C x H x W] in [-1, 1]."""
        model = self.run.model
        source = state.source
        lines = ["import torch", "import hspace", "from hspace.run import load_run", ""]
        lines.append(f"run = load_run({self.run_ref!r})")
        lines.append(f"timesteps = hspace.uniform_timesteps({state.steps}, run.model.num_train_steps)")
        if source.kind == "seed":
            shape = f"1, {model.in_channels}, {model.image_size}, {model.image_size}"
            lines.append(f"x_T = torch.randn({shape}, generator=torch.Generator().manual_seed({source.seed}))")
        else:
            image = f"mnist:{source.digit}" if source.kind == "digit" else (source.name or "IMAGE")
            lines.insert(3, "from hspace.data import load_images")
            lines.append(f"x0 = load_images({image!r}, run.model.image_size, run.model.in_channels)")
            lines.append("x_T = hspace.invert(run.model, x0, timesteps)  # DDIM inversion")
        lines.append(f"edits = {edits!r}  # (k, s): h_hat = h + sum_i s_i f(h, k_i)")
        lines.append("per_step = run.scaled_edits(edits, timesteps)  # s as on the run's own chain")
        lines.append(
            f"edited = hspace.sample(run.model, x_T, timesteps, directions=run.shift_block, edits=per_step, t_stop={state.t_stop})"
        )
        return "\n".join(lines)
