"""The built-in ADM backend: guided-diffusion's flags, its UNet, strict loading with helpful errors."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn

from ..schedule import linear_alphas_cumprod
from .adm_unet import UNetModel
from .base import EncoderState, HSpaceModel

# guided-diffusion flags that do not change the network's function (or only how it is trained).
IGNORED_FLAGS = {
    "use_checkpoint",
    "use_fp16",
    "timestep_respacing",
    "use_kl",
    "rescale_learned_sigmas",
    "sigma_small",
    "num_samples",
    "batch_size",
    "use_ddim",
    "clip_denoised",
    "model_path",
    "classifier_scale",
    "lr",
    "weight_decay",
    "lr_anneal_steps",
    "microbatch",
    "ema_rate",
    "log_interval",
    "save_interval",
    "resume_checkpoint",
    "fp16_scale_growth",
    "schedule_sampler",
    "data_dir",
}


@dataclass(frozen=True)
class ADMConfig:
    """Architecture and schedule flags, named exactly as guided-diffusion's ``model_and_diffusion_defaults()``.

    ``in_channels`` (not a guided-diffusion flag, which hard-codes 3) allows greyscale and other images.
    """

    image_size: int = 64
    num_channels: int = 128
    num_res_blocks: int = 2
    num_heads: int = 4
    num_heads_upsample: int = -1
    num_head_channels: int = -1
    attention_resolutions: str = "16,8"
    channel_mult: str = ""
    dropout: float = 0.0
    class_cond: bool = False
    use_scale_shift_norm: bool = True
    resblock_updown: bool = False
    use_new_attention_order: bool = False
    learn_sigma: bool = False
    in_channels: int = 3
    diffusion_steps: int = 1000
    noise_schedule: str = "linear"
    predict_xstart: bool = False
    rescale_timesteps: bool = False  # feed the network t * 1000 / diffusion_steps

    @classmethod
    def from_flags(cls, flags: dict | str | None) -> ADMConfig:
        """Parse guided-diffusion flags (a dict or JSON); unknown names are an error, training-only ones ignored."""
        if flags is None:
            return cls()
        if isinstance(flags, str):
            flags = json.loads(flags)
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(k for k in flags if k not in known and k not in IGNORED_FLAGS)
        if unknown:
            raise ValueError(
                f"unknown model flag(s) {unknown}: use guided-diffusion's names ({', '.join(sorted(known))})"
            )
        values = {k: _coerce(known[k].type, k, v) for k, v in flags.items() if k in known}
        cfg = cls(**values)
        cfg.check()
        return cfg

    def check(self) -> None:
        if self.predict_xstart:
            raise ValueError("predict_xstart=True models predict x0, not eps: hspace needs an eps-prediction model")
        if self.noise_schedule != "linear":
            raise ValueError(f"noise_schedule={self.noise_schedule!r} is not supported: only 'linear' (ADM's default)")
        self.channel_multipliers()

    def channel_multipliers(self) -> tuple[float, ...]:
        """guided-diffusion's defaults per image size when ``channel_mult`` is empty."""
        if self.channel_mult:
            return tuple(float(m) if "." in m else int(m) for m in self.channel_mult.split(","))
        defaults = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}
        if self.image_size not in defaults:
            raise ValueError(
                f"image_size={self.image_size} has no default channel_mult: set channel_mult, e.g. '1,2,2,4'"
            )
        return defaults[self.image_size]

    def attention_downsamples(self) -> tuple[int, ...]:
        """Attention resolutions as downsampling factors (guided-diffusion's ``attention_ds``)."""
        res = [int(r) for r in self.attention_resolutions.split(",") if r.strip()] if self.attention_resolutions else []
        return tuple(self.image_size // r for r in res)

    def to_flags(self) -> dict:
        return dataclasses.asdict(self)

    def build_unet(self, encoder_only: bool = False) -> UNetModel:
        return UNetModel(
            image_size=self.image_size,
            in_channels=self.in_channels,
            model_channels=self.num_channels,
            out_channels=self.in_channels * (2 if self.learn_sigma else 1),
            num_res_blocks=self.num_res_blocks,
            attention_resolutions=self.attention_downsamples(),
            dropout=self.dropout,
            channel_mult=self.channel_multipliers(),
            num_classes=1000 if self.class_cond else None,
            num_heads=self.num_heads,
            num_head_channels=self.num_head_channels,
            num_heads_upsample=self.num_heads_upsample,
            use_scale_shift_norm=self.use_scale_shift_norm,
            resblock_updown=self.resblock_updown,
            use_new_attention_order=self.use_new_attention_order,
            encoder_only=encoder_only,
        )


def _coerce(kind: str, name: str, value):
    """Flag values as guided-diffusion's argparse would read them ("False" is False, 16 is "16")."""
    if kind == "bool":
        if isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"flag {name}={value!r}: expected a boolean (true/false)")
            return value.lower() in ("true", "1", "yes")
        return bool(value)
    if kind == "str":
        if isinstance(value, (list, tuple)):
            return ",".join(str(x) for x in value)
        return "" if value is None else str(value)
    return {"int": int, "float": float}[kind](value)


