"""The optimised algorithm: cached real chains, a memory budget, a tuned UNet, same gradients."""

import copy
import threading

import pytest
import torch

from conftest import randomize_
from hspace import train
from hspace.config import DiscoveryConfig
from hspace.schedule import uniform_timesteps
from hspace.speed import RealChainCache, TunedModel, tune_model
from hspace.train import (
    DiscoveryModules,
    DiscoveryTrainer,
    compute_gradients,
    generator_gradients,
    max_relative_difference,
    run_chains,
)


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model


def _setup(model, cfg, n=6):
    torch.manual_seed(3)
    modules = DiscoveryModules(model, cfg)
    randomize_(modules.shift_block, std=0.05, seed=4)
    g = torch.Generator().manual_seed(5)
    batch = (
        torch.randn(n, 1, 16, 16, generator=g),
        torch.randint(0, cfg.K, (n,), generator=g),
        (torch.rand(n, generator=g) * 2 - 1) * cfg.S,
    )
    return modules, batch


def _gradients(model, modules, batch, cfg, x0_cached=None):
    opt_d = torch.optim.Adam(modules.discriminator.parameters(), lr=cfg.lr)
    compute_gradients(model, modules, opt_d, *batch, uniform_timesteps(cfg.M), cfg, cfg.plan().kept(cfg.M), x0_cached)
    return {n: p.grad.clone() for n, p in modules.named_parameters() if p.grad is not None}


def test_cached_real_chains_give_the_same_gradients(model):
    cfg = DiscoveryConfig(K=3, S=2.0, M=4, t_stop=400, batch_size=6, keep_graph_steps=0)  # fusing aside (below)
    modules, batch = _setup(model, cfg)
    with torch.no_grad():  # the real chains of the last 4 samples, as an earlier step computed them
        x0_real = run_chains(
            model, modules.shift_block, batch[0], [(batch[1], batch[2])], uniform_timesteps(4), 400, 0
        ).x0_real
    fresh = _gradients(model, copy.deepcopy(modules), batch, cfg)
    cached = _gradients(model, copy.deepcopy(modules), batch, cfg, x0_cached=x0_real[2:])
    assert set(cached) == set(fresh)
    assert max_relative_difference(cached, fresh) <= 1e-5
    wrong = _gradients(model, copy.deepcopy(modules), batch, cfg, x0_cached=x0_real[2:].flip(0))
    assert max_relative_difference(wrong, fresh) > 1e-3  # the cached x0 really is used


def test_fresh_real_chains_fused_into_kept_steps_give_the_same_chains(model, monkeypatch):
    cfg = DiscoveryConfig(K=3, S=2.0, M=4, t_stop=400, batch_size=6)
    modules, (x_T, k, s) = _setup(model, cfg)
    args = (model, modules.shift_block, x_T, [(k, s)], uniform_timesteps(4), 400)
    with torch.no_grad():
        x0_cached = run_chains(*args, kept_steps=0).x0_real[2:]
    calls = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda *a: (calls.append(len(a[0])), encode(*a))[1])
    apart = run_chains(*args, kept_steps=3, x0_cached=x0_cached)
    assert calls == [6, 2, 6, 2, 6, 2, 6]  # step 0 shares x_T's encoding; then 2 fresh real chains apart
    calls.clear()
    fused = run_chains(*args, kept_steps=3, x0_cached=x0_cached, fuse_real=True)
    assert calls == [6, 8, 8, 8]  # ... or in the shifted chain's call
    assert not fused.x0_real.requires_grad  # the real chain rides along detached
    for a, b in [(fused.x0_real, apart.x0_real), (fused.x0_shift, apart.x0_shift)]:
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()  # other batches, other rounding only
    (grad_fused,) = torch.autograd.grad(fused.x0_shift.sum(), fused.tail_input)
    (grad_apart,) = torch.autograd.grad(apart.x0_shift.sum(), apart.tail_input)
    assert torch.allclose(grad_fused, grad_apart, rtol=1e-5, atol=1e-6)


