"""The diffusers backend: a ``diffusers.UNet2DModel`` split at its middle block (``pip install 'hspace[diffusers]'``).

diffusers is an optional extra, so it is only imported inside functions.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..schedule import linear_alphas_cumprod
from .base import EncoderState, HSpaceModel

SCHEDULER_CONFIG = "scheduler_config.json"


def _require_diffusers():
    """The diffusers module, or an ImportError saying how to install the extra."""
    try:
        import diffusers
    except ImportError as e:
        raise ImportError("the diffusers backend needs diffusers: pip install 'hspace[diffusers]'") from e
    return diffusers


def _encode(unet: nn.Module, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None):
    """UNet2DModel.forward up to and including the mid block: ``(h, emb, skips, t [N])``."""
    if unet.config.center_input_sample:
        x = 2 * x - 1.0
    t = torch.as_tensor(t, device=x.device)
    t = t[None] if t.ndim == 0 else t
    t = t * torch.ones(x.shape[0], dtype=t.dtype, device=t.device)  # broadcast to the batch, as forward does
    emb = unet.time_embedding(unet.time_proj(t).to(dtype=unet.dtype))
    if unet.class_embedding is not None:
        if class_labels is None:
            raise ValueError("class-conditional model: set model.class_labels to a class index tensor first")
        labels = class_labels.to(x.device)
        if labels.ndim == 0:
            labels = labels.expand(x.shape[0])
        if unet.config.class_embed_type == "timestep":
            labels = unet.time_proj(labels)
        emb = emb + unet.class_embedding(labels).to(dtype=unet.dtype)
    skip_sample = x
    h = unet.conv_in(x)
    skips = (h,)
    for block in unet.down_blocks:
        if hasattr(block, "skip_conv"):  # Skip blocks also carry a downsampled image (unused by the up path)
            h, res, skip_sample = block(hidden_states=h, temb=emb, skip_sample=skip_sample)
        else:
            h, res = block(hidden_states=h, temb=emb)
        skips += res
    if unet.mid_block is not None:
        h = unet.mid_block(h, emb)
    return h, emb, skips, t


class DiffusersEncoder(nn.Module):
    """The UNet's conv_in, down blocks and mid block at t = 0: ``x [N x C x H x W] -> h``."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        return _encode(self.unet, x, t, None)[0]


class DiffusersUNet(HSpaceModel):
    """A frozen ``diffusers.UNet2DModel`` (eps-prediction) as an h-space model; ``self.unet`` holds it."""

    backend = "diffusers"

    def __init__(self, unet: nn.Module, alphas_cumprod: torch.Tensor | None = None):
        diffusers = _require_diffusers()
        if not isinstance(unet, diffusers.UNet2DModel):
            raise ValueError(f"expected a diffusers.UNet2DModel, got {type(unet).__name__}")
        cfg = unet.config
        if cfg.time_embedding_type not in ("positional", "learned"):
            raise ValueError(
                f"time_embedding_type={cfg.time_embedding_type!r} is not supported: score-SDE models take noise "
                "levels sigma, not DDPM timesteps; hspace needs an eps-prediction UNet ('positional' or 'learned')"
            )
        if cfg.out_channels not in (cfg.in_channels, 2 * cfg.in_channels):
            raise ValueError(
                f"out_channels={cfg.out_channels} with in_channels={cfg.in_channels}: an eps-prediction UNet "
                "outputs in_channels (or 2 * in_channels when it learns sigma)"
            )
        if cfg.sample_size is None:
            raise ValueError("the UNet's config has no sample_size: set unet.config.sample_size to the image size")
        super().__init__(linear_alphas_cumprod(1000) if alphas_cumprod is None else alphas_cumprod)
        self.unet = unet
        size = cfg.sample_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.in_channels = int(cfg.in_channels)
        self.h_channels = int(cfg.block_out_channels[-1])
        self.emb_channels = int(unet.time_embedding.linear_2.out_features)
        self.class_labels: torch.Tensor | None = None  # set for class-conditional models
        self.freeze()

    def encode(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, EncoderState]:
        """Time (+ class) embedding, conv_in, down blocks (collecting skips) and the mid block."""
        h, emb, skips, t = _encode(self.unet, x, t, self.class_labels)
        return h, EncoderState(emb=emb, skips=tuple(skips), t=t)

    def decode(self, h: torch.Tensor, state: EncoderState) -> torch.Tensor:
        """Up blocks consuming the skips, then the output head; eps is the first C channels."""
        unet, skips, emb = self.unet, state.skips, state.emb
        skip_sample = None
        for block in unet.up_blocks:
            res, skips = skips[-len(block.resnets) :], skips[: -len(block.resnets)]
            if hasattr(block, "skip_conv"):
                h, skip_sample = block(h, res, emb, skip_sample)
            else:
                h = block(h, res, emb)
        out = unet.conv_out(unet.conv_act(unet.conv_norm_out(h)))
        if skip_sample is not None:
            out = out + skip_sample
        return out[:, : self.in_channels]  # learned sigma: eps is the first C channels

    def make_encoder(self, pretrained: bool) -> nn.Module:
        """A trainable copy of conv_in + down blocks + mid block (fresh seeded weights unless pretrained)."""
        unet = copy.deepcopy(self.unet)
        if not pretrained:
            with torch.random.fork_rng():
                torch.manual_seed(0)
                fresh = _require_diffusers().UNet2DModel.from_config(self.unet.config)
            unet.load_state_dict(fresh.state_dict())  # copies into the model's own dtype and device
        unet.up_blocks = unet.conv_norm_out = unet.conv_act = unet.conv_out = None
        unet.class_embedding = None  # the encoder is unconditional
        return DiffusersEncoder(unet).train().requires_grad_(True)

    def describe(self) -> dict:
        """``{"backend": "diffusers", "config": <the UNet's config, JSON-able>}``."""
        return {"backend": self.backend, "config": _jsonable(dict(self.unet.config))}


