"""EDSR super-resolution front end of STSR-Seg (Lim et al., 2017), as used by the CBRA paper.

The output is a latent "high-resolution image" with a few channels that only the segmentation
network reads; it is never supervised as RGB, so there is no MeanShift and no output activation.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=True)


class ResBlock(nn.Module):
    """conv-ReLU-conv, scaled and added to the identity; no batch norm (EDSR drops it on purpose)."""

    def __init__(self, features: int, res_scale: float) -> None:
        super().__init__()
        self.conv1 = _conv3x3(features, features)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(features, features)
        # The small residual scale (0.1) keeps a deep stack of un-normalised blocks stable in training.
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.conv1(x))) * self.res_scale + x


class UpsampleStage(nn.Module):
    """Sub-pixel convolution: conv to factor² × features, then PixelShuffle(factor)."""

    def __init__(self, features: int, factor: int) -> None:
        super().__init__()
        self.conv = _conv3x3(features, features * factor * factor)
        self.shuffle = nn.PixelShuffle(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


def upsample_factors(scale: int) -> tuple[int, ...]:
    """×2 stages for powers of two (×4 = two ×2 stages, as EDSR), a single ×3 stage for 3."""
    if scale == 3:
        return (3,)
    if scale >= 2 and scale & (scale - 1) == 0:
        return (2,) * (scale.bit_length() - 1)
    raise ValueError(f"EDSR scale must be 3 or a power of two, got {scale}")


class EDSR(nn.Module):
    """head conv → residual blocks → conv, global skip → sub-pixel upsampling → conv to latent channels."""

    def __init__(
        self, in_channels: int, features: int, blocks: int, res_scale: float, scale: int, out_channels: int
    ) -> None:
        super().__init__()
        self.head = _conv3x3(in_channels, features)
        self.blocks = nn.Sequential(*(ResBlock(features, res_scale) for _ in range(blocks)))
        self.body_conv = _conv3x3(features, features)
        self.upsampler = nn.Sequential(*(UpsampleStage(features, f) for f in upsample_factors(scale)))
        self.out_conv = _conv3x3(features, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.head(x)
        body = self.body_conv(self.blocks(head)) + head
        return self.out_conv(self.upsampler(body))
