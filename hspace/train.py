"""The discovery step of the paper (section 4, Algorithm 1), checkpointed or vanilla.

Both algorithms compute the same gradients. Algorithm 1 runs the chain once without grad,
recording the shifted chain's inputs ("nodes"), then recomputes it one step at a time from the
last node back to x_T, passing dL/dnode backwards: memory is one step's activations plus M nodes.
``keep_graph_steps = N`` keeps the graph of the last N steps from the first pass instead of
recomputing them (N = M is the vanilla algorithm). The optimised algorithm is Algorithm 1 with as
many steps kept as a memory budget allows, cached real chains, each recomputation overlapping the
backward of the step after it on a second thread, and on CUDA a bfloat16 frozen UNet (see speed.py).
``DiscoveryConfig.plan()`` resolves which of these a run uses, once.

Notation (paper section 4 and Algorithm 1):

| name here | paper | meaning |
|---|---|---|
| ``abar_t``, ``abar_prev`` | alpha_t, alpha_{t-1} (cumulative) | noise levels of a step's input and output |
| ``eps``, ``eps_hat`` | eps(x_t given h), eps(x_t given h_hat) | the frozen model's noise prediction, without and with the shift |
| ``h_hat`` | h + s f_t(h, k) | the shifted bottleneck activation |
| ``x0_real``, ``x0_shift`` | x_0, x~_0 | the ends of the real and the shifted chain from one x_T |
| ``nodes[i]`` | x~_{tau_i} | the shifted chain's input to step i, recorded without grad |
| ``k``, ``s`` | k, s | per-sample direction index [N] and magnitude [N] |
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .backends.base import HSpaceModel
from .config import DiscoveryConfig
from .directions import ShiftBlock
from .distributed import Distributed, global_batch_norm
from .metrics import even_share
from .nets import Discriminator, build_reconstructor
from .sampling import asymmetric_ddim_step, ddim_step, shifted_eps, timestep_batch
from .schedule import chain_alpha_bars, check_timesteps, uniform_timesteps
from .speed import Overlap, RealChainCache, saved_tensors_mb, tune_model


@dataclass
class Chains:
    """The first pass: real and shifted samples, the recorded nodes, and the differentiable tail."""

    x0_real: torch.Tensor
    x0_shift: torch.Tensor  # carries a graph from ``tail_input`` when steps were kept
    nodes: list[torch.Tensor]  # nodes[i] is the shifted chain's input to step i (no graph)
    tail_input: torch.Tensor | None  # input of the first kept step (requires grad), None if none kept


class DiscoveryModules(nn.Module):
    """The three trained parts: shift block f, reconstructor R and discriminator D."""

    def __init__(self, model: HSpaceModel, cfg: DiscoveryConfig):
        super().__init__()
        self.shift_block = ShiftBlock(model.h_channels, model.emb_channels, cfg.K, cfg.shift_norm)
        if cfg.direction_init_std > 0:  # distinct directions from the start, instead of x~0 == x0
            nn.init.normal_(self.shift_block.out_weight, std=cfg.direction_init_std)
        self.reconstructor = build_reconstructor(cfg.reconstructor, model.in_channels, cfg.K)
        encoder = model.make_encoder(pretrained=cfg.discriminator_init == "pretrained")
        self.discriminator = Discriminator(encoder, model.h_channels)

    def generator_parameters(self) -> list[nn.Parameter]:
        return [*self.shift_block.parameters(), *self.reconstructor.parameters()]


def draw_edits(n: int, cfg: DiscoveryConfig, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Direction indices k [n] and magnitudes s [n]: |s| uniform in [min_shift, S] with a random sign
    (min_shift = 0 is the paper's s ~ U[-S, S]); with ``balanced_k`` every index equally often (+-1)."""
    if cfg.balanced_k:
        offset = torch.randint(0, cfg.K, (1,), generator=generator)
        k = ((torch.arange(n) + offset) % cfg.K)[torch.randperm(n, generator=generator)]
    else:
        k = torch.randint(0, cfg.K, (n,), generator=generator)
    u = torch.rand(n, generator=generator) * 2 - 1  # sign and size from one draw
    s = u.sign() * (cfg.min_shift + u.abs() * (cfg.S - cfg.min_shift))
    return k, s


