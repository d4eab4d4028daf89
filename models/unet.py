"""U-Net decoder on the ResNet-D encoder: STSR-Seg's segmentation back end (authors-code.md §1.3).

Decoder widths follow the encoder: each stage upsamples to the width of the skip it joins, so any
encoder depth/width works (ResNet-50 with width 64 gives the authors' 2048→1024→512→256→128).
"""

from __future__ import annotations

import torch
from torch import nn

from .resnet_d import ResNetDEncoder

# The head predicts HEAD_SHUFFLE² sub-pixels per stem pixel: the stem sits at half the input
# resolution, and the paper replaces the last decoder upsampling by this learnt one.
HEAD_SHUFFLE = 2


class UpConv(nn.Module):
    """Nearest ×2, conv3×3, BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(self.up(x))))


class ConvBlock(nn.Module):
    """2 × (conv3×3, BN, ReLU)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=True)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(x)))


class DecoderStage(nn.Module):
    """Upsample the deeper map, concatenate [skip, upsampled], fuse; optionally a trailing BN.

    The authors follow the three deepest stages with ReLU then BN. The fused map already ends in a
    ReLU, so that extra ReLU is the identity (bit for bit) and is left out; the BN is kept.
    The concatenation order (skip first) is the usual U-Net one; shapes alone cannot confirm it
    against the authors' weights, both halves having the same width.
    """

    def __init__(self, in_channels: int, skip_channels: int, post_norm: bool) -> None:
        super().__init__()
        self.up = UpConv(in_channels, skip_channels)
        self.fuse = ConvBlock(2 * skip_channels, skip_channels)
        self.post_bn = nn.BatchNorm2d(skip_channels) if post_norm else None

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.fuse(torch.cat((skip, self.up(x)), dim=1))
        return x if self.post_bn is None else self.post_bn(x)


class SegHead(nn.Module):
    """1×1 conv to HEAD_SHUFFLE² channels + PixelShuffle → one channel of logits at the input size."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, HEAD_SHUFFLE * HEAD_SHUFFLE, 1, bias=True)
        self.shuffle = nn.PixelShuffle(HEAD_SHUFFLE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class UNet(nn.Module):
    """ResNet-D encoder + 4 decoder stages + sub-pixel head; returns 1-channel logits at the input size.

    The authors' class also builds five plain conv blocks (Conv1..Conv5, 75 M parameters) that its
    forward never calls; they are not built here and the converter drops their weights.
    """

    def __init__(self, in_channels: int, depth: int, width: int) -> None:
        super().__init__()
        self.encoder = ResNetDEncoder(in_channels, depth, width)
        c = self.encoder.channels
        # Deepest first: stage i joins skip c[3 - i]; all but the last have the trailing BN.
        self.decoder = nn.ModuleList(DecoderStage(c[4 - i], c[3 - i], post_norm=i < 3) for i in range(4))
        self.head = SegHead(c[0])

    def decode(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for stage, skip in zip(self.decoder, reversed(features[:-1]), strict=True):
            x = stage(x, skip)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encoder(x))