class ADMEncoder(nn.Module):
    """The UNet's input blocks and middle block at t = 0: ``x [N x C x H x W] -> h``."""

    def __init__(self, unet: UNetModel):
        super().__init__()
        self.unet = unet

    def forward(self, x):
        t = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        emb = self.unet.embed(t)
        h = x
        for block in self.unet.input_blocks:
            h = block(h, emb)
        return self.unet.middle_block(h, emb)


class ADMModel(HSpaceModel):
    """guided-diffusion's UNet as an h-space model; ``self.unet`` holds the weights under ADM's names."""

    backend = "adm"

    def __init__(self, config: ADMConfig, unet: UNetModel | None = None):
        scale = 1000 / config.diffusion_steps  # guided-diffusion's linear schedule scales with T
        super().__init__(linear_alphas_cumprod(config.diffusion_steps, scale * 1e-4, scale * 0.02))
        self.config = config
        self.unet = unet if unet is not None else config.build_unet()
        self.h_channels = self.unet.h_channels
        self.emb_channels = self.unet.emb_channels
        self.in_channels = config.in_channels
        self.image_size = config.image_size
        self.class_labels: torch.Tensor | None = None  # set for class-conditional models

    def encode(self, x, t):
        y = None
        if self.config.class_cond:
            if self.class_labels is None:
                raise ValueError("class-conditional model: set model.class_labels to a class index tensor first")
            y = self.class_labels.to(x.device).expand(x.shape[0]) if self.class_labels.ndim == 0 else self.class_labels
        t_in = t.float() * (1000.0 / self.config.diffusion_steps) if self.config.rescale_timesteps else t
        h, skips, emb = self.unet.encode(x, t_in, y)
        return h, EncoderState(emb=emb, skips=tuple(skips), t=t)

    def decode(self, h, state):
        out = self.unet.decode(h, state.skips, state.emb)
        return out[:, : self.in_channels]  # learned sigma: eps is the first C channels

    def make_encoder(self, pretrained: bool) -> nn.Module:
        cfg = dataclasses.replace(self.config, class_cond=False)
        unet = cfg.build_unet(encoder_only=True)
        if pretrained:
            own = {k: v for k, v in self.unet.state_dict().items() if k in unet.state_dict()}
            unet.load_state_dict(own, strict=True)
        return ADMEncoder(unet.train().requires_grad_(True))

    def describe(self) -> dict:
        return {"backend": self.backend, "flags": self.config.to_flags()}


