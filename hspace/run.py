"""What a discovery run folder is: its trained parts, model reference, labels, directions and loading.

Layout: ``config.json`` (readable copy), ``shift_block.safetensors``, ``reconstructor.safetensors``,
``discriminator.safetensors`` (each with the resolved config, hspace version and model source in
metadata), ``checkpoint.pt`` (optimisers and RNG, for ``--resume``), ``log.csv``, ``grids/``,
``labels.json`` (names of directions, written by ``hspace label``).

The front ends (``show``, ``edit``, ``mos``, ``evaluate``, ``export``) read runs through this module only.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .artifacts import atomic_write, load_tensors, save_tensors
from .backends import HSpaceModel
from .config import DiscoveryConfig
from .directions import ShiftBlock
from .models import load_model
from .nets import Discriminator
from .sampling import Directions, direction_sweep
from .schedule import uniform_timesteps

PARTS = ("shift_block", "reconstructor", "discriminator")
KIND = "hspace-{}"
LABELS = "labels.json"

# model reference


def model_fingerprint(model: HSpaceModel) -> str:
    """A short hash of the frozen weights: a run only applies to the model it was trained on."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().to(torch.float32).cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def model_reference(source, model: HSpaceModel) -> dict:
    """How to reopen the model: its source (preset name or absolute path), identity and fingerprint."""
    src = str(source)
    if Path(src).exists():
        src = str(Path(src).resolve())
    return {"source": src, "fingerprint": model_fingerprint(model), **model.describe()}


# device


