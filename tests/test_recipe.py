"""The discovery recipe: draws of (k, s), per-part learning rates, the paper's recipe, held-out RCA."""

import csv
import json
from types import SimpleNamespace

import pytest
import torch

from hspace import presets
from hspace.artifacts import load_tensors
from hspace.cli import main
from hspace.config import PAPER_RECIPE, RECIPES, DiscoveryConfig
from hspace.discover import discover
from hspace.models import load_model
from hspace.monitor import HeldOutPairs, recalibrate_batch_norm
from hspace.nets import Discriminator, LeNetReconstructor
from hspace.run import load_run
from hspace.train import (
    DiscoveryTrainer,
    discriminator_loss,
    draw_edit_pairs,
    draw_edits,
    draw_opposite_pairs,
    generator_losses,
    paired_edit_cosine,
    paired_even_share,
)

TINY = presets.run_preset("tiny")[1].replace(batch_size=4, M=3)


def test_shifts_keep_their_minimum_and_indices_balance():
    cfg = DiscoveryConfig(K=5, S=2.0, min_shift=0.5, balanced_k=True)
    k, s = draw_edits(23, cfg, torch.Generator().manual_seed(0))
    assert ((s.abs() >= 0.5) & (s.abs() <= 2.0)).all() and (s > 0).any() and (s < 0).any()
    counts = torch.bincount(k, minlength=5)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 23


