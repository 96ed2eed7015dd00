"""Samplers: zero shift is plain DDIM, inversion round-trips, Eq. (2) by hand."""

import math

import pytest
import torch

from conftest import GaussianDataEps, randomize_
from hspace import ShiftBlock, invert, sample, uniform_timesteps
from hspace.sampling import asymmetric_ddim_step, ddim_step, predict_x0
from hspace.schedule import check_timesteps, linear_alphas_cumprod


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model


def test_zero_shift_and_fresh_block_are_plain_ddim(model):
    x_T = torch.randn(3, 1, 16, 16)
    ts = uniform_timesteps(6)
    plain = sample(model, x_T, ts)
    fresh = ShiftBlock(model.h_channels, model.emb_channels, 4)
    assert torch.equal(sample(model, x_T, ts, directions=fresh, edits=[(2, 3.0)]), plain)
    trained = randomize_(ShiftBlock(model.h_channels, model.emb_channels, 4))
    assert torch.equal(sample(model, x_T, ts, directions=trained, edits=[(1, 0.0)]), plain)
    assert torch.equal(sample(model, x_T, ts, directions=trained, edits=[(1, 2.0)], t_stop=1000), plain)
    shifted = sample(model, x_T, ts, directions=trained, edits=[(1, 2.0)])
    assert (shifted - plain).abs().max() > 1e-3


def test_multi_direction_shift_is_the_sum(model):
    block = randomize_(ShiftBlock(model.h_channels, model.emb_channels, 4))
    h = torch.randn(2, model.h_channels, 8, 8)
    emb = torch.randn(2, model.emb_channels)
    both = block.delta(h, emb, [(0, 1.5), (3, -2.0)])
    torch.testing.assert_close(
        both, 1.5 * block(h, emb, torch.tensor([0, 0])) - 2.0 * block(h, emb, torch.tensor([3, 3]))
    )
    per_sample = block.delta(h, emb, [(torch.tensor([0, 3]), torch.tensor([1.0, -1.0]))])
    torch.testing.assert_close(per_sample[1], -block(h, emb, torch.tensor([3, 3]))[1])
    with pytest.raises(ValueError, match="K=4"):
        block.delta(h, emb, [(4, 1.0)])


def test_asymmetric_step_matches_eq2():
    x, eps, eps_hat = torch.randn(3, 2, 4, 4).unbind(0)
    a_t, a_prev = 0.3, 0.7
    expected = math.sqrt(a_prev) * (x - math.sqrt(1 - a_t) * eps_hat) / math.sqrt(a_t) + math.sqrt(1 - a_prev) * eps
    torch.testing.assert_close(asymmetric_ddim_step(x, eps, eps_hat, a_t, a_prev), expected)
    # To the clean target (abar = 1) the step returns the predicted x0.
    torch.testing.assert_close(ddim_step(x, eps, a_t, 1.0), predict_x0(x, eps, a_t))


def test_stochastic_ddim_step_needs_noise_and_uses_it():
    x, eps, z = torch.randn(3, 1, 4, 4).unbind(0)
    with pytest.raises(ValueError, match="noise"):
        ddim_step(x, eps, 0.3, 0.7, eta=1.0)
    det, sto = ddim_step(x, eps, 0.3, 0.7), ddim_step(x, eps, 0.3, 0.7, eta=1.0, noise=z)
    sigma = math.sqrt((1 - 0.7) / (1 - 0.3) * (1 - 0.3 / 0.7))
    expected = det + (math.sqrt(1 - 0.7 - sigma**2) - math.sqrt(1 - 0.7)) * eps + sigma * z
    torch.testing.assert_close(sto, expected)


def test_inversion_round_trip():
    # With the exact eps of Gaussian data, DDIM is a discretised ODE: inversion then sampling
    # returns x0 up to a discretisation error that shrinks as the chain gets finer.
    model = GaussianDataEps.build(sigma=0.5)
    x0 = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.5
    errors = []
    for m in (10, 100):
        ts = uniform_timesteps(m)
        x_T = invert(model, x0, ts)
        errors.append((sample(model, x_T, ts) - x0).abs().max().item())
    # The exact flow maps x0 to x_T = x0 / sigma (abar_T ~ 0): the inverted latent is unit noise.
    assert 0.85 < x_T.std().item() < 1.15
    assert errors[1] < 0.15 and errors[1] < errors[0] / 4, errors


def test_timestep_validation():
    with pytest.raises(ValueError, match="strictly decreasing"):
        check_timesteps([10, 20], 1000)
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        check_timesteps([1000, 0], 1000)
    with pytest.raises(ValueError, match="M=2000"):
        uniform_timesteps(2000)
    assert uniform_timesteps(20)[:2] == [950, 900] and uniform_timesteps(20)[-1] == 0
    abar = linear_alphas_cumprod()
    assert abar.dtype == torch.float64 and abar.shape == (1000,)


def test_batched_decode_of_h_and_h_hat_matches_separate_calls(model):
    from hspace.sampling import shifted_eps

    block = randomize_(ShiftBlock(model.h_channels, model.emb_channels, 4))
    x, t = torch.randn(3, 1, 16, 16), torch.tensor([900, 500, 100])
    edits = [(torch.tensor([0, 1, 2]), torch.tensor([1.0, -2.0, 0.5]))]
    eps, eps_hat = shifted_eps(model, x, t, block, edits)
    h, state = model.encode(x, t)
    torch.testing.assert_close(eps, model.decode(h, state), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(eps_hat, model.decode(h + block.shift(h, state, edits), state), rtol=1e-5, atol=1e-5)