def resolve_device(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``, checked against this machine before any work starts."""
    text = str(text).strip().lower()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = text.partition(":")
    if kind == "cpu" and not index:
        return "cpu"
    if kind != "cuda" or (index and not index.isdigit()):
        raise ValueError(f"--device {text}: give cpu, cuda, cuda:N or auto")
    if not torch.cuda.is_available():
        raise ValueError(f"--device {text}: CUDA is not available on this machine; use --device cpu")
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        raise ValueError(f"--device {text}: this machine has {count} CUDA device(s): give cuda:0..cuda:{count - 1}")
    return text


# shipped runs


def shipped_run_folder(name: str | Path) -> Path | None:
    """The folder of a run shipped inside the package, by name (``default``); None for anything else."""
    from .presets import SHIPPED_RUNS

    return SHIPPED_RUNS.get(str(name))


def shipped_run_name(folder: str | Path) -> str | None:
    """The name of the shipped run living in ``folder``, or None: shipped runs are named, not pathed."""
    from .presets import SHIPPED_RUNS

    resolved = Path(folder).resolve()
    return next((name for name, path in SHIPPED_RUNS.items() if Path(path).resolve() == resolved), None)


# direction lists

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_indices(text: str, what: str = "direction") -> list[int]:
    """'0-7', '0,3,5' or '0-3,8' -> indices in the given order, duplicates dropped."""
    out: list[int] = []
    for part in str(text).split(","):
        if not part.strip():
            continue
        m = _RANGE.match(part)
        if m is None:
            raise ValueError(f"bad {what} list {text!r}: write indices like 0-7, 0,3,5 or 0-3,8")
        lo, hi = int(m[1]), int(m[2] or m[1])
        if hi < lo:
            raise ValueError(f"bad {what} range {part.strip()!r} in {text!r}: write the smaller index first")
        out.extend(range(lo, hi + 1))
    if not out:
        raise ValueError(f"no {what}s in {text!r}: give at least one, e.g. 0-7")
    return list(dict.fromkeys(out))


def format_indices(ks: Sequence[int]) -> str:
    """[0, 1, 2, 3, 8] -> '0-3,8' (the inverse of ``parse_indices``)."""
    parts: list[str] = []
    for k in ks:
        if parts and parts[-1].split("-")[-1] == str(k - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{k}"
        else:
            parts.append(str(k))
    return ",".join(parts)


def check_direction(k: int, K: int) -> int:
    """k unchanged, or a ValueError naming the run's range."""
    if not 0 <= k < K:
        raise ValueError(f"direction {k} out of range: this run has K={K} directions (0..{K - 1})")
    return k


def check_directions(ks: Sequence[int], K: int) -> list[int]:
    """The indices unchanged, or a ValueError naming the run's range."""
    return [check_direction(k, K) for k in ks]


# labels


def read_labels(folder: str | Path) -> dict[int, str]:
    """Names of directions from ``labels.json`` ({"k": "name"}) in the run folder, if there is one."""
    path = Path(folder) / LABELS
    if not path.exists():
        return {}
    try:
        return {int(k): str(v) for k, v in json.loads(path.read_text()).items()}
    except (ValueError, AttributeError) as e:
        raise ValueError(f'{path} should map direction indices to names, like {{"3": "thick"}} ({e})') from None


def write_label(folder: str | Path, k: int, name: str, K: int) -> Path:
    """Name direction k of a run (``hspace label``); names are unique and not numbers."""
    check_direction(k, K)
    if not name.strip() or _is_number(name) or ":" in name:
        raise ValueError(f"label {name!r}: use a word such as 'thickness' (no ':' and not a number)")
    labels = read_labels(folder)
    taken = {v: i for i, v in labels.items()}
    if name in taken and taken[name] != k:
        raise ValueError(f"label {name!r} already names direction {taken[name]}: pick another name")
    labels[k] = name
    text = json.dumps({str(i): v for i, v in sorted(labels.items())}, indent=2)
    return atomic_write(Path(folder) / LABELS, lambda tmp: Path(tmp).write_text(text))


def _is_number(text: str) -> bool:
    """Whether text reads as a number (1, -2.5, 1e3, inf, nan): such a label could not be told from an index."""
    try:
        float(text)
    except ValueError:
        return False
    return True


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
    return check_direction(k, K)


def parse_edit(text: str, labels: dict[int, str], K: int) -> tuple[int, float]:
    """``K:S`` or ``name:S`` -> (k, s)."""
    token, sep, magnitude = text.rpartition(":")
    if not sep or not token:
        raise ValueError(f"edit {text!r}: write DIRECTION:MAGNITUDE, e.g. 3:2.5 or thickness:-2")
    try:
        s = float(magnitude)
    except ValueError:
        raise ValueError(f"edit {text!r}: the magnitude {magnitude!r} is not a number") from None
    if not abs(s) < float("inf"):
        raise ValueError(f"edit {text!r}: give a finite magnitude, e.g. 2.5")
    return resolve_direction(token, labels, K), s


# the run folder


def save_parts(folder: Path, modules, cfg: DiscoveryConfig, model_ref: dict, step: int, **extra) -> None:
    """Write each trained part atomically; ``config.json`` last, as the run's table of contents
    (``extra``: more JSON fields for it and the parts' metadata)."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = dict(config=cfg.to_dict(), model=model_ref, step=step, **extra)
    for part in PARTS:
        save_tensors(folder / f"{part}.safetensors", getattr(modules, part).state_dict(), KIND.format(part), **meta)
    text = json.dumps(meta, indent=2)
    atomic_write(folder / "config.json", lambda tmp: Path(tmp).write_text(text))


@dataclass
class Run:
    """Directions discovered on a model: what ``show``, ``edit``, ``mos``, ``evaluate`` and ``export`` need."""

    folder: Path
    model: HSpaceModel
    shift_block: ShiftBlock
    config: DiscoveryConfig
    step: int
    model_ref: dict = field(default_factory=dict)  # source, fingerprint, backend (``model_reference``)

    @property
    def timesteps(self) -> list[int]:
        """The generative chain tau_M > ... > tau_1 the run was trained on."""
        return uniform_timesteps(self.config.M, self.model.num_train_steps)

    @property
    def shifted_timesteps(self) -> list[int]:
        """The chain's steps in the shifting interval t >= t_stop."""
        return [t for t in self.timesteps if t >= self.config.t_stop]

    def shift_scale(self, timesteps: Sequence[int]) -> float:
        """What one step of another chain applies of a shift s: M / len(timesteps).

        A shift is added at every step while t >= t_stop, so its effect on x0 adds up over the steps:
        directions trained on an M-step chain and applied at s on every step of a longer chain over-apply
        (on the default run, 100 steps gave 1.7-3.4x the 10-step edit's size, clipped images a blob;
        docs/default-evaluation.md). s means "per step of the run's own chain"; a chain of N steps
        applies s * M / N on each of its steps.
        """
        return self.config.M / len(timesteps)

    def scaled_edits(self, edits: Sequence[tuple[int, float]], timesteps: Sequence[int]) -> list[tuple[int, float]]:
        """``edits`` [(k, s)] with s per step of ``timesteps`` (``shift_scale``), for ``hspace.sample``."""
        scale = self.shift_scale(timesteps)
        return [(k, s * scale) for k, s in edits]

    @property
    def device(self) -> torch.device:
        return next(self.shift_block.parameters()).device

    @property
    def name(self) -> str:
        """A shipped run's name (not its path inside the installed package), else its folder."""
        return shipped_run_name(self.folder) or str(self.folder)

    @property
    def shipped(self) -> bool:
        return shipped_run_name(self.folder) is not None

    def labels(self) -> dict[int, str]:
        return read_labels(self.folder)

    def direction(self, token: str) -> int:
        """A direction of this run by index or label."""
        return resolve_direction(str(token), self.labels(), self.config.K)

    def sweep(
        self,
        k: int,
        x_T: torch.Tensor,
        mags: Sequence[float],
        timesteps: Sequence[int] | None = None,
        directions: Directions | None = None,
        t_stop: int | None = None,
        scale_to_chain: bool = True,
    ) -> torch.Tensor:
        """Direction k from each x_T [R x C x H x W] at each magnitude: [R x n x C x H x W].

        ``timesteps``: another chain than the run's (``edit`` inverts with its own), on which each
        magnitude applies as on the run's chain (``shift_scale``; ``scale_to_chain=False``: as given on
        every step); ``directions``: exported global directions instead of the shift block;
        ``t_stop``: another than the run's.
        """
        chain = self.timesteps if timesteps is None else timesteps
        block = self.shift_block if directions is None else directions
        t_stop = self.config.t_stop if t_stop is None else t_stop
        scale = self.shift_scale(chain) if scale_to_chain else 1.0
        return direction_sweep(self.model, block, chain, t_stop, k, x_T, [s * scale for s in mags])

    def load_part(self, part: str, module: torch.nn.Module) -> torch.nn.Module:
        return load_part(self.folder, part, module)

    def load_discriminator(self) -> Discriminator | None:
        """The run's trained discriminator in eval mode on the run's device; None if the run kept none."""
        if not (self.folder / "discriminator.safetensors").exists():
            return None
        m = self.model
        disc = Discriminator(m.make_encoder(pretrained=False), m.h_channels)
        return self.load_part("discriminator", disc).to(self.device).eval()


def load_part(folder: Path, part: str, module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with the weights of the run's trained ``part`` ("shift_block", "reconstructor", ...)."""
    tensors, _ = load_tensors(folder / f"{part}.safetensors", KIND.format(part))
    module.load_state_dict(tensors, strict=True)
    return module


def check_run_folder(ref: str | Path) -> Path:
    """The folder of a run reference (a folder or a shipped run's name), checked without loading anything."""
    folder = Path(shipped_run_folder(ref) or ref)
    if not (folder / "shift_block.safetensors").exists():
        raise ValueError(
            f"{ref} is not a discovery run (no shift_block.safetensors): give a folder made by `hspace discover`"
        )
    return folder


def check_init_run(ref: str | Path, cfg: DiscoveryConfig) -> Path:
    """The run a new one starts from (``--init-from``), checked to fit ``cfg`` before anything is loaded."""
    folder = check_run_folder(ref)
    saved = DiscoveryConfig.from_saved(json.loads((folder / "config.json").read_text())["config"])
    if (saved.K, saved.reconstructor) != (cfg.K, cfg.reconstructor):
        raise ValueError(
            f"--init-from {ref}: that run has K={saved.K} and a {saved.reconstructor} reconstructor, this one "
            f"K={cfg.K} and {cfg.reconstructor}: give --K {saved.K} --reconstructor {saved.reconstructor}"
        )
    return folder


def load_parts(folder: Path, modules, model_ref: dict, parts: tuple[str, ...] = PARTS) -> None:
    """A run's trained ``parts`` into ``modules``, refusing parts trained on another model."""
    trained_on = json.loads((folder / "config.json").read_text())["model"]
    if trained_on["fingerprint"] != model_ref["fingerprint"]:
        raise ValueError(
            f"--init-from {folder}: its parts were trained on another model ({trained_on['source']}, fingerprint "
            f"{trained_on['fingerprint']}); start from a run on {model_ref['source']} or pass --model {trained_on['source']}"
        )
    for part in parts:
        load_part(folder, part, getattr(modules, part))


def load_run(ref: str | Path, model: HSpaceModel | None = None, device: str | torch.device = "cpu") -> Run:
    """Open a run folder (or a shipped run's name); the model comes from the run's metadata unless given."""
    folder = check_run_folder(ref)
    tensors, meta = load_tensors(folder / "shift_block.safetensors", KIND.format("shift_block"))
    cfg = DiscoveryConfig.from_saved(meta["config"])
    model_ref = meta["model"]
    if model is None:
        try:
            model = load_model(model_ref["source"])
        except ValueError as e:
            raise ValueError(
                f"cannot reopen the run's model {model_ref['source']!r} ({e}); pass the model explicitly"
            ) from None
    if model_fingerprint(model) != model_ref["fingerprint"]:
        raise ValueError(
            f"{folder} was discovered on another model ({model_ref['source']}, fingerprint {model_ref['fingerprint']}): "
            "use the model it was trained on, or run `hspace discover` on this one"
        )
    block = ShiftBlock(model.h_channels, model.emb_channels, cfg.K, cfg.shift_norm)
    block.load_state_dict(tensors, strict=True)
    block = block.to(device).eval().requires_grad_(False)
    return Run(folder, model.to(device), block, cfg, int(meta["step"]), model_ref)
