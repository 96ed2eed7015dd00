"""The shift block f_t(h, k) of the paper's section 4.2: Asyrp's DeltaBlock with K output convs."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .backends.adm_unet import normalization
from .backends.base import EncoderState


class ShiftBlock(nn.Module):
    """``f_t(h, k)``: GroupNorm, SiLU, 1x1 conv, plus the frozen UNet's time embedding, GroupNorm, SiLU,
    then the k-th of K independent 1x1 output convs.

    The K output convs are stored as one weight ``[K x C x C]`` and bias ``[K x C]``, all zero at
    initialisation, so that training starts from x~0 == x0.
    """

    def __init__(self, h_channels: int, emb_channels: int, num_directions: int):
        super().__init__()
        if num_directions < 1:
            raise ValueError(f"K={num_directions}: the number of directions must be at least 1")
        self.h_channels, self.emb_channels, self.num_directions = h_channels, emb_channels, num_directions
        self.in_layers = nn.Sequential(normalization(h_channels), nn.SiLU(), nn.Conv2d(h_channels, h_channels, 1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, h_channels))
        self.out_norm = nn.Sequential(normalization(h_channels), nn.SiLU())
        self.out_weight = nn.Parameter(torch.zeros(num_directions, h_channels, h_channels))
        self.out_bias = nn.Parameter(torch.zeros(num_directions, h_channels))

    def features(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """The shared body, before the direction-specific output conv [N x C x h x w]."""
        z = self.in_layers(h) + self.emb_layers(emb).type(h.dtype)[..., None, None]
        return self.out_norm(z)

    def combine(self, edits: Sequence[tuple], batch: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample output conv ``sum_i s_i W[k_i]`` [N x C x C] and bias [N x C] for a list of (k, s)."""
        weight = bias = 0
        for k, s in edits:
            k = torch.as_tensor(k, device=device, dtype=torch.long).expand(batch)
            s = torch.as_tensor(s, device=device, dtype=self.out_weight.dtype).expand(batch)
            if not k.is_cuda and ((k < 0).any() or (k >= self.num_directions).any()):  # no GPU sync
                raise ValueError(f"direction index out of range: this block has K={self.num_directions} directions (0..{self.num_directions - 1})")
            weight = weight + s[:, None, None] * self.out_weight[k]
            bias = bias + s[:, None] * self.out_bias[k]
        return weight, bias

    def delta(self, h: torch.Tensor, emb: torch.Tensor, edits: Sequence[tuple]) -> torch.Tensor:
        """Delta h = sum_i s_i f_t(h, k_i) for edits ``[(k, s), ...]``, k and s scalars or per sample [N]."""
        return self.apply_directions(self.features(h, emb), edits)

    def apply_directions(self, z: torch.Tensor, edits: Sequence[tuple]) -> torch.Tensor:
        """The output convs on shared features z [N x C x h x w]: sum_i s_i (W[k_i] z + b[k_i])."""
        weight, bias = self.combine(edits, z.shape[0], z.device)
        return torch.einsum("nij,njhw->nihw", weight.to(z.dtype), z) + bias.to(z.dtype)[..., None, None]

    def shift(self, h: torch.Tensor, state: EncoderState, edits: Sequence[tuple]) -> torch.Tensor:
        """The ``Directions`` protocol of ``sampling``: the shift for h given the encoder's state."""
        return self.delta(h, state.emb, edits)

    def forward(self, h: torch.Tensor, emb: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """f_t(h, k) [N x C x h x w] for per-sample direction indices k [N]."""
        return self.delta(h, emb, [(k, 1.0)])
