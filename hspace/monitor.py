"""Honest progress: held-out reconstructor accuracy on fixed pairs, and the reconstructor's live units.

The running batch accuracy of training mixes a moving target with BatchNorm in training mode; the
held-out RCA is measured on pairs fixed once (x_T, k, s), with the reconstructor in eval mode, so
two evaluations of the same state give the same number.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from .config import DiscoveryConfig
from .sampling import sample
from .train import draw_edits

HELD_OUT_SEED = 10**6  # far from the training draws' seeds


def reconstructor_relus(reconstructor: nn.Module) -> list[nn.ReLU]:
    """The hidden ReLUs of the reconstructor's heads (where a dead logits head shows first)."""
    return [m for m in reconstructor.heads.modules() if isinstance(m, nn.ReLU)]


class HeldOutPairs:
    """``num_pairs`` fixed draws of (x_T, k, s) with their real x0, and the RCA a run state scores on them."""

    def __init__(
        self,
        model,
        cfg: DiscoveryConfig,
        timesteps,
        num_pairs: int = 256,
        seed: int = HELD_OUT_SEED,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
    ):
        if num_pairs < 1:
            raise ValueError(f"num_pairs={num_pairs}: give at least one held-out pair")
        self.model, self.cfg, self.timesteps, self.batch_size = model, cfg, list(timesteps), batch_size
        g = torch.Generator().manual_seed(seed)
        self.x_T = torch.randn(num_pairs, model.in_channels, model.image_size, model.image_size, generator=g).to(device)
        k, s = draw_edits(num_pairs, cfg, g)
        self.k, self.s = k.to(device), s.to(device)
        self._x0_real: torch.Tensor | None = None  # the real chains never change: computed once

    def batches(self):
        for i in range(0, self.x_T.shape[0], self.batch_size):
            yield slice(i, i + self.batch_size)

    @property
    def x0_real(self) -> torch.Tensor:
        if self._x0_real is None:
            with torch.no_grad():
                self._x0_real = torch.cat([sample(self.model, self.x_T[b], self.timesteps) for b in self.batches()])
        return self._x0_real

    @torch.no_grad()
    def evaluate(self, shift_block: nn.Module, reconstructor: nn.Module) -> dict[str, float]:
        """RCA, shift MAE and the share of live hidden units in the reconstructor's heads (a unit is live
        when it fires on at least one pair), in eval mode; the modules' modes are restored after."""
        modes = shift_block.training, reconstructor.training
        shift_block.eval()
        reconstructor.eval()
        fired = {}
        hooks = [
            relu.register_forward_hook(
                lambda m, _inputs, out: fired.__setitem__(m, fired.get(m, False) | (out > 0).any(0))
            )
            for relu in reconstructor_relus(reconstructor)
        ]
        correct, abs_err = 0, 0.0
        try:
            for b in self.batches():
                edits = [(self.k[b], self.s[b])]
                x0_shift = sample(self.model, self.x_T[b], self.timesteps, shift_block, edits, self.cfg.t_stop)
                logits, shift = reconstructor(self.x0_real[b], x0_shift)
                correct += (logits.argmax(1) == self.k[b]).sum().item()
                abs_err += (shift - self.s[b]).abs().sum().item()
        finally:
            for h in hooks:
                h.remove()
            shift_block.train(modes[0])
            reconstructor.train(modes[1])
        n = self.x_T.shape[0]
        units = torch.cat([f.flatten() for f in fired.values()]) if fired else torch.zeros(0)
        live = units.float().mean().item() if units.numel() else float("nan")
        return {"rca_heldout": correct / n, "shift_mae_heldout": abs_err / n, "live_units": live}


@torch.no_grad()
def recalibrate_batch_norm(
    reconstructor: nn.Module, pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> nn.Module | None:
    """A copy of the reconstructor whose BatchNorm statistics are the plain average over ``pairs``
    (x0, x~0) of the final shift block; None when it has no BatchNorm. Training leaves running
    statistics that trail the moving shift block; these describe the directions as they are."""
    recalibrated = copy.deepcopy(reconstructor)
    norms = [m for m in recalibrated.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return None
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over all batches
    recalibrated.train()
    for x0, x0_shift in pairs:
        recalibrated(x0, x0_shift)
    return recalibrated.eval()