def _jsonable(v: Any) -> Any:
    """Tuples to lists, recursively (diffusers configs hold tuples)."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    return v


def alphas_cumprod_from_scheduler(cfg: dict, source: str = "scheduler config") -> torch.Tensor:
    """abar [T] (float64) from a diffusers DDPM/DDIM-style scheduler config (diffusers' defaults when unset)."""
    if cfg.get("prediction_type", "epsilon") != "epsilon":
        raise ValueError(
            f"{source}: prediction_type={cfg['prediction_type']!r} is not supported: hspace needs an "
            "eps-prediction model (prediction_type='epsilon')"
        )
    if cfg.get("rescale_betas_zero_snr"):
        raise ValueError(f"{source}: rescale_betas_zero_snr=True (abar_T = 0) is not supported with eps-prediction")
    if cfg.get("trained_betas") is None and "beta_schedule" not in cfg:
        raise ValueError(f"{source} has no beta_schedule: not a DDPM-style scheduler ({cfg.get('_class_name')})")
    n = int(cfg.get("num_train_timesteps", 1000))
    start, end = float(cfg.get("beta_start", 1e-4)), float(cfg.get("beta_end", 0.02))
    schedule = cfg.get("beta_schedule", "linear")
    if cfg.get("trained_betas") is not None:
        betas = torch.tensor(cfg["trained_betas"], dtype=torch.float64)
    elif schedule == "linear":
        return linear_alphas_cumprod(n, start, end)
    elif schedule == "scaled_linear":
        betas = torch.linspace(start**0.5, end**0.5, n, dtype=torch.float64) ** 2
    elif schedule == "squaredcos_cap_v2":
        abar = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = torch.tensor([min(1 - abar((i + 1) / n) / abar(i / n), 0.999) for i in range(n)], dtype=torch.float64)
    else:
        raise ValueError(
            f"{source}: beta_schedule={schedule!r} is not supported: "
            "use 'linear', 'scaled_linear' or 'squaredcos_cap_v2'"
        )
    return torch.cumprod(1.0 - betas, dim=0)


def _find_scheduler_config(root: Path, unet_dir: Path) -> Path | None:
    """scheduler_config.json beside the UNet's config, in a sibling or child ``scheduler/``, or in ``root``."""
    candidates = [
        unet_dir / SCHEDULER_CONFIG,
        unet_dir.parent / "scheduler" / SCHEDULER_CONFIG,
        root / "scheduler" / SCHEDULER_CONFIG,
        root / SCHEDULER_CONFIG,
    ]
    return next((p for p in candidates if p.is_file()), None)


def load_diffusers(source: Any) -> DiffusersUNet:
    """A frozen DiffusersUNet from an in-memory UNet2DModel, or a local UNet / pipeline folder (never downloads)."""
    diffusers = _require_diffusers()
    if isinstance(source, diffusers.UNet2DModel):
        return DiffusersUNet(source)
    root = Path(source)
    if not root.is_dir():
        raise ValueError(f"{root} is not a local folder (hspace never downloads models: save_pretrained it first)")
    unet_dir = root if (root / "config.json").is_file() else root / "unet"
    config_path = unet_dir / "config.json"
    if not config_path.is_file():
        raise ValueError(
            f"{root} is not a diffusers UNet folder: it has no config.json (nor unet/config.json); "
            "save one with unet.save_pretrained(folder)"
        )
    config = json.loads(config_path.read_text())
    name = config.get("_class_name", "UNet2DModel")
    if name != "UNet2DModel":
        raise ValueError(f"{config_path} describes a {name}: only unconditional diffusers UNet2DModel is supported")
    try:
        unet = diffusers.UNet2DModel.from_pretrained(unet_dir, local_files_only=True)
    except OSError as e:
        raise ValueError(f"{unet_dir} could not be loaded as a UNet2DModel: {e}") from None
    sched_path = _find_scheduler_config(root, unet_dir)
    if sched_path is None:
        return DiffusersUNet(unet)
    abar = alphas_cumprod_from_scheduler(json.loads(sched_path.read_text()), str(sched_path))
    return DiffusersUNet(unet, abar)