def test_cache_is_a_ring_that_refreshes_a_share_of_each_batch():
    cache = RealChainCache(size=5, refresh=0.25, seed=0)
    x = torch.arange(8.0)[:, None]
    assert cache.mix(x)[1] is None  # empty: the whole batch is fresh
    cache.add(x[:3], -x[:3])
    mixed, x0 = cache.mix(x)
    assert x0.shape[0] == 3 and torch.equal(mixed[:5], x[:5])  # at most what the cache holds
    assert torch.equal(x0, -mixed[5:])  # pairs stay pairs
    cache.add(x + 10, -(x + 10))  # 8 more into a ring of 5: the last 5 stay
    assert len(cache) == 5 and set(cache.x_T.flatten().tolist()) == {13.0, 14.0, 15.0, 16.0, 17.0}
    mixed, x0 = cache.mix(x)
    assert x0.shape[0] == 5 and torch.equal(mixed[:3], x[:3])  # ceil(0.25 * 8) = 2 fresh, at least; 3 here
    state = cache.state_dict()
    other = RealChainCache(size=5, refresh=0.25)
    other.load_state_dict(copy.deepcopy(state))
    assert torch.equal(other.mix(x)[0], cache.mix(x)[0])


def test_memory_budget_sets_the_kept_steps(model):
    cfg = DiscoveryConfig(K=3, S=2.0, M=5, t_stop=400, batch_size=4)  # timesteps 800 600 400 | 200 0
    sizes = DiscoveryTrainer(model, cfg).step_graphs_mb()
    shifted, plain = sizes[0], sizes[-1]
    assert sizes == [shifted] * 3 + [plain] * 2 and 0 < plain < shifted  # a plain step decodes once
    assert DiscoveryTrainer(model, cfg.replace(batch_size=8)).step_graphs_mb()[0] == pytest.approx(2 * shifted, rel=0.1)
    budgets = [(0.0, 0), (plain, 1), (2 * plain + 0.5 * shifted, 2), (2 * plain + 1.5 * shifted, 3), (100 * shifted, 5)]
    for budget, kept in budgets:  # from the last step back, as many as fit
        assert DiscoveryTrainer(model, cfg.replace(memory_budget_mb=budget)).kept_steps == kept
    # Overlapped, the recomputation of the step before the kept ones starts while they live: it needs room too.
    budgets = [
        (plain, 0),
        (2 * plain, 1),
        (2 * plain + 1.5 * shifted, 2),
        (2 * plain + 2.5 * shifted, 3),
        (2 * plain + 3 * shifted, 5),
    ]
    for budget, kept in budgets:
        assert DiscoveryTrainer(model, cfg.replace(overlap=True, memory_budget_mb=budget * 1.001)).kept_steps == kept
    # Optimised without a budget: the graphs of 5 shifted steps, which hold more than 5 plain steps.
    long = DiscoveryTrainer(model, cfg.replace(M=20))
    assert 20 > long.kept_steps == int(5 * max(long.step_graphs_mb()) // min(long.step_graphs_mb())) > 5
    assert DiscoveryTrainer(model, cfg.replace(keep_graph_steps=2)).kept_steps == 2
    assert DiscoveryTrainer(model, cfg.replace(algorithm="checkpointed")).kept_steps == 0
    assert DiscoveryTrainer(model, cfg.replace(algorithm="vanilla")).kept_steps == 5


def test_tuned_model_keeps_float32_at_its_edges(model):
    x, t = torch.randn(3, 1, 16, 16), torch.tensor([10, 500, 990])
    assert tune_model(model, DiscoveryConfig().plan()) is model  # nothing pays on CPU by default
    cl = TunedModel(copy.deepcopy(model), channels_last=True)
    assert torch.allclose(cl(x, t), model(x, t), atol=1e-5)
    with pytest.raises(ValueError, match="channels_last is for CUDA"):  # its CPU backward segfaults (torch 2.13)
        tune_model(model, DiscoveryConfig(channels_last=True).plan())
    bf16 = TunedModel(copy.deepcopy(model), bf16=True)
    h, state = bf16.encode(x, t)
    eps = bf16.decode(h, state)
    assert h.dtype == eps.dtype == torch.float32
    ref = model(x, t)
    assert (eps - ref).abs().max() <= 0.05 * ref.abs().max()  # bfloat16 keeps ~3 significant digits


def test_trainer_and_gradient_check_agree_about_kept_steps(model):
    cfg = DiscoveryConfig(K=3, S=2.0, M=20, t_stop=400, batch_size=4)  # the budget keeps more than 5 steps here
    trainer = DiscoveryTrainer(model, cfg)
    kept = []
    run = train.run_chains
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train, "run_chains", lambda *a: (kept.append(a[6]), run(*a))[1])
        generator_gradients(trainer.model, copy.deepcopy(trainer.modules), trainer.draw(), trainer.timesteps, cfg)
    assert kept == [trainer.kept_steps] and trainer.kept_steps > 5


