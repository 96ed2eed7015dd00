"""The optimised algorithm's parts: a cache of real chains, graph sizes for a memory budget, a second
thread to overlap work, and a frozen UNet run in bfloat16 / channels_last / compiled. None of them
changes what is estimated."""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext

import torch
from torch import nn

from .artifacts import restore_generator
from .backends.base import EncoderState, HSpaceModel
from .config import GradientPlan


class RealChainCache:
    """(x_T, x0) pairs of the real chain, which depends on nothing trainable: a reused x_T needs
    only its shifted chain. A ring buffer; each batch draws ``refresh`` of its samples fresh."""

    def __init__(self, size: int, refresh: float, seed: int = 0):
        self.size, self.refresh = size, refresh
        self.x_T = self.x0 = None
        self.filled = self.next = 0
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.filled

    def mix(self, x_T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Replace the tail of a fresh batch by cached x_T; returns the batch and the tail's x0."""
        n = x_T.shape[0]
        n_cached = min(n - math.ceil(self.refresh * n), self.filled)
        if self.size == 0 or n_cached <= 0:
            return x_T, None
        idx = torch.randperm(self.filled, generator=self.generator)[:n_cached].to(self.x_T.device)
        return torch.cat([x_T[: n - n_cached], self.x_T[idx]]), self.x0[idx]

    def add(self, x_T: torch.Tensor, x0: torch.Tensor) -> None:
        if self.size == 0:
            return
        if self.x_T is None:
            self.x_T = x_T.new_zeros(self.size, *x_T.shape[1:])
            self.x0 = x0.new_zeros(self.size, *x0.shape[1:])
        for a, b in zip(x_T[-self.size :], x0[-self.size :]):
            self.x_T[self.next], self.x0[self.next] = a, b
            self.next = (self.next + 1) % self.size
            self.filled = min(self.filled + 1, self.size)

    def state_dict(self) -> dict:
        state = {"filled": self.filled, "next": self.next, "generator": self.generator.get_state()}
        if self.x_T is not None:
            state.update(x_T=self.x_T, x0=self.x0)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.filled, self.next = int(state["filled"]), int(state["next"])
        restore_generator(self.generator, state["generator"])
        self.x_T, self.x0 = state.get("x_T"), state.get("x0")


class Overlap:
    """A second thread to run work beside this one, each with half the intra-op threads (two streams
    with all of them oversubscribe the cores). Pays where small convolutions scale poorly over
    threads (the 16x16 `tiny` preset: 1-7%), loses where they scale well (32x32 MNIST at batch 16:
    27% slower), so it is off by default (docs/benchmarks.md). The thread count is restored on exit."""

    def __enter__(self) -> Overlap:
        self.threads = torch.get_num_threads()
        half = max(1, self.threads // 2)
        torch.set_num_threads(half)
        self.pool = ThreadPoolExecutor(
            1, thread_name_prefix="hspace-recompute", initializer=torch.set_num_threads, initargs=(half,)
        )
        return self

    def submit(self, fn, *args) -> Future:
        return self.pool.submit(fn, *args)

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True)
        torch.set_num_threads(self.threads)


def saved_tensors_mb(fn, exclude: list[torch.Tensor]) -> float:
    """MB that autograd keeps for the backward of ``fn()``, by storage, leaving out ``exclude``
    (the frozen weights are kept anyway): the memory one kept step of the chain costs."""
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values()) / 2**20


class TunedModel(HSpaceModel):
    """A frozen model run faster: bfloat16 autocast, channels_last, torch.compile. Takes and gives
    float32, so the DDIM arithmetic and the trained parts stay in float32."""

    def __init__(self, inner: HSpaceModel, bf16: bool = False, channels_last: bool = False, compile: bool = False):
        super().__init__(inner.alphas_cumprod)
        self.inner = inner
        self.backend = inner.backend
        for name in ("h_channels", "emb_channels", "in_channels", "image_size"):
            setattr(self, name, getattr(inner, name))
        self.bf16, self.channels_last = bf16, channels_last
        if channels_last:
            inner.to(memory_format=torch.channels_last)
        self._encode = torch.compile(inner.encode) if compile else inner.encode
        self._decode = torch.compile(inner.decode) if compile else inner.decode

    def _autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()

    def encode(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, EncoderState]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast(x.device):
            h, state = self._encode(x, t)
        return h.float(), state

    def decode(self, h: torch.Tensor, state: EncoderState) -> torch.Tensor:
        with self._autocast(h.device):
            eps = self._decode(h, state)
        return eps.float().contiguous()

    def make_encoder(self, pretrained: bool) -> nn.Module:
        return self.inner.make_encoder(pretrained)

    def describe(self) -> dict:
        return self.inner.describe()


def tune_model(model: HSpaceModel, plan: GradientPlan) -> HSpaceModel:
    """The model itself when the plan switches nothing on; else a ``TunedModel`` around it."""
    device = next(model.parameters()).device
    if plan.channels_last and device.type == "cpu":
        raise ValueError(
            "channels_last is for CUDA: on CPU, PyTorch 2.13's backward through this UNet in channels_last "
            "crashed (segmentation fault); drop --channels-last"
        )
    bf16 = plan.bf16 == "always" or (plan.bf16 == "cuda" and device.type == "cuda")
    if not (bf16 or plan.channels_last or plan.compile):
        return model
    return TunedModel(model, bf16=bf16, channels_last=plan.channels_last, compile=plan.compile)
