"""The discovery step of the paper (section 4, Algorithm 1), checkpointed or vanilla.

Both algorithms compute the same gradients. Algorithm 1 runs the chain once without grad,
recording the shifted chain's inputs ("nodes"), then recomputes it one step at a time from the
last node back to x_T, passing dL/dnode backwards: memory is one step's activations plus M nodes.
``keep_graph_steps = N`` keeps the graph of the last N steps from the first pass instead of
recomputing them (N = M is the vanilla algorithm).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .backends.base import HSpaceModel
from .config import DiscoveryConfig
from .directions import ShiftBlock
from .nets import Discriminator, build_reconstructor
from .sampling import asymmetric_ddim_step, ddim_step, shifted_eps, timestep_batch
from .schedule import chain_alpha_bars, check_timesteps, uniform_timesteps


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
        self.shift_block = ShiftBlock(model.h_channels, model.emb_channels, cfg.K)
        self.reconstructor = build_reconstructor(cfg.reconstructor, model.in_channels, cfg.K)
        encoder = model.make_encoder(pretrained=cfg.discriminator_init == "pretrained")
        self.discriminator = Discriminator(encoder, model.h_channels)

    def generator_parameters(self) -> list[nn.Parameter]:
        return [*self.shift_block.parameters(), *self.reconstructor.parameters()]


def shifted_chain_step(model, shift_block, x, t, abar_t, abar_prev, edits, t_stop) -> torch.Tensor:
    """One step of the shifted chain: asymmetric (Eq. 2) for t >= t_stop, plain DDIM below."""
    eps, eps_hat = shifted_eps(model, x, timestep_batch(t, x), shift_block if t >= t_stop else None, edits)
    return asymmetric_ddim_step(x, eps, eps_hat, abar_t, abar_prev)


@torch.no_grad()
def _paired_step(model, shift_block, x_real, x_shift, t, abar_t, abar_prev, edits, t_stop):
    """Advance the real and the shifted chain together: one encoder call, one decoder call."""
    n = x_real.shape[0]
    if x_real is x_shift:  # the chains start from the same x_T: encode once
        eps, eps_hat = shifted_eps(model, x_real, timestep_batch(t, x_real), shift_block if t >= t_stop else None, edits)
        return asymmetric_ddim_step(x_real, eps, eps, abar_t, abar_prev), asymmetric_ddim_step(x_shift, eps, eps_hat, abar_t, abar_prev)
    x = torch.cat([x_real, x_shift])
    h, state = model.encode(x, timestep_batch(t, x))
    if t >= t_stop:
        h_s = h[n:]
        h_hat = h_s + shift_block.shift(h_s, state.map(lambda z: z[n:]), edits)
        eps_r, eps_s, eps_hat = model.decode(torch.cat([h, h_hat]), state.map(lambda z: torch.cat([z, z[n:]]))).split(n)
    else:
        eps_r, eps_s = model.decode(h, state).split(n)
        eps_hat = eps_s
    return asymmetric_ddim_step(x_real, eps_r, eps_r, abar_t, abar_prev), asymmetric_ddim_step(x_shift, eps_s, eps_hat, abar_t, abar_prev)


def run_chains(model, shift_block, x_T, edits, timesteps, t_stop, kept_steps) -> Chains:
    """First pass of Algorithm 1 (lines 1-14), keeping the graph of the last ``kept_steps`` steps."""
    steps = chain_alpha_bars(model.alphas_cumprod, timesteps)
    first_kept = len(steps) - kept_steps
    x_real = x_shift = x_T
    nodes, tail_input = [], None
    for i, (t, abar_t, abar_prev) in enumerate(steps):
        if i < first_kept:
            nodes.append(x_shift)
            x_real, x_shift = _paired_step(model, shift_block, x_real, x_shift, t, abar_t, abar_prev, edits, t_stop)
            continue
        if i == first_kept:
            tail_input = x_shift.detach().requires_grad_(i > 0)  # x_T itself needs no gradient
            x_shift = tail_input
        with torch.no_grad():
            x_real = ddim_step(x_real, model(x_real, timestep_batch(t, x_real)), abar_t, abar_prev)
        x_shift = shifted_chain_step(model, shift_block, x_shift, t, abar_t, abar_prev, edits, t_stop)
    return Chains(x_real, x_shift, nodes, tail_input)


def generator_losses(modules: DiscoveryModules, x0_real, x0_shift, k, s, cfg: DiscoveryConfig) -> dict[str, torch.Tensor]:
    """L_G = BCE(D(x~0), 1) and L_R = lambda1 CE(logits, k) + lambda2 L1(shift, s); also the batch RCA."""
    d_fake = modules.discriminator(x0_shift)
    loss_g = F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
    logits, shift = modules.reconstructor(x0_real, x0_shift)
    loss_r = cfg.lambda1 * F.cross_entropy(logits, k) + cfg.lambda2 * F.l1_loss(shift, s)
    acc = (logits.detach().argmax(dim=1) == k).float().mean()
    return {"loss_g": loss_g, "loss_r": loss_r, "acc": acc}


def discriminator_loss(discriminator: Discriminator, x0_real, x0_shift) -> torch.Tensor:
    """L_D = BCE(D(x0), 1) + BCE(D(x~0), 0), logits form."""
    real, fake = discriminator(x0_real), discriminator(x0_shift)
    return F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(
        fake, torch.zeros_like(fake)
    )


def compute_gradients(model, modules, opt_d, x_T, k, s, timesteps, cfg: DiscoveryConfig) -> dict[str, float]:
    """Update D, then leave dL/dparams of the shift block and reconstructor in their ``.grad``."""
    steps = chain_alpha_bars(model.alphas_cumprod, timesteps)
    edits = [(k, s)]
    kept = cfg.kept_steps
    chains = run_chains(model, modules.shift_block, x_T, edits, timesteps, cfg.t_stop, kept)

    # Step 1 (lines 15-16): the discriminator, real = x0, fake = x~0.
    opt_d.zero_grad(set_to_none=True)
    loss_d = discriminator_loss(modules.discriminator, chains.x0_real, chains.x0_shift.detach())
    loss_d.backward()
    opt_d.step()

    # Step 2 (lines 18-35): the generator loss at x~0, then back through the chain node by node.
    params = modules.generator_parameters()
    first_grad_step = len(steps) - max(kept, 1)
    if kept == 0:  # recompute the last step with grad (line 19-24 for i = 2)
        x_in = chains.nodes[-1].detach().requires_grad_(len(steps) > 1)
        x0_shift = shifted_chain_step(model, modules.shift_block, x_in, *steps[-1], edits, cfg.t_stop)
    else:
        x_in, x0_shift = chains.tail_input, chains.x0_shift
    modules.discriminator.requires_grad_(False)  # L_G trains the generator only
    losses = generator_losses(modules, chains.x0_real, x0_shift, k, s, cfg)
    modules.discriminator.requires_grad_(True)
    inputs = params + ([x_in] if x_in.requires_grad else [])
    torch.autograd.backward(losses["loss_g"] + losses["loss_r"], inputs=inputs)
    grad = x_in.grad
    for i in reversed(range(first_grad_step)):  # lines 31-35: one step at a time, last node first
        node = chains.nodes[i].detach().requires_grad_(i > 0)
        out = shifted_chain_step(model, modules.shift_block, node, *steps[i], edits, cfg.t_stop)
        torch.autograd.backward(out, grad, inputs=params + ([node] if i > 0 else []))
        grad = node.grad
    return {"loss_d": loss_d.item(), "loss_g": losses["loss_g"].item(), "loss_r": losses["loss_r"].item(), "acc": losses["acc"].item()}


class DiscoveryTrainer:
    """Owns the trained parts, their optimisers and the random draws of x_T, k and s."""

    def __init__(self, model: HSpaceModel, cfg: DiscoveryConfig, device: str | torch.device = "cpu"):
        self.model = model.freeze().to(device)
        self.cfg, self.device = cfg, torch.device(device)
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
            self.modules = DiscoveryModules(self.model, cfg).to(device)
        self.opt_g = torch.optim.Adam(self.modules.generator_parameters(), lr=cfg.lr)
        self.opt_d = torch.optim.Adam(self.modules.discriminator.parameters(), lr=cfg.lr)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step = 0

    def draw(self, batch_size: int | None = None):
        """x_T ~ N(0, I), k ~ U{0..K-1}, s ~ U[-S, S], one per sample."""
        n = batch_size or self.cfg.batch_size
        m = self.model
        x_T = torch.randn(n, m.in_channels, m.image_size, m.image_size, generator=self.generator)
        k = torch.randint(0, self.cfg.K, (n,), generator=self.generator)
        s = (torch.rand(n, generator=self.generator) * 2 - 1) * self.cfg.S
        return x_T.to(self.device), k.to(self.device), s.to(self.device)

    def train_step(self, batch=None) -> dict[str, float]:
        """One step of Algorithm 1 (or vanilla): update D, then the shift block and reconstructor."""
        x_T, k, s = batch if batch is not None else self.draw()
        self.modules.train()
        self.opt_g.zero_grad(set_to_none=True)
        metrics = compute_gradients(self.model, self.modules, self.opt_d, x_T, k, s, self.timesteps, self.cfg)
        self.opt_g.step()
        self.step += 1
        return metrics


def generator_gradients(model, modules: DiscoveryModules, batch, timesteps, cfg: DiscoveryConfig) -> dict[str, torch.Tensor]:
    """The gradients one training step gives the shift block and reconstructor, by parameter name.

    Works on the modules passed in (their discriminator takes its update), so pass a copy to compare
    algorithms from the same state.
    """
    opt_d = torch.optim.Adam(modules.discriminator.parameters(), lr=cfg.lr)
    for p in modules.generator_parameters():
        p.grad = None
    compute_gradients(model, modules, opt_d, *batch, timesteps, cfg)
    named = [*modules.shift_block.named_parameters("shift_block"), *modules.reconstructor.named_parameters("reconstructor")]
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in named}


def max_relative_difference(grads: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> float:
    """max over parameters of max|g - g_ref| / max|g_ref| (0 where both are exactly zero)."""
    worst = 0.0
    for name, ref in reference.items():
        diff = (grads[name] - ref).abs().max().item()
        scale = ref.abs().max().item()
        worst = max(worst, diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf")))
    return worst