def test_plan_resolves_the_algorithm_once():
    cfg = DiscoveryConfig(M=8, batch_size=4)
    optimised, checkpointed, vanilla = (
        cfg.replace(algorithm=a).plan() for a in ("optimised", "checkpointed", "vanilla")
    )
    assert optimised.measures_graphs and optimised.real_cache == 16 and optimised.fuse_real and optimised.bf16 == "cuda"
    assert (checkpointed.kept(8), checkpointed.real_cache, checkpointed.fuse_real, checkpointed.bf16) == (
        0,
        0,
        False,
        "never",
    )
    assert vanilla.kept(8) == 8 and cfg.replace(algorithm="vanilla", keep_graph_steps=2).plan().kept(8) == 8
    assert cfg.replace(algorithm="checkpointed", keep_graph_steps=2, real_cache=8, autocast="bf16").plan().kept(8) == 2
    with pytest.raises(ValueError, match="memory budget needs the size of each step's graph"):
        optimised.kept(8)


def test_optimised_training_fills_its_cache_and_is_seeded(model):
    cfg = DiscoveryConfig(K=3, S=2.0, M=3, t_stop=400, batch_size=4, real_cache=8)
    a = DiscoveryTrainer(model, cfg)
    for _ in range(3):
        a.train_step()
    assert len(a.cache) == 4 + 1 + 1  # all fresh at first, then ceil(0.25 x 4) fresh per step
    b = DiscoveryTrainer(model, cfg)
    for _ in range(3):
        b.train_step()
    assert all(torch.equal(p, q) for p, q in zip(a.modules.parameters(), b.modules.parameters()))


def test_overlapped_recomputation_gives_the_same_gradients_and_restores_threads(model, monkeypatch):
    cfg = DiscoveryConfig(K=3, S=2.0, M=6, t_stop=300, batch_size=6, keep_graph_steps=1, overlap=True)
    assert cfg.plan().overlap and not cfg.replace(algorithm="checkpointed").plan().overlap
    assert not DiscoveryConfig().plan().overlap  # off by default: it pays on some models only
    modules, batch = _setup(model, cfg)
    threads = torch.get_num_threads()
    seen = []  # which threads ran graph steps: the recomputation must leave the main thread
    step = train.shifted_chain_step
    monkeypatch.setattr(
        train, "shifted_chain_step", lambda *a: (seen.append(threading.current_thread().name), step(*a))[1]
    )
    overlapped = generator_gradients(model, copy.deepcopy(modules), batch, uniform_timesteps(6), cfg)
    monkeypatch.undo()
    assert torch.get_num_threads() == threads
    assert any(name.startswith("hspace-recompute") for name in seen)
    serial = generator_gradients(model, copy.deepcopy(modules), batch, uniform_timesteps(6), cfg.replace(overlap=False))
    assert max_relative_difference(overlapped, serial) <= 1e-5  # half the intra-op threads: other rounding only
    with pytest.raises(ValueError, match="torch.compile is not thread-safe"):
        cfg.replace(overlap=True, compile=True)