def test_the_papers_draws_are_uniform_per_sample():
    cfg = DiscoveryConfig(K=5, S=2.0, **PAPER_RECIPE)
    k, s = draw_edits(64, cfg, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    assert torch.equal(k, torch.randint(0, 5, (64,), generator=g))
    torch.testing.assert_close(s, (torch.rand(64, generator=g) * 2 - 1) * 2.0)


def test_recipe_settings_are_checked_with_the_fix_named():
    with pytest.raises(ValueError, match=r"min_shift=3.*min_shift < S \(2"):
        DiscoveryConfig(S=2.0, min_shift=3.0)
    with pytest.raises(ValueError, match="shift_lr=0"):
        DiscoveryConfig(shift_lr=0.0)
    assert set(RECIPES["hspace"]) == set(RECIPES["paper"])  # the same settings, two sets of values
    assert DiscoveryConfig().replace(**RECIPES["paper"]) == DiscoveryConfig(**PAPER_RECIPE)


@pytest.mark.parametrize("recipe", ["hspace", "paper"])
def test_both_recipes_train_with_their_learning_rates(recipe):
    cfg = TINY.replace(**RECIPES[recipe])
    trainer = DiscoveryTrainer(load_model("tiny"), cfg)
    lrs = [group["lr"] for group in trainer.opt_g.param_groups] + [trainer.opt_d.param_groups[0]["lr"]]
    assert lrs == ([1e-2, 1e-3, 1e-3] if recipe == "hspace" else [1e-3, 1e-3, 1e-3])
    before = trainer.modules.shift_block.out_weight.clone()
    metrics = [trainer.train_step(diagnose=True) for _ in range(2)][-1]
    assert not torch.equal(before, trainer.modules.shift_block.out_weight)
    assert all(metrics[f"grad_{t}"] > 0 for t in ("g", "ce", "l1")), metrics


def test_the_warmdown_lowers_every_rate_linearly_over_the_last_steps():
    cfg = TINY.replace(train_steps=8, lr_warmdown=0.5)
    assert [cfg.lr_factor(step) for step in range(8)] == [1, 1, 1, 1, 1, 0.75, 0.5, 0.25]
    assert [TINY.replace(train_steps=8).lr_factor(step) for step in range(8)] == [1] * 8
    trainer = DiscoveryTrainer(load_model("tiny"), cfg)
    for _ in range(6):
        trainer.train_step()
    lrs = [group["lr"] for group in trainer.opt_g.param_groups] + [trainer.opt_d.param_groups[0]["lr"]]
    assert lrs == pytest.approx([0.75 * cfg.part_lr(p) for p in ("shift_block", "reconstructor", "discriminator")])
    constant_d = DiscoveryTrainer(load_model("tiny"), cfg.replace(discriminator_warmdown=False))
    for _ in range(6):
        constant_d.train_step()
    assert [group["lr"] for group in constant_d.opt_g.param_groups] == pytest.approx(lrs[:2])
    assert constant_d.opt_d.param_groups[0]["lr"] == cfg.part_lr("discriminator")
    with pytest.raises(ValueError, match=r"lr_warmdown=1.5: choose a share of train_steps in \[0, 1\]"):
        DiscoveryConfig(lr_warmdown=1.5)


def test_held_out_rca_is_the_same_on_every_evaluation_of_a_state():
    trainer = DiscoveryTrainer(load_model("tiny"), TINY.replace(direction_init_std=0.3))
    held_out = HeldOutPairs(trainer.model, trainer.cfg, trainer.timesteps, num_pairs=10, batch_size=4)
    first = held_out.evaluate(trainer.modules.shift_block, trainer.modules.reconstructor)
    assert trainer.modules.reconstructor.training  # its mode is restored
    assert held_out.evaluate(trainer.modules.shift_block, trainer.modules.reconstructor) == first
    assert 0 <= first["rca_heldout"] <= 1 and 0 <= first["live_units"] <= 1
    # The pairs do not depend on the batch they are evaluated in.
    other = HeldOutPairs(trainer.model, trainer.cfg, trainer.timesteps, num_pairs=10, batch_size=10)
    assert torch.equal(other.k, held_out.k)
    assert (
        other.evaluate(trainer.modules.shift_block, trainer.modules.reconstructor)["rca_heldout"]
        == first["rca_heldout"]
    )


def test_discover_logs_held_out_rca_every_n_steps(tmp_path):
    out = discover(
        "tiny", TINY.replace(train_steps=3), tmp_path / "run", grid_every=0, rca_every=2, rca_pairs=6, progress=False
    )
    with (out / "log.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [bool(r["rca_heldout"]) for r in rows] == [False, True, True]  # step 2, and the last step
    assert all(r["grad_ce"] for r in rows[1:]) and not rows[0]["grad_ce"]


def test_cli_recipe_paper_over_a_preset(tmp_path):
    out = tmp_path / "run"
    argv = "discover --preset tiny --recipe paper --train-steps 1 --batch-size 4 --M 3 --rca-every 0 --out".split()
    assert main([*argv, str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())["config"]
    assert {k: saved[k] for k in PAPER_RECIPE} == PAPER_RECIPE


def test_batch_norm_recalibration_is_the_plain_average_over_the_pairs():
    recon = LeNetReconstructor(1, 4).eval()
    first_norm = recon.features[1]
    first_norm.running_mean.fill_(5.0)  # stale statistics, as a moving shift block leaves them
    batches = [tuple(torch.randn(2, 6, 1, 32, 32, generator=torch.Generator().manual_seed(i))) for i in range(3)]
    fixed = recalibrate_batch_norm(recon, batches)
    conv_means = [recon.features[0](torch.cat(pair, dim=1)).mean(dim=(0, 2, 3)) for pair in batches]
    torch.testing.assert_close(fixed.features[1].running_mean, torch.stack(conv_means).mean(0), rtol=1e-4, atol=1e-5)
    assert not fixed.training and first_norm.running_mean.eq(5.0).all()  # the original is untouched
    assert recalibrate_batch_norm(torch.nn.Linear(2, 2), []) is None


def test_runs_saved_before_the_recipe_settings_read_as_trained():
    old = {
        k: v
        for k, v in DiscoveryConfig(lr=1e-2).to_dict().items()
        if k not in PAPER_RECIPE or k in ("lambda1", "lambda2", "lr")
    }
    cfg = DiscoveryConfig.from_saved(old)
    assert (cfg.part_lr("shift_block"), cfg.min_shift, cfg.balanced_k) == (1e-2, 0.0, False)
    assert DiscoveryConfig.from_saved(DiscoveryConfig().to_dict()) == DiscoveryConfig()  # today's runs are untouched


def test_discover_keeps_the_parts_at_the_best_held_out_rca(tmp_path):
    cfg = TINY.replace(train_steps=4)
    out = discover("tiny", cfg, tmp_path / "run", grid_every=0, rca_every=1, rca_pairs=6, progress=False)
    with (out / "log.csv").open(newline="") as f:
        scores = {int(r["step"]): float(r["rca_heldout"]) for r in csv.DictReader(f)}
    best = load_run(out / "best")
    meta = json.loads((out / "best" / "config.json").read_text())
    first_best = max(scores, key=lambda step: (scores[step], -step))  # the first step at the highest score
    assert best.step == meta["step"] == first_best and meta["rca_heldout"] == scores[first_best]
    # Those parts score it again on the same held-out pairs: what was kept is that state.
    trainer = DiscoveryTrainer(load_model("tiny"), cfg, "cpu")
    reconstructor = trainer.modules.reconstructor
    reconstructor.load_state_dict(load_tensors(out / "best" / "reconstructor.safetensors")[0])
    held_out = HeldOutPairs(trainer.model, cfg, trainer.timesteps, num_pairs=6)
    assert held_out.evaluate(best.shift_block, reconstructor)["rca_heldout"] == meta["rca_heldout"]


def test_a_resumed_run_keeps_a_better_best_only(tmp_path):
    out = tmp_path / "run"
    discover("tiny", TINY.replace(train_steps=2), out, grid_every=0, rca_every=1, rca_pairs=6, progress=False)
    meta = json.loads((out / "best" / "config.json").read_text())
    meta["rca_heldout"] = 2.0  # no state can beat it
    (out / "best" / "config.json").write_text(json.dumps(meta))
    discover(
        "tiny", TINY.replace(train_steps=4), out, resume=True, grid_every=0, rca_every=1, rca_pairs=6, progress=False
    )
    kept = json.loads((out / "best" / "config.json").read_text())
    assert kept["rca_heldout"] == 2.0 and kept["step"] == meta["step"]


def test_a_resumed_run_scores_its_best_on_the_same_number_of_held_out_pairs(tmp_path):
    out = tmp_path / "run"
    discover("tiny", TINY.replace(train_steps=2), out, grid_every=0, rca_every=1, rca_pairs=6, progress=False)
    meta = json.loads((out / "best" / "config.json").read_text())
    assert meta["rca_pairs"] == 6
    with pytest.raises(ValueError, match="scored on 6 held-out pairs; resume with --rca-pairs 6"):
        discover("tiny", TINY.replace(train_steps=3), out, resume=True, rca_every=1, rca_pairs=8, progress=False)
    meta["rca_heldout"] = -0.5  # any state beats it, so the resumed run writes its best again
    (out / "best" / "config.json").write_text(json.dumps(meta))
    discover("tiny", TINY.replace(train_steps=3), out, resume=True, grid_every=0, rca_every=1, progress=False)
    assert json.loads((out / "best" / "config.json").read_text())["rca_pairs"] == 6


def test_shift_norm_sets_each_shift_to_s_times_r_times_h():
    model = load_model("tiny")
    trainer = DiscoveryTrainer(model, TINY.replace(direction_init_std=0.3, shift_norm=0.25))
    block = trainer.modules.shift_block
    g = torch.Generator().manual_seed(0)
    h, emb = torch.randn(5, block.h_channels, 4, 4, generator=g), torch.randn(5, block.emb_channels, generator=g)
    s = torch.tensor([-2.0, -0.5, 0.0, 1.0, 3.0])
    for k in range(TINY.K):
        delta = block.delta(h, emb, [(k, s)])
        ratio = delta.pow(2).mean(dim=(1, 2, 3)).sqrt() / h.pow(2).mean(dim=(1, 2, 3)).sqrt()
        torch.testing.assert_close(ratio, s.abs() * 0.25)
    assert block.delta(h, emb, [(0, 0.0)]).eq(0).all()  # s = 0 is plain DDIM exactly
    two = block.delta(h, emb, [(0, 1.0), (1, -2.0)])  # edits add up, each at its own size
    torch.testing.assert_close(two, block.delta(h, emb, [(0, 1.0)]) + block.delta(h, emb, [(1, -2.0)]))


def test_a_run_with_shift_norm_trains_and_reopens_with_it(tmp_path):
    cfg = TINY.replace(train_steps=2, direction_init_std=0.1, shift_norm=0.5)
    out = discover("tiny", cfg, tmp_path / "run", grid_every=0, rca_every=0, progress=False)
    run = load_run(out)
    assert run.config.shift_norm == 0.5 and run.shift_block.shift_norm == 0.5
    h = torch.randn(3, run.shift_block.h_channels, 4, 4)
    delta = run.shift_block.delta(h, torch.randn(3, run.shift_block.emb_channels), [(1, 2.0)])
    ratio = delta.pow(2).mean(dim=(1, 2, 3)).sqrt() / h.pow(2).mean(dim=(1, 2, 3)).sqrt()
    torch.testing.assert_close(ratio, torch.full((3,), 1.0))  # |s| r = 2 x 0.5
    with pytest.raises(ValueError, match="shift_norm=0.0: give a size"):
        DiscoveryConfig(shift_norm=0.0, direction_init_std=0.1)
    with pytest.raises(ValueError, match="--direction-init-std"):
        DiscoveryConfig(shift_norm=0.5)


def test_edit_pairs_share_x_T_and_s_but_not_the_direction():
    cfg = TINY.replace(K=3, batch_size=8, edit_overlap_weight=1.0, direction_init_std=0.3)
    k, s = draw_edit_pairs(8, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(s[0::2], s[1::2]) and (k[0::2] != k[1::2]).all() and ((k >= 0) & (k < 3)).all()
    trainer = DiscoveryTrainer(load_model("tiny"), cfg)
    x_T, k, s = trainer.draw()
    assert torch.equal(x_T[0::2], x_T[1::2]) and not torch.equal(x_T[0], x_T[2])
    metrics = trainer.train_step()
    assert -1 <= metrics["edit_cosine"] <= 1
    assert len(trainer.cache) == 4  # each pair's real chain once: 8 samples, 4 x_T
    assert -1 <= trainer.train_step()["edit_cosine"] <= 1  # now with cached pairs in the batch
    with pytest.raises(ValueError, match="even batch_size"):
        DiscoveryConfig(batch_size=5, edit_overlap_weight=1.0)
    with pytest.raises(ValueError, match="edit_overlap_weight=-1"):
        DiscoveryConfig(edit_overlap_weight=-1.0)


def test_opposite_pairs_share_x_T_and_the_direction_with_opposite_shifts():
    cfg = TINY.replace(K=3, batch_size=8, even_edit_weight=1.0, direction_init_std=0.3)
    k, s = draw_opposite_pairs(8, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(k[0::2], k[1::2]) and torch.equal(s[0::2], -s[1::2]) and (s.abs() >= cfg.min_shift).all()
    trainer = DiscoveryTrainer(load_model("tiny"), cfg)
    x_T, k, s = trainer.draw()
    assert torch.equal(x_T[0::2], x_T[1::2]) and torch.equal(s[0::2], -s[1::2]) and not torch.equal(x_T[0], x_T[2])
    assert 0 <= trainer.train_step()["even_share"] <= 1
    assert len(trainer.cache) == 4  # each pair's real chain once
    assert 0 <= trainer.train_step()["even_share"] <= 1  # now with cached pairs in the batch
    with pytest.raises(ValueError, match="even batch_size"):
        DiscoveryConfig(batch_size=5, even_edit_weight=1.0)
    with pytest.raises(ValueError, match="even_edit_weight=-1"):
        DiscoveryConfig(even_edit_weight=-1.0)
    with pytest.raises(ValueError, match="set one of them to 0"):
        DiscoveryConfig(edit_overlap_weight=1.0, even_edit_weight=1.0)


def test_paired_even_share_is_known_for_known_edits():
    x0 = torch.ones(8, 1, 2, 2)
    edit = torch.tensor([1.0, 2.0, 0.0, 0.0]).view(1, 2, 2)
    other = torch.tensor([0.0, 0.0, 3.0, 0.0]).view(1, 2, 2)
    # odd (s and -s undo each other), even (both signs the same change), orthogonal, one sign only
    edits = torch.stack([edit, -edit, edit, edit, edit, other, edit, 0 * edit])
    share = paired_even_share(x0, x0 + edits)
    torch.testing.assert_close(share, torch.tensor([0.0, 1.0, 0.5, 0.5]))


def test_paired_edit_cosine_is_known_for_known_edits():
    x0 = torch.zeros(6, 1, 2, 2)
    edit = torch.tensor([1.0, 2.0, 0.0, 0.0]).view(1, 2, 2)
    orthogonal = torch.tensor([0.0, 0.0, 3.0, 0.0]).view(1, 2, 2)
    x0_shift = torch.stack([edit, 2 * edit, edit, -edit, edit, orthogonal])  # same, opposite, orthogonal
    torch.testing.assert_close(paired_edit_cosine(x0, x0_shift), torch.tensor([1.0, -1.0, 0.0]))


def test_r1_adds_half_gamma_times_the_squared_input_gradient_on_real_samples():
    # A linear D(x) = w . x + b has input gradient w everywhere: the penalty is gamma / 2 |w|^2.
    D = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 1), torch.nn.Flatten(0))
    real, fake = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    plain = discriminator_loss(D, real, fake)
    penalised = discriminator_loss(D, real, fake, r1=0.5)
    torch.testing.assert_close(penalised - plain, 0.25 * D[1].weight.square().sum())
    penalised.backward()  # the penalty trains D: its gradient on w is gamma w besides the BCE's
    assert D[1].weight.grad is not None and not real.requires_grad
    with pytest.raises(ValueError, match="discriminator_r1=-1.0: give a weight >= 0"):
        DiscoveryConfig(discriminator_r1=-1.0)


def test_a_run_with_r1_and_feature_matching_trains_logs_and_reopens_with_them(tmp_path):
    cfg = TINY.replace(train_steps=2, discriminator_r1=1.0, feature_matching_weight=1.0)
    discover("tiny", cfg, tmp_path / "run", grid_every=0, rca_every=2, progress=False)
    saved = load_run(tmp_path / "run").config
    assert (saved.discriminator_r1, saved.feature_matching_weight) == (1.0, 1.0)
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert rows[0]["grad_fm"] == "" and float(rows[1]["grad_fm"]) > 0  # measured with the held-out RCA


def test_feature_matching_is_zero_for_real_batches_and_free_of_the_features_scale():
    # D's features are a bias-free conv of the image: scaling its weights scales the features, not the term.
    D = Discriminator(torch.nn.Conv2d(1, 6, 3, bias=False), 6)
    modules = SimpleNamespace(discriminator=D, reconstructor=LeNetReconstructor(1, 4))
    cfg = DiscoveryConfig(K=4, feature_matching_weight=2.0)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(8, 1, 32, 32, generator=g) * 2 - 1
    x0_shift = (x0 + 0.3 * torch.randn(8, 1, 32, 32, generator=g)).clamp(-1, 1)
    k, s = torch.arange(8) % 4, torch.ones(8)
    assert generator_losses(modules, x0, x0, k, s, cfg)["loss_fm"] == 0
    term = generator_losses(modules, x0, x0_shift, k, s, cfg)["loss_fm"]
    with torch.no_grad():
        D.encoder.weight.mul_(10.0)
    torch.testing.assert_close(generator_losses(modules, x0, x0_shift, k, s, cfg)["loss_fm"], term)
    assert term > 0 and "loss_fm" not in generator_losses(
        modules, x0, x0_shift, k, s, cfg.replace(feature_matching_weight=0)
    )
    with pytest.raises(ValueError, match="feature_matching_weight=-1.0: give a weight >= 0"):
        DiscoveryConfig(feature_matching_weight=-1.0)
