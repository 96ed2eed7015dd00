"""The built-in ADM UNet: h-space split, strict loading, flags and clear errors."""

import json

import pytest
import torch

from conftest import randomize_
from hspace import load_model, save_model
from hspace.backends import ADMConfig, build_adm

SMALL = dict(
    image_size=16,
    in_channels=1,
    num_channels=32,
    channel_mult="1,2",
    num_res_blocks=1,
    attention_resolutions="",
    num_heads=2,
)
VARIANTS = {
    "plain": dict(use_scale_shift_norm=False),
    "scale-shift+attention": dict(attention_resolutions="8,16"),
    "resblock-updown": dict(resblock_updown=True, attention_resolutions="8"),
    "learned-sigma+new-order": dict(learn_sigma=True, attention_resolutions="8", use_new_attention_order=True),
    "head-channels+rgb": dict(in_channels=3, num_head_channels=16, num_heads_upsample=4, attention_resolutions="16"),
    "two-res-blocks+dropout": dict(num_res_blocks=2, dropout=0.1, channel_mult="1,1,2"),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_decode_of_encode_is_the_unet_forward(variant):
    model = randomize_(build_adm({**SMALL, **VARIANTS[variant]}, seed=0))
    c = model.in_channels
    x, t = torch.randn(3, c, 16, 16), torch.tensor([0, 500, 999])
    h, state = model.encode(x, t)
    assert h.shape[:2] == (3, model.h_channels) and state.emb.shape == (3, model.emb_channels)
    full = model.unet(x, t)
    assert full.shape[1] == c * (2 if model.config.learn_sigma else 1)
    assert torch.equal(model.decode(h, state), full[:, :c])
    assert torch.equal(model(x, t), full[:, :c])


def test_attention_orders_compute_different_functions_from_the_same_weights():
    legacy = randomize_(build_adm({**SMALL, "attention_resolutions": "8"}, seed=0))
    new = build_adm({**SMALL, "attention_resolutions": "8", "use_new_attention_order": True})
    new.unet.load_state_dict(legacy.unet.state_dict())
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([10, 900])
    assert not torch.allclose(legacy(x, t), new(x, t))


def test_table3_mnist_size():
    from hspace import presets

    n = sum(p.numel() for p in build_adm(presets.DM_PRESETS["MNIST32"]).parameters())
    assert 17e6 < n < 18.5e6  # "about 17.5M parameters"


def test_safetensors_round_trip_and_fp16(tmp_path):
    model = randomize_(build_adm({**SMALL, "attention_resolutions": "8"}, seed=1))
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([5, 600])
    path = save_model(model, tmp_path / "m.safetensors")
    again = load_model(path)
    assert again.config == model.config
    assert torch.equal(again(x, t), model(x, t))
    half = load_model(save_model(model, tmp_path / "h.safetensors", dtype=torch.float16))
    torch.testing.assert_close(half(x, t), model(x, t), rtol=1e-2, atol=1e-2)


def test_guided_diffusion_state_dict_with_flags(tmp_path):
    flags = {**SMALL, "attention_resolutions": "8", "learn_sigma": True, "use_fp16": False, "timestep_respacing": ""}
    model = randomize_(build_adm(flags, seed=2))
    torch.save(model.unet.state_dict(), tmp_path / "model.pt")
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([100, 700])
    loaded = load_model(tmp_path / "model.pt", flags=flags)
    assert torch.equal(loaded(x, t), model(x, t))
    assert torch.equal(loaded.encode(x, t)[0], model.encode(x, t)[0])
    assert not any(p.requires_grad for p in loaded.parameters())
    # JSON flags beside the file are found too, and a JSON string works as well.
    (tmp_path / "model.json").write_text(json.dumps(flags))
    assert torch.equal(load_model(tmp_path / "model.pt")(x, t), model(x, t))
    assert torch.equal(load_model(tmp_path / "model.pt", flags=json.dumps(flags))(x, t), model(x, t))


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (dict(learn_sigma=False), "learn_sigma"),
        (dict(num_channels=64), "num_channels"),
        (dict(in_channels=3), "in_channels"),
        (dict(use_scale_shift_norm=False), "use_scale_shift_norm"),
        (dict(num_res_blocks=2), "num_res_blocks"),
        (dict(resblock_updown=True), "resblock_updown"),
        (dict(attention_resolutions="16"), "attention_resolutions"),
        (dict(class_cond=True), "class_cond"),
        (dict(channel_mult="1,3"), "channel_mult"),
    ],
)
def test_wrong_flag_is_named(tmp_path, wrong, hint):
    flags = {**SMALL, "attention_resolutions": "8", "learn_sigma": True}
    torch.save(build_adm(flags).unet.state_dict(), tmp_path / "model.pt")
    with pytest.raises(ValueError, match=f"Probably wrong: {hint}"):
        load_model(tmp_path / "model.pt", flags={**flags, **wrong})


