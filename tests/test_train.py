"""The discovery step: Algorithm 1 gives the vanilla gradients; the frozen DM never changes."""

import copy
import math

import pytest
import torch

from conftest import randomize_
from hspace import presets
from hspace.backends import build_adm
from hspace.config import DiscoveryConfig
from hspace.schedule import uniform_timesteps
from hspace.train import DiscoveryModules, DiscoveryTrainer, generator_gradients, max_relative_difference


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model


def _modules(model, cfg):
    torch.manual_seed(3)
    modules = DiscoveryModules(model, cfg)
    randomize_(modules.shift_block, std=0.05, seed=4)  # non-zero directions: every parameter gets a gradient
    return modules


def _batch(cfg, n=4):
    g = torch.Generator().manual_seed(5)
    return (
        torch.randn(n, 1, 16, 16, generator=g),
        torch.randint(0, cfg.K, (n,), generator=g),
        (torch.rand(n, generator=g) * 2 - 1) * cfg.S,
    )


@pytest.mark.parametrize(
    "M, t_stop, keep",
    [(1, 0, 0), (2, 0, 0), (2, 500, 0), (4, 0, 0), (4, 750, 0), (4, 400, 0), (5, 400, 2), (6, 300, 1), (3, 400, 0)],
)
def test_checkpointed_gradients_equal_vanilla(model, M, t_stop, keep):
    cfg = DiscoveryConfig(K=3, S=2.0, M=M, t_stop=t_stop, batch_size=4, keep_graph_steps=keep, algorithm="checkpointed")
    ts = uniform_timesteps(M)
    base, batch = _modules(model, cfg), _batch(cfg, n=8 if M == 3 else 4)
    vanilla = generator_gradients(
        model, copy.deepcopy(base), batch, ts, cfg.replace(algorithm="vanilla", keep_graph_steps=0)
    )
    checkpointed = generator_gradients(model, copy.deepcopy(base), batch, ts, cfg)
    assert all(g.abs().max() > 0 for n, g in vanilla.items() if n.startswith("shift_block")), (
        "a parameter got no gradient"
    )
    # float32 summation order: up to 1.1e-5 measured (the shift head's first layer, through BatchNorm)
    assert max_relative_difference(checkpointed, vanilla) <= 3e-5


@pytest.mark.parametrize("M, t_stop", [(4, 400), (6, 300)])
def test_optimised_gradients_equal_vanilla(model, M, t_stop):
    cfg = DiscoveryConfig(K=3, S=2.0, M=M, t_stop=t_stop, batch_size=4)  # kept steps from the measured budget
    ts = uniform_timesteps(M)
    base, batch = _modules(model, cfg), _batch(cfg)
    vanilla = generator_gradients(model, copy.deepcopy(base), batch, ts, cfg.replace(algorithm="vanilla"))
    optimised = generator_gradients(model, copy.deepcopy(base), batch, ts, cfg)
    assert max_relative_difference(optimised, vanilla) <= 3e-5


def test_gradients_reach_only_asymmetric_steps(model):
    # With t_stop above every step but the first, only that step's shift counts: the gradient
    # differs from a chain shifted throughout, and the D update never touches the frozen DM.
    cfg = DiscoveryConfig(K=2, S=1.0, M=4, t_stop=0, batch_size=4)
    ts = uniform_timesteps(4)
    base, batch = _modules(model, cfg), _batch(cfg)
    full = generator_gradients(model, copy.deepcopy(base), batch, ts, cfg)
    first_only = generator_gradients(model, copy.deepcopy(base), batch, ts, cfg.replace(t_stop=ts[0]))
    assert max_relative_difference(first_only, full) > 1e-3


