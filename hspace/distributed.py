"""Data-parallel discovery on torch.distributed: ``torchrun --nproc_per_node N -m hspace discover``.

A training step runs one backward per chain step, so wrapping the parts in DDP would all-reduce
M times; instead the gradients are averaged once per update, flattened into one all-reduce. Every
process draws the global batch from the shared seed and keeps its slice, so N processes give the
result of one process with the same global batch (without the real-chain cache, whose draws are
per process). BatchNorm statistics cover the global batch (torch's SyncBatchNorm is CUDA-only).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str) -> tuple[Distributed, str]:
        """Join the process group torchrun describes in the environment (one process: nothing)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(), device
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.startswith("cuda"):
            torch.cuda.set_device(local_rank)
            device = f"cuda:{local_rank}"
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), local_rank), device

    def slice(self, x: torch.Tensor) -> torch.Tensor:
        """This process's share of a global batch."""
        n = x.shape[0] // self.world
        return x[self.rank * n : (self.rank + 1) * n]

    def average_gradients(self, params) -> None:
        """Replace each gradient by its mean over processes, in one all-reduce."""
        grads = [p.grad for p in params if p.grad is not None]
        if self.world == 1 or not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def mean(self, metrics: dict[str, float]) -> dict[str, float]:
        if self.world == 1:
            return metrics
        values = torch.tensor(list(metrics.values()), dtype=torch.float64)
        dist.all_reduce(values)
        return dict(zip(metrics, (values / self.world).tolist()))

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def all_reduce(x: torch.Tensor) -> torch.Tensor:
    """Differentiable sum over processes (its backward sums the gradients over processes too)."""
    from torch.distributed.nn.functional import all_reduce as differentiable_all_reduce

    with warnings.catch_warnings():  # deprecated for _functional_collectives, whose all_reduce has no autograd
        warnings.simplefilter("ignore", FutureWarning)
        return differentiable_all_reduce(x)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch over all processes, with
    gradients through them (differentiable all-reduce). Same parameters and buffers as BatchNorm."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.ndim < 2:
            raise ValueError(f"expected a batch of at least 2 dimensions, got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)

        dims = [0, *range(2, x.ndim)]
        shape = [1, -1] + [1] * (x.ndim - 2)
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        totals = all_reduce(torch.cat([x.sum(dims), count]))
        n = totals[-1]
        mean = totals[:-1] / n
        centred = x - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean, m)
                self.running_var.lerp_(var * n / (n - 1), m)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def global_batch_norm(module: nn.Module) -> nn.Module:
    """Swap every BatchNorm in ``module`` for a ``GlobalBatchNorm`` with the same state."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            new = GlobalBatchNorm(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            new.load_state_dict(child.state_dict())
            setattr(module, name, new.to(next(iter(child.state_dict().values())).device))
        else:
            global_batch_norm(child)
    return module
