"""The diffusers backend against diffusers itself: UNet2DModel.forward parity, loading, DDIM parity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
from diffusers import DDIMScheduler, UNet2DModel  # noqa: E402

from hspace.backends.diffusers_unet import DiffusersUNet, load_diffusers  # noqa: E402
from hspace.sampling import ddim_step, sample  # noqa: E402
from hspace.schedule import chain_alpha_bars, uniform_timesteps  # noqa: E402

TINY = dict(layers_per_block=1, attention_head_dim=4)
CONFIGS = {
    "attn-rgb": dict(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    ),
    "grey-learned-sigma": dict(
        sample_size=16,
        in_channels=1,
        out_channels=2,
        block_out_channels=(16, 32),
        norm_num_groups=8,
        down_block_types=("AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D"),
    ),
    "plain-scale-shift": dict(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16, 16),
        norm_num_groups=4,
        resnet_time_scale_shift="scale_shift",
        center_input_sample=True,
        down_block_types=("DownBlock2D",) * 3,
        up_block_types=("UpBlock2D",) * 3,
    ),
    "skip-learned-time": dict(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 32),
        norm_num_groups=8,
        time_embedding_type="learned",
        num_train_timesteps=1000,
        down_block_types=("SkipDownBlock2D", "AttnSkipDownBlock2D"),
        up_block_types=("AttnSkipUpBlock2D", "SkipUpBlock2D"),
    ),
}


def tiny_unet(name: str = "attn-rgb", seed: int = 0, **overrides) -> UNet2DModel:
    """A seeded, randomly initialised tiny UNet2DModel in eval mode."""
    torch.manual_seed(seed)
    return UNet2DModel(**{**TINY, **CONFIGS[name], **overrides}).eval()


def batch(unet: UNet2DModel, n: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images and a different timestep per sample."""
    g = torch.Generator().manual_seed(seed)
    c, s = unet.config.in_channels, unet.config.sample_size
    return torch.randn(n, c, s, s, generator=g), torch.randint(0, 1000, (n,), generator=g)


def ddim_scheduler(**kw) -> DDIMScheduler:
    """diffusers' DDIM with ADM's linear schedule and the conventions hspace uses."""
    defaults = dict(
        num_train_timesteps=1000,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        clip_sample=False,
        set_alpha_to_one=True,
        timestep_spacing="leading",
        steps_offset=0,
    )
    return DDIMScheduler(**{**defaults, **kw})


@pytest.mark.parametrize("name", list(CONFIGS))
def test_encode_decode_matches_unet_forward(name: str) -> None:
    """decode(encode(x, t)) is UNet2DModel.forward (its first C channels when sigma is learned)."""
    unet = tiny_unet(name)
    model = DiffusersUNet(unet)
    x, t = batch(unet)
    with torch.no_grad():
        ref = unet(x, t).sample[:, : unet.config.in_channels]
        h, state = model.encode(x, t)
        eps = model.decode(h, state)
    torch.testing.assert_close(eps, ref, rtol=1e-5, atol=1e-6)
    assert eps.shape == x.shape
    assert h.shape[:2] == (x.shape[0], model.h_channels) and state.emb.shape == (x.shape[0], model.emb_channels)
    assert all(s.shape[0] == x.shape[0] for s in state.skips) and state.t.shape == (x.shape[0],)


def test_model_attributes_and_describe() -> None:
    """h/emb/in channels, image size, default linear schedule and a JSON-able description."""
    model = DiffusersUNet(tiny_unet("grey-learned-sigma"))
    assert (model.h_channels, model.emb_channels, model.in_channels, model.image_size) == (32, 64, 1, 16)
    assert model.num_train_steps == 1000 and model.alphas_cumprod.dtype == torch.float64
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    described = json.loads(json.dumps(model.describe()))
    assert described["backend"] == "diffusers" and described["config"]["block_out_channels"] == [16, 32]


def test_decode_stacked_batch() -> None:
    """Decoding [h, h] with state.repeat(2) gives the single decode twice."""
    model = DiffusersUNet(tiny_unet())
    x, t = batch(model.unet)
    with torch.no_grad():
        h, state = model.encode(x, t)
        eps = model.decode(h, state)
        both = model.decode(torch.cat([h, h]), state.repeat(2))
    torch.testing.assert_close(both, torch.cat([eps, eps]), rtol=1e-5, atol=1e-6)


def test_class_conditional_needs_labels() -> None:
    """A class-conditional UNet asks for model.class_labels, then matches forward with them."""
    unet = tiny_unet(num_class_embeds=5)
    model = DiffusersUNet(unet)
    x, t = batch(unet)
    with pytest.raises(ValueError, match="class_labels"):
        model(x, t)
    labels = torch.tensor([0, 3, 4])
    model.class_labels = labels
    with torch.no_grad():
        torch.testing.assert_close(model(x, t), unet(x, t, class_labels=labels).sample, rtol=1e-5, atol=1e-6)


def test_unsupported_configs_are_refused() -> None:
    """Fourier (score-SDE) time embeddings and non-eps output widths are clear construction errors."""
    with pytest.raises(ValueError, match="time_embedding_type='fourier'"):
        DiffusersUNet(tiny_unet(time_embedding_type="fourier"))
    with pytest.raises(ValueError, match="out_channels=5"):
        DiffusersUNet(tiny_unet(out_channels=5))