def test_training_updates_trained_parts_only(model):
    before = copy.deepcopy(model.state_dict())
    dm, cfg = presets.run_preset("tiny")
    trainer = DiscoveryTrainer(model, cfg.replace(batch_size=4, M=3))
    shift_before = copy.deepcopy(trainer.modules.shift_block.state_dict())
    metrics = trainer.train_step()
    assert set(metrics) == {"loss_d", "loss_g", "loss_r", "acc"}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())
    # The zero-initialised output convs moved: training left x~0 == x0.
    assert not torch.equal(shift_before["out_weight"], trainer.modules.shift_block.state_dict()["out_weight"])
    # At initialisation x~0 == x0: D sees the same images as real and fake, so L_D >= 2 log 2.
    assert metrics["loss_d"] >= 2 * math.log(2) - 1e-6


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="K=0"):
        DiscoveryConfig(K=0)
    with pytest.raises(ValueError, match="S=0"):
        DiscoveryConfig(S=0)
    with pytest.raises(ValueError, match="algorithm='fast'"):
        DiscoveryConfig(algorithm="fast")
    model = build_adm(presets.DM_PRESETS["tiny"], seed=0)
    with pytest.raises(ValueError, match="t_stop=990"):
        DiscoveryTrainer(model, DiscoveryConfig(M=5, t_stop=990, batch_size=2))
    with pytest.raises(ValueError, match="M=2000"):
        DiscoveryTrainer(model, DiscoveryConfig(M=2000, batch_size=2))


def test_direction_init_std_starts_from_distinct_directions(model):
    zero = DiscoveryModules(model, DiscoveryConfig(K=3))
    assert not zero.shift_block.out_weight.any()  # the paper: x~0 == x0 at the start
    torch.manual_seed(0)
    rand = DiscoveryModules(model, DiscoveryConfig(K=3, direction_init_std=0.3))
    w = rand.shift_block.out_weight
    assert 0.2 < w.std().item() < 0.4 and not torch.equal(w[0], w[1])
    with pytest.raises(ValueError, match="direction_init_std=-1"):
        DiscoveryConfig(direction_init_std=-1)


def test_checkpointed_gradients_equal_vanilla_with_shift_norm(model):
    cfg = DiscoveryConfig(
        K=3, S=2.0, M=4, t_stop=400, batch_size=4, algorithm="checkpointed", direction_init_std=0.05, shift_norm=0.3
    )
    ts = uniform_timesteps(4)
    base, batch = _modules(model, cfg), _batch(cfg)
    vanilla = generator_gradients(model, copy.deepcopy(base), batch, ts, cfg.replace(algorithm="vanilla"))
    checkpointed = generator_gradients(model, copy.deepcopy(base), batch, ts, cfg)
    assert all(g.abs().max() > 0 for n, g in vanilla.items() if n.startswith("shift_block")), (
        "a parameter got no gradient"
    )
    assert max_relative_difference(checkpointed, vanilla) <= 3e-5


@pytest.mark.parametrize("term", ["edit_overlap_weight", "even_edit_weight"])
def test_checkpointed_gradients_equal_vanilla_with_a_paired_term(model, term):
    # In float64: the paired terms compare edits x~0 - x0, small differences of near-equal images, which
    # turn float32 rounding (kernels that sum in another order per batch shape and CPU) into 1e-4.
    model = copy.deepcopy(model).double()
    cfg = DiscoveryConfig(K=3, S=2.0, M=4, t_stop=400, batch_size=4, algorithm="checkpointed", **{term: 1.0})
    ts = uniform_timesteps(4)
    x_T, k, s = _batch(cfg)
    x_T = x_T[:2].repeat_interleave(2, dim=0).double()  # two pairs, each on one x_T
    if term == "edit_overlap_weight":  # the same s, different directions
        k, s = torch.tensor([0, 1, 2, 0]), s[:2].repeat_interleave(2)
    else:  # the same direction, s and -s
        k, s = k[:2].repeat_interleave(2), torch.stack([s[:2], -s[:2]], 1).flatten()
    s = s.double()
    base = _modules(model, cfg).double()
    vanilla = generator_gradients(model, copy.deepcopy(base), (x_T, k, s), ts, cfg.replace(algorithm="vanilla"))
    checkpointed = generator_gradients(model, copy.deepcopy(base), (x_T, k, s), ts, cfg)
    assert all(g.dtype == torch.float64 for g in vanilla.values())
    assert max_relative_difference(checkpointed, vanilla) <= 1e-10
    without = generator_gradients(model, copy.deepcopy(base), (x_T, k, s), ts, cfg.replace(**{term: 0.0}))
    assert max_relative_difference(without, checkpointed) > 1e-3  # the term reaches the shift block