def build_adm(flags: dict | ADMConfig | None = None, seed: int | None = 0, fill_zero_init: bool = False) -> ADMModel:
    """A randomly initialised ADM model (seeded), frozen.

    ADM zero-initialises its output layers, so an untrained UNet predicts eps = 0 whatever h is;
    ``fill_zero_init`` gives those layers small random weights instead, for benchmarks and tests
    that need eps to depend on h.
    """
    cfg = flags if isinstance(flags, ADMConfig) else ADMConfig.from_flags(flags)
    with torch.random.fork_rng(enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        model = ADMModel(cfg)
        if fill_zero_init:
            fill_zero_init_(model)
        return model.freeze()


@torch.no_grad()
def fill_zero_init_(module: nn.Module, std: float = 0.02, seed: int = 1) -> nn.Module:
    """Give every all-zero parameter N(0, std^2) values (seeded), in place."""
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        if not p.any():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


def load_adm_state_dict(model: ADMModel, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> ADMModel:
    """Strictly load guided-diffusion weights, explaining a mismatch in terms of the flags."""
    state_dict = _strip_prefix(state_dict)
    expected = model.unet.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(state_dict) if expected[k].shape != state_dict[k].shape)
    if missing or unexpected or wrong_shape:
        raise ValueError(
            _mismatch_message(model.config, expected, state_dict, missing, unexpected, wrong_shape, source)
        )
    model.unet.load_state_dict({k: v.to(expected[k].dtype) for k, v in state_dict.items()}, strict=True)
    return model.freeze()


def load_guided_diffusion(path: str | Path, flags: dict | str | None) -> ADMModel:
    """A guided-diffusion ``.pt`` state dict plus the flags it was trained with."""
    path = Path(path)
    if flags is None:
        beside = path.with_suffix(".json")
        if not beside.exists():
            raise ValueError(
                f"{path} holds weights only: pass the flags it was trained with, e.g. "
                '--model-flags \'{"image_size": 256, "num_channels": 256, ...}\' (or put them in '
                f"{beside.name} beside it)"
            )
        flags = json.loads(beside.read_text())
    cfg = ADMConfig.from_flags(flags)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise ValueError(f"{path} is not a readable PyTorch state dict ({type(e).__name__}: {e})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors: save it with torch.save(model.state_dict())")
    return load_adm_state_dict(ADMModel(cfg), sd, str(path))


def _strip_prefix(sd: dict) -> dict:
    for prefix in ("module.", "unet.", "model."):
        if sd and all(k.startswith(prefix) for k in sd):
            return {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def _mismatch_message(cfg: ADMConfig, expected, got, missing, unexpected, wrong_shape, source) -> str:
    lines = [f"{source} does not match the model built from the flags ({cfg.to_flags()})."]
    hint = _guess_wrong_flag(cfg, expected, got, missing, unexpected, wrong_shape)
    if hint:
        lines.append(f"Probably wrong: {hint}.")
    for label, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            lines.append(f"{len(keys)} {label} key(s): {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}")
    for k in wrong_shape[:8]:
        lines.append(f"shape of {k}: checkpoint {tuple(got[k].shape)} vs flags {tuple(expected[k].shape)}")
    return "\n".join(lines)


def _guess_wrong_flag(cfg, expected, got, missing, unexpected, wrong_shape) -> str | None:
    """Name the flag that most likely explains a mismatch, from the shapes of tell-tale weights."""
    first = "input_blocks.0.0.weight"
    if first in got and first in expected:
        g, e = got[first].shape, expected[first].shape
        if g[1] != e[1]:
            return f"in_channels (checkpoint has {g[1]}, flags say {e[1]})"
        if g[0] != e[0]:
            return f"num_channels (checkpoint has {g[0]} base channels, flags say {e[0]})"
    if (
        "out.2.weight" in got
        and "out.2.weight" in expected
        and got["out.2.weight"].shape[0] != expected["out.2.weight"].shape[0]
    ):
        return f"learn_sigma (checkpoint outputs {got['out.2.weight'].shape[0]} channels)"
    if any(k.startswith("label_emb") for k in unexpected):
        return "class_cond (the checkpoint is class-conditional: set class_cond=True)"
    if any(k.startswith("label_emb") for k in missing):
        return "class_cond (the checkpoint is unconditional: set class_cond=False)"
    e1 = "input_blocks.1.0.emb_layers.1.weight"
    if e1 in got and e1 in expected and got[e1].shape[0] != expected[e1].shape[0]:
        want = got[e1].shape[0] == 2 * expected[e1].shape[0]
        return f"use_scale_shift_norm (set it to {want})"
    n_in = lambda sd: len({k.split(".")[1] for k in sd if k.startswith("input_blocks.")})  # noqa: E731
    if n_in(got) != n_in(expected):
        return f"num_res_blocks or channel_mult (checkpoint has {n_in(got)} input blocks, flags give {n_in(expected)})"
    if any(".op." in k for k in unexpected) or any(".op." in k for k in missing):
        return f"resblock_updown (set it to {not cfg.resblock_updown})"
    attn = lambda keys: any(k.split(".")[0] != "middle_block" and ".qkv." in k for k in keys)  # noqa: E731
    if attn(unexpected) or attn(missing):
        return "attention_resolutions (attention layers sit at other resolutions in the checkpoint)"
    if wrong_shape:
        return "channel_mult (the layer widths differ)"
    return None