def save_with_scheduler(unet: UNet2DModel, unet_dir: Path, sched_dir: Path, **sched) -> DDIMScheduler:
    """unet.save_pretrained plus a DDIM scheduler_config.json; returns the scheduler."""
    unet.save_pretrained(unet_dir)
    scheduler = ddim_scheduler(**sched)
    scheduler.save_config(sched_dir)
    return scheduler


@pytest.mark.parametrize("layout", ["unet-folder", "pipeline"])
@pytest.mark.parametrize(
    "schedule",
    [
        dict(beta_schedule="linear", beta_start=2e-4, beta_end=0.03),
        dict(beta_schedule="scaled_linear", beta_start=8.5e-4, beta_end=0.012),
        dict(beta_schedule="squaredcos_cap_v2", num_train_timesteps=500),
    ],
)
def test_load_saved_folder(tmp_path: Path, layout: str, schedule: dict) -> None:
    """load_diffusers on a save_pretrained folder (or <root>/unet + <root>/scheduler) gives the same eps and abar."""
    unet = tiny_unet()
    pipeline = layout == "pipeline"
    unet_dir, sched_dir = (tmp_path / "unet", tmp_path / "scheduler") if pipeline else (tmp_path, tmp_path)
    scheduler = save_with_scheduler(unet, unet_dir, sched_dir, **schedule)
    model = load_diffusers(tmp_path)
    x, t = batch(unet, seed=2)
    t = t % scheduler.config.num_train_timesteps
    with torch.no_grad():
        torch.testing.assert_close(model(x, t), unet(x, t).sample, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.alphas_cumprod, scheduler.alphas_cumprod.double(), rtol=1e-5, atol=1e-7)


def test_load_without_scheduler_uses_linear(tmp_path: Path) -> None:
    """No scheduler config: ADM's linear 1e-4..0.02 over 1000 steps; in-memory UNets load too."""
    unet = tiny_unet()
    unet.save_pretrained(tmp_path)
    ref = ddim_scheduler().alphas_cumprod.double()
    for model in (load_diffusers(tmp_path), load_diffusers(unet)):
        torch.testing.assert_close(model.alphas_cumprod, ref, rtol=1e-5, atol=1e-7)


def test_load_errors(tmp_path: Path) -> None:
    """Folders that are not diffusers UNets, and non-eps schedulers, are clear ValueErrors."""
    with pytest.raises(ValueError, match="no config.json"):
        load_diffusers(tmp_path)
    with pytest.raises(ValueError, match="not a local folder"):
        load_diffusers(tmp_path / "missing")
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(ValueError, match="UNet2DConditionModel"):
        load_diffusers(tmp_path)
    save_with_scheduler(tiny_unet(), tmp_path / "v", tmp_path / "v", prediction_type="v_prediction")
    with pytest.raises(ValueError, match="prediction_type='v_prediction'"):
        load_diffusers(tmp_path / "v")


@pytest.mark.parametrize("pretrained", [True, False])
def test_make_encoder(pretrained: bool) -> None:
    """The encoder maps x to h at t = 0 (the model's own h when pretrained) and trains without touching the model."""
    model = DiffusersUNet(tiny_unet(seed=5))  # not make_encoder's own seed
    encoder = model.make_encoder(pretrained)
    x, _ = batch(model.unet)
    h = encoder(x)
    with torch.no_grad():
        ref = model.encode(x, torch.zeros(x.shape[0], dtype=torch.long))[0]
    assert h.shape == ref.shape and encoder.training
    if pretrained:
        torch.testing.assert_close(h.detach(), ref, rtol=1e-5, atol=1e-6)
    else:
        assert not torch.allclose(h, ref)
    assert encoder.unet.up_blocks is None and encoder.unet.conv_out is None
    assert all(p.requires_grad for p in encoder.parameters())
    assert not any(p.requires_grad for p in model.parameters())
    h.square().mean().backward()
    assert all(p.grad is None for p in model.parameters())


def test_ddim_matches_diffusers_scheduler() -> None:
    """Our eta = 0 DDIM equals diffusers' DDIMScheduler step for step, and over the whole chain."""
    model = DiffusersUNet(tiny_unet())
    scheduler = ddim_scheduler()
    scheduler.set_timesteps(10)
    ts = uniform_timesteps(10)
    assert scheduler.timesteps.tolist() == ts
    x_T = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    x = x_T
    with torch.no_grad():
        for t, abar_t, abar_prev in chain_alpha_bars(model.alphas_cumprod, ts):
            eps = model.unet(x, t).sample  # a plain diffusers loop
            prev = scheduler.step(eps, t, x).prev_sample
            torch.testing.assert_close(ddim_step(x, eps, abar_t, abar_prev), prev, rtol=1e-5, atol=1e-6)
            x = prev
    # Over the chain the per-step float32 differences compound (diffusers 0.42: 5e-6 after 10 steps).
    torch.testing.assert_close(sample(model, x_T, ts), x, rtol=1e-4, atol=1e-5)
