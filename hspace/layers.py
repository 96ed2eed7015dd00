"""Layers shared by the UNet backends and the trained parts (the shift block is Asyrp's DeltaBlock on ADM's norm)."""

from __future__ import annotations

import math

import torch
from torch import nn


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 or wider (float64 stays float64, for exactness checks), as in ADM."""

    def forward(self, x):
        return super().forward(x.to(torch.promote_types(x.dtype, torch.float32))).type(x.dtype)


def normalization(channels: int) -> nn.Module:
    """ADM's 32-group norm; narrower layers (which ADM cannot build) use gcd(32, channels) groups."""
    return GroupNorm32(math.gcd(32, channels), channels)