def draw_edit_pairs(n: int, cfg: DiscoveryConfig, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``draw_edits`` for a batch of pairs: samples 2i and 2i + 1 share s but not k [n]."""
    k, s = draw_edits(n // 2, cfg, generator)
    other = (k + torch.randint(1, cfg.K, k.shape, generator=generator)) % cfg.K  # any index but k
    return torch.stack([k, other], dim=1).flatten(), s.repeat_interleave(2)


def draw_opposite_pairs(n: int, cfg: DiscoveryConfig, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``draw_edits`` for a batch of pairs: samples 2i and 2i + 1 share k, with s and -s [n]."""
    k, s = draw_edits(n // 2, cfg, generator)
    return k.repeat_interleave(2), torch.stack([s, -s], dim=1).flatten()


def paired_even_share(x0_real: torch.Tensor, x0_shift: torch.Tensor) -> torch.Tensor:
    """``metrics.even_share`` of the edits x~0 - x0 of samples 2i and 2i + 1 [N/2] (same x_T and k,
    s and -s): 0 when the edit flips with the sign of s, 1 when both signs make the same change."""
    edits = x0_shift - x0_real.detach()  # [N x C x H x W]
    return even_share(edits[0::2], edits[1::2])


def paired_edit_cosine(x0_real: torch.Tensor, x0_shift: torch.Tensor) -> torch.Tensor:
    """Cosine between the edits x~0 - x0 of samples 2i and 2i + 1 [N/2], which share x_T and s."""
    edits = (x0_shift - x0_real.detach()).flatten(1)  # [N x P]
    return F.cosine_similarity(edits[0::2], edits[1::2], dim=1, eps=1e-8)


def shifted_chain_step(model, shift_block, x, t, abar_t, abar_prev, edits, t_stop) -> torch.Tensor:
    """One step of the shifted chain: asymmetric (Eq. 2) for t >= t_stop, plain DDIM below."""
    eps, eps_hat = shifted_eps(model, x, timestep_batch(t, x), shift_block if t >= t_stop else None, edits)
    return asymmetric_ddim_step(x, eps, eps_hat, abar_t, abar_prev)


def _paired_step(model, shift_block, x_real, x_shift, t, abar_t, abar_prev, edits, t_stop, shared: bool):
    """Advance the real and the shifted chain together: one encoder call, one decoder call.

    ``shared``: the real chain is ``x_shift[:len(x_real)]`` (both start at x_T), so it is encoded once.
    Under grad the real chain rides along detached: batching it costs less than a call of its own.
    """
    n_real = x_real.shape[0]  # R real chains beside the N shifted ones
    x = x_shift if shared else torch.cat([x_real, x_shift])  # [(N or R + N) x C x H x W]
    first = 0 if shared else n_real  # where the shifted chain starts in x
    h, state = model.encode(x, timestep_batch(t, x))  # h: [len(x) x C_h x h x w]
    if t >= t_stop:
        h_s = h[first:]  # [N x C_h x h x w]
        h_hat = h_s + shift_block.shift(h_s, state.map(lambda z: z[first:]), edits)
        eps_all = model.decode(torch.cat([h, h_hat]), state.map(lambda z: torch.cat([z, z[first:]])))
        eps, eps_hat = eps_all[: len(x)], eps_all[len(x) :]  # [len(x) x C x H x W], [N x C x H x W]
    else:
        eps = model.decode(h, state)
        eps_hat = eps[first:]
    eps_r, eps_s = eps[:n_real].detach(), eps[first:]  # [R x C x H x W], [N x C x H x W]
    return asymmetric_ddim_step(x_real, eps_r, eps_r, abar_t, abar_prev), asymmetric_ddim_step(
        x_shift, eps_s, eps_hat, abar_t, abar_prev
    )


def run_chains(
    model, shift_block, x_T, edits, timesteps, t_stop, kept_steps, x0_cached=None, fuse_real=False
) -> Chains:
    """First pass of Algorithm 1 (lines 1-14), keeping the graph of the last ``kept_steps`` steps.

    ``x0_cached`` [n]: the real chains' results for the last n samples of ``x_T``, known from an
    earlier step (the real chain depends on nothing trainable), so only the others run.
    ``fuse_real``: in kept steps too, run the real chain in the shifted chain's UNet calls, when
    the cache serves part of the batch (those few fresh samples cost less there than in a call apart).
    """
    steps = chain_alpha_bars(model.alphas_cumprod, timesteps)  # M x (t, abar_t, abar_prev)
    first_kept = len(steps) - kept_steps
    n_fresh = x_T.shape[0] - (0 if x0_cached is None else x0_cached.shape[0])
    x_real, x_shift = x_T[:n_fresh], x_T  # [n_fresh x C x H x W], [N x C x H x W]
    nodes, tail_input = [], None
    for i, (t, abar_t, abar_prev) in enumerate(steps):
        if i < first_kept:
            nodes.append(x_shift)
            with torch.no_grad():
                x_real, x_shift = _paired_step(
                    model, shift_block, x_real, x_shift, t, abar_t, abar_prev, edits, t_stop, shared=i == 0
                )
            continue
        if i == first_kept:
            tail_input = x_shift.detach().requires_grad_(i > 0)  # x_T itself needs no gradient
            x_shift = tail_input
        if n_fresh and fuse_real and x0_cached is not None:
            x_real, x_shift = _paired_step(
                model, shift_block, x_real, x_shift, t, abar_t, abar_prev, edits, t_stop, shared=i == 0
            )
            continue
        if n_fresh:
            with torch.no_grad():
                x_real = ddim_step(x_real, model(x_real, timestep_batch(t, x_real)), abar_t, abar_prev)
        x_shift = shifted_chain_step(model, shift_block, x_shift, t, abar_t, abar_prev, edits, t_stop)
    x0_real = x_real if x0_cached is None else torch.cat([x_real, x0_cached])
    return Chains(x0_real, x_shift, nodes, tail_input)


L_R_TERMS = ("loss_ce", "loss_l1", "loss_overlap", "loss_even", "loss_fm")  # what L_R sums, when present


def generator_losses(
    modules: DiscoveryModules, x0_real, x0_shift, k, s, cfg: DiscoveryConfig
) -> dict[str, torch.Tensor]:
    """L_G = BCE(D(x~0), 1) and L_R = lambda1 CE(logits, k) + lambda2 L1(shift, s); also the batch RCA.

    With ``edit_overlap_weight`` w > 0 (a batch of pairs, ``draw_edit_pairs``), L_R also has
    w * mean cos^2 between the two edits of each pair: different directions should edit differently.
    With ``even_edit_weight`` w > 0 (pairs from ``draw_opposite_pairs``), L_R also has w * the mean
    share of each edit that is even in s (``paired_even_share``): s and -s should undo each other.
    With ``feature_matching_weight`` w > 0, L_R also has w * |mean phi(x~0) - mean phi(x0)|^2 / tr Var phi(x0),
    phi the discriminator's pooled features: the batch of edits should look like the real one to D on average.
    """
    features = modules.discriminator.features(x0_shift)  # [N x C]
    d_fake = modules.discriminator.head(features).squeeze(1)  # [N]
    loss_g = F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
    logits, shift = modules.reconstructor(x0_real, x0_shift)
    loss_ce, loss_l1 = cfg.lambda1 * F.cross_entropy(logits, k), cfg.lambda2 * F.l1_loss(shift, s)
    acc = (logits.detach().argmax(dim=1) == k).float().mean()
    losses = {"loss_g": loss_g, "loss_ce": loss_ce, "loss_l1": loss_l1, "acc": acc}
    if cfg.edit_overlap_weight > 0:
        cosine = paired_edit_cosine(x0_real, x0_shift)  # [N/2]
        losses["loss_overlap"] = cfg.edit_overlap_weight * cosine.pow(2).mean()
        losses["edit_cosine"] = cosine.detach().mean()
    if cfg.feature_matching_weight > 0:
        with torch.no_grad():
            real = modules.discriminator.features(x0_real)  # [N x C]
        # In units of the real features' total variance, so that one weight fits a fresh D and a trained one.
        gap = (features.mean(0) - real.mean(0)).square().sum() / real.var(0).sum().clamp_min(1e-12)
        losses["loss_fm"] = cfg.feature_matching_weight * gap
    if cfg.even_edit_weight > 0:
        share = paired_even_share(x0_real, x0_shift)  # [N/2]
        losses["loss_even"] = cfg.even_edit_weight * share.mean()
        losses["even_share"] = share.detach().mean()
    losses["loss_r"] = sum(losses[t] for t in L_R_TERMS if t in losses)
    return losses


def loss_gradient_norms(losses: dict[str, torch.Tensor], x0_shift: torch.Tensor) -> dict[str, float]:
    """|d term / d x~0| for L_G, lambda1 CE, lambda2 L1 (and the edit-overlap, even-edit or
    feature-matching term): which term steers the shifted samples."""
    terms = [t for t in ("loss_g", *L_R_TERMS) if t in losses]
    norms = {}
    for t in terms:
        (g,) = torch.autograd.grad(losses[t], x0_shift, retain_graph=True)
        norms["grad_" + t.removeprefix("loss_")] = g.norm().item()
    return norms


def discriminator_loss(discriminator: Discriminator, x0_real, x0_shift, r1: float = 0.0) -> torch.Tensor:
    """L_D = BCE(D(x0), 1) + BCE(D(x~0), 0), logits form; with r1 > 0 plus the R1 penalty
    r1 / 2 * E |dD(x0)/dx0|^2 (Mescheder et al. 2018), which keeps D flat around real samples."""
    x0_real = x0_real.detach().requires_grad_(r1 > 0)
    real, fake = discriminator(x0_real), discriminator(x0_shift)
    loss = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(
        fake, torch.zeros_like(fake)
    )
    if r1 > 0:
        (grad,) = torch.autograd.grad(real.sum(), x0_real, create_graph=True)  # [N x C x H x W]
        loss = loss + r1 / 2 * grad.square().flatten(1).sum(1).mean()
    return loss


def step_graphs_mb(model, shift_block, cfg: DiscoveryConfig, timesteps, batch_size: int) -> list[float]:
    """MB of autograd state each step of the chain keeps at ``batch_size``: measured on one shifted
    (asymmetric) step and, if the chain has any, one plain DDIM step, which is smaller."""
    device = next(shift_block.parameters()).device
    g = torch.Generator().manual_seed(0)  # not the training draws: measuring must not shift them
    x = torch.randn(batch_size, model.in_channels, model.image_size, model.image_size, generator=g)
    x = x.to(device).requires_grad_()  # [N x C x H x W]
    k = torch.randint(0, cfg.K, (batch_size,), generator=g).to(device)
    s = torch.ones(batch_size, device=device)
    steps = chain_alpha_bars(model.alphas_cumprod, timesteps)
    frozen = [*model.parameters(), *model.buffers(), *shift_block.parameters()]
    sizes = {}
    for step in (steps[0], steps[-1]):
        shifted = step[0] >= cfg.t_stop
        if shifted not in sizes:
            run = partial(shifted_chain_step, model, shift_block, x, *step, [(k, s)], cfg.t_stop)
            sizes[shifted] = saved_tensors_mb(run, exclude=frozen) + x.nbytes / 2**20
    return [sizes[t >= cfg.t_stop] for t, _, _ in steps]


def plan_kept_steps(model, shift_block, cfg: DiscoveryConfig, timesteps, batch_size: int) -> int:
    """The steps whose graph the first pass keeps: the plan's number, or as many as its memory budget fits."""
    plan = cfg.plan()
    sizes = step_graphs_mb(model, shift_block, cfg, timesteps, batch_size) if plan.measures_graphs else None
    return plan.kept(len(timesteps), sizes)


def compute_gradients(
    model,
    modules,
    opt_d,
    x_T,
    k,
    s,
    timesteps,
    cfg: DiscoveryConfig,
    kept: int,
    x0_cached=None,
    reduce_gradients=None,
    diagnose: bool = False,
) -> tuple[dict[str, float], torch.Tensor]:
    """Update D, then leave dL/dparams of the shift block and reconstructor in their ``.grad``.

    Returns the step's metrics and the real chains' x0 (for the cache). ``kept``: steps whose graph
    is kept (``plan_kept_steps``); ``reduce_gradients(params)``: averages gradients over
    processes before D's update (data-parallel training); ``diagnose``: also the gradient norms of
    the three loss terms at x~0 (``loss_gradient_norms``).
    """
    plan = cfg.plan()
    steps = chain_alpha_bars(model.alphas_cumprod, timesteps)
    edits = [(k, s)]
    chains = run_chains(model, modules.shift_block, x_T, edits, timesteps, cfg.t_stop, kept, x0_cached, plan.fuse_real)

    def recompute(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Step i of the shifted chain again from its node, with graph (lines 19-24 / 31-33)."""
        node = chains.nodes[i].detach().requires_grad_(i > 0)  # x_T itself needs no gradient
        return node, shifted_chain_step(model, modules.shift_block, node, *steps[i], edits, cfg.t_stop)

    first_grad_step = len(steps) - max(kept, 1)  # steps before it are recomputed one at a time
    # Overlap: a second thread recomputes step i while this one runs step i + 1's backward; a
    # recomputation needs only its node, not the gradient arriving from later steps.
    with Overlap() if plan.overlap and first_grad_step > 0 else nullcontext() as pool:
        ahead = pool.submit(recompute, first_grad_step - 1) if pool else None

        # Step 1 (lines 15-16): the discriminator, real = x0, fake = x~0.
        opt_d.zero_grad(set_to_none=True)
        loss_d = discriminator_loss(
            modules.discriminator, chains.x0_real, chains.x0_shift.detach(), cfg.discriminator_r1
        )
        loss_d.backward()
        if reduce_gradients is not None:
            reduce_gradients(modules.discriminator.parameters())
        opt_d.step()

        # Step 2 (lines 18-35): the generator loss at x~0, then back through the chain node by node.
        params = modules.generator_parameters()
        x_in, x0_shift = recompute(len(steps) - 1) if kept == 0 else (chains.tail_input, chains.x0_shift)
        modules.discriminator.requires_grad_(False)  # L_G trains the generator only
        losses = generator_losses(modules, chains.x0_real, x0_shift, k, s, cfg)
        modules.discriminator.requires_grad_(True)
        diagnostics = loss_gradient_norms(losses, x0_shift) if diagnose and x0_shift.requires_grad else {}
        inputs = params + ([x_in] if x_in.requires_grad else [])
        torch.autograd.backward(losses["loss_g"] + losses["loss_r"], inputs=inputs)
        grad = x_in.grad
        for i in reversed(range(first_grad_step)):  # lines 31-35: one step at a time, last node first
            node, out = ahead.result() if ahead else recompute(i)
            ahead = pool.submit(recompute, i - 1) if pool and i > 0 else None
            torch.autograd.backward(out, grad, inputs=params + ([node] if i > 0 else []))
            grad = node.grad
    metrics = {
        "loss_d": loss_d.item(),
        **{
            name: losses[name].item()
            for name in ("loss_g", "loss_r", "acc", "edit_cosine", "even_share")
            if name in losses
        },
        **diagnostics,
    }
    return metrics, chains.x0_real


class DiscoveryTrainer:
    """Owns the trained parts, their optimisers, the random draws of x_T, k and s, and the
    optimised algorithm's state (real-chain cache, how many steps keep their graph)."""

    def __init__(
        self,
        model: HSpaceModel,
        cfg: DiscoveryConfig,
        device: str | torch.device = "cpu",
        dist: Distributed | None = None,
    ):
        self.cfg, self.device, self.dist = cfg, torch.device(device), dist or Distributed()
        # Batches of pairs that share x_T: with s and another k (edit overlap), or k and -s (even edits).
        self.paired = cfg.edit_overlap_weight > 0 or cfg.even_edit_weight > 0
        unit = self.dist.world * (2 if self.paired else 1)  # a process holds whole pairs
        if cfg.batch_size % unit:
            raise ValueError(
                f"batch_size={cfg.batch_size} does not split over {self.dist.world} processes"
                f"{' in pairs' if self.paired else ''}: choose a multiple of {unit}"
            )
        frozen = model.freeze().to(device)
        self.plan = cfg.plan()
        self.model = tune_model(frozen, self.plan)
        self.timesteps = check_timesteps(uniform_timesteps(cfg.M, model.num_train_steps), model.num_train_steps)
        if cfg.t_stop > self.timesteps[0]:
            raise ValueError(
                f"t_stop={cfg.t_stop} is above the chain's first timestep {self.timesteps[0]}: no step would be "
                f"shifted; choose t_stop <= {self.timesteps[0]}"
            )
        if cfg.t_stop < 0:
            raise ValueError(f"t_stop={cfg.t_stop} must be >= 0")
        with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's RNG
            torch.manual_seed(cfg.seed)
            self.modules = DiscoveryModules(frozen, cfg).to(device)
        if self.dist.world > 1:
            global_batch_norm(self.modules)
        self.opt_g = torch.optim.Adam(
            [
                {"params": self.modules.shift_block.parameters(), "lr": cfg.part_lr("shift_block")},
                {"params": self.modules.reconstructor.parameters(), "lr": cfg.part_lr("reconstructor")},
            ]
        )
        self.opt_d = torch.optim.Adam(self.modules.discriminator.parameters(), lr=cfg.part_lr("discriminator"))
        self.base_lrs = [[g["lr"] for g in opt.param_groups] for opt in (self.opt_g, self.opt_d)]
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.cache = RealChainCache(self.plan.real_cache, cfg.real_refresh, seed=cfg.seed + 1 + self.dist.rank)
        self._kept: int | None = None
        self.step = 0

    @property
    def local_batch_size(self) -> int:
        return self.cfg.batch_size // self.dist.world

    @property
    def kept_steps(self) -> int:
        """Steps whose graph the first pass keeps; for a memory budget, each step's graph is measured once."""
        if self._kept is None:
            self._kept = plan_kept_steps(
                self.model, self.modules.shift_block, self.cfg, self.timesteps, self.local_batch_size
            )
        return self._kept

    def step_graphs_mb(self) -> list[float]:
        """MB of autograd state each step of the chain keeps at this process's batch size."""
        return step_graphs_mb(self.model, self.modules.shift_block, self.cfg, self.timesteps, self.local_batch_size)

    def draw(self, batch_size: int | None = None):
        """x_T ~ N(0, I) and (k, s) from ``draw_edits``, one per sample (``draw_edit_pairs`` or
        ``draw_opposite_pairs``, each x_T twice, when paired): the global batch is drawn and this
        process keeps its slice, so any number of processes sees the same samples."""
        n = batch_size or self.cfg.batch_size
        m = self.model
        n_noise = n // 2 if self.paired else n
        x_T = torch.randn(n_noise, m.in_channels, m.image_size, m.image_size, generator=self.generator)
        if self.paired:
            x_T = x_T.repeat_interleave(2, dim=0)  # [n x C x H x W], pairs adjacent
            draw_pairs = draw_edit_pairs if self.cfg.edit_overlap_weight > 0 else draw_opposite_pairs
            k, s = draw_pairs(n, self.cfg, self.generator)
        else:
            k, s = draw_edits(n, self.cfg, self.generator)
        if batch_size is None:
            x_T, k, s = self.dist.slice(x_T), self.dist.slice(k), self.dist.slice(s)
        return x_T.to(self.device), k.to(self.device), s.to(self.device)

    def set_learning_rates(self):
        """Each part's rate times ``cfg.lr_factor`` of the step about to be taken (the
        discriminator's at its full rate throughout when ``cfg.discriminator_warmdown`` is off)."""
        factor = self.cfg.lr_factor(self.step)
        factor_d = factor if self.cfg.discriminator_warmdown else 1.0
        for opt, base, f in zip((self.opt_g, self.opt_d), self.base_lrs, (factor, factor_d)):
            for group, lr in zip(opt.param_groups, base):
                group["lr"] = lr * f

    def train_step(self, batch=None, diagnose: bool = False) -> dict[str, float]:
        """One step of Algorithm 1 (or vanilla, or optimised): update D, then the shift block and
        reconstructor. Without ``batch``, draws one (mixing in cached real chains when on).
        ``diagnose``: also the loss terms' gradient norms at x~0 (grad_g, grad_ce, grad_l1)."""
        if batch is None:
            x_T, k, s = self.draw()
            if self.paired:  # cached chains replace whole pairs
                x_T, x0_cached = self.cache.mix(x_T[0::2])
                x_T = x_T.repeat_interleave(2, dim=0)
                x0_cached = None if x0_cached is None else x0_cached.repeat_interleave(2, dim=0)
            else:
                x_T, x0_cached = self.cache.mix(x_T)
        else:
            (x_T, k, s), x0_cached = batch[:3], (batch[3] if len(batch) > 3 else None)
        self.modules.train()
        self.set_learning_rates()
        self.opt_g.zero_grad(set_to_none=True)
        reduce = self.dist.average_gradients if self.dist.world > 1 else None
        metrics, x0_real = compute_gradients(
            self.model,
            self.modules,
            self.opt_d,
            x_T,
            k,
            s,
            self.timesteps,
            self.cfg,
            self.kept_steps,
            x0_cached,
            reduce,
            diagnose,
        )
        n_fresh = x_T.shape[0] - (0 if x0_cached is None else x0_cached.shape[0])
        every = 2 if self.paired else 1  # each pair's chain once
        self.cache.add(x_T[:n_fresh:every], x0_real[:n_fresh:every])
        if reduce is not None:
            reduce(self.modules.generator_parameters())
        self.opt_g.step()
        self.step += 1
        return self.dist.mean(metrics)


def generator_gradients(
    model, modules: DiscoveryModules, batch, timesteps, cfg: DiscoveryConfig
) -> dict[str, torch.Tensor]:
    """The gradients one training step gives the shift block and reconstructor, by parameter name.

    Works on the modules passed in (their discriminator takes its update), so pass a copy to compare
    algorithms from the same state.
    """
    opt_d = torch.optim.Adam(modules.discriminator.parameters(), lr=cfg.part_lr("discriminator"))
    for p in modules.generator_parameters():
        p.grad = None
    kept = plan_kept_steps(model, modules.shift_block, cfg, timesteps, batch[0].shape[0])  # as the trainer would
    compute_gradients(model, modules, opt_d, *batch, timesteps, cfg, kept)
    named = [
        *modules.shift_block.named_parameters("shift_block"),
        *modules.reconstructor.named_parameters("reconstructor"),
    ]
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in named}


def max_relative_difference(grads: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> float:
    """max over parameters of max|g - g_ref| / max|g_ref| (0 where both are exactly zero)."""
    worst = 0.0
    for name, ref in reference.items():
        diff = (grads[name] - ref).abs().max().item()
        scale = ref.abs().max().item()
        worst = max(worst, diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf")))
    return worst