def test_bad_inputs_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown model flag"):
        ADMConfig.from_flags({"num_chanels": 64})
    with pytest.raises(ValueError, match="pass the flags"):
        torch.save({}, tmp_path / "bare.pt")
        load_model(tmp_path / "bare.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable PyTorch state dict"):
        load_model(tmp_path / "junk.pt", flags=SMALL)
    with pytest.raises(ValueError, match="no model at"):
        load_model(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_model(tmp_path / "junk.safetensors")
    with pytest.raises(ValueError, match="eps-prediction"):
        ADMConfig.from_flags({"predict_xstart": True})
    with pytest.raises(ValueError, match="channel_mult"):
        ADMConfig.from_flags({"image_size": 48})


def test_discriminator_encoder_from_dm_weights():
    model = randomize_(build_adm({**SMALL, "attention_resolutions": "8"}, seed=3))
    enc = model.make_encoder(pretrained=True)
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(enc(x), model.encode(x, torch.zeros(2, dtype=torch.long))[0])
    assert all(p.requires_grad for p in enc.parameters()) and not any(p.requires_grad for p in model.parameters())
    fresh = model.make_encoder(pretrained=False)
    assert not torch.equal(fresh(x), enc(x))


def test_flags_are_read_as_guided_diffusion_reads_them():
    cfg = ADMConfig.from_flags(
        {
            "use_new_attention_order": "False",
            "attention_resolutions": 16,
            "dropout": "0.1",
            "channel_mult": [1, 2],
            "learn_sigma": "True",
        }
    )
    assert cfg.use_new_attention_order is False and cfg.learn_sigma is True
    assert cfg.attention_resolutions == "16" and cfg.channel_mult == "1,2" and cfg.dropout == 0.1
    with pytest.raises(ValueError, match="expected a boolean"):
        ADMConfig.from_flags({"learn_sigma": "maybe"})


def test_linear_schedule_scales_with_diffusion_steps():
    # guided-diffusion: betas from 1e-4 * 1000/T to 0.02 * 1000/T, so T = 4000 ends near abar ~ 4e-5 as T = 1000 does.
    short, long = build_adm({**SMALL, "diffusion_steps": 1000}), build_adm({**SMALL, "diffusion_steps": 4000})
    assert long.num_train_steps == 4000
    assert abs(float(long.alphas_cumprod[-1]) / float(short.alphas_cumprod[-1]) - 1) < 0.1  # 4.2e-5 vs 4.0e-5


def test_rescaled_timesteps_feed_the_network_t_times_1000_over_T():
    flags = {**SMALL, "diffusion_steps": 250}
    plain, rescaled = (
        build_adm(flags, seed=0, fill_zero_init=True),
        build_adm({**flags, "rescale_timesteps": True}, seed=0, fill_zero_init=True),
    )
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(rescaled(x, torch.tensor([10, 200])), plain.unet(x, torch.tensor([40.0, 800.0])))
