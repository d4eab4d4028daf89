"""ResNet encoder with the "deep stem" (ResNet-C/D style) used by STSR-Seg's U-Net.

Follows the description of the authors' network (authors-code.md §1.3):
- stem: three 3×3 convs (the first with stride 2) instead of one 7×7, ending in 2·width channels;
- the stride of a bottleneck sits on its 3×3 conv (ResNet v1.5);
- the shortcut is a plain strided 1×1 conv + BN (no average pooling, despite the "-D" name);
- layer3 and layer4 get dilation 2 and 4 on their 3×3 convs while keeping their stride 2, so the
  output stride stays 32: the dilation only widens the receptive field.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

# depth → (block kind, blocks per layer)
_LAYOUTS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}
# Dilation of the 3×3 convs of layer1..layer4, as the authors set it after building the ResNet.
_DILATIONS = (1, 1, 2, 4)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(
        in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
    )


class Shortcut(nn.Module):
    """Projection shortcut for a block that changes resolution or width: strided 1×1 conv + BN."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
        self.bn = _bn(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class BasicBlock(nn.Module):
    expansion: ClassVar[int] = 1

    def __init__(self, in_channels: int, planes: int, stride: int, dilation: int) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = _conv3x3(in_channels, planes, stride=stride)
        self.bn1 = _bn(planes)
        # The authors dilate every `conv2` of layer3/4; in a basic block that is the second 3×3 conv.
        self.conv2 = _conv3x3(planes, out_channels, dilation=dilation)
        self.bn2 = _bn(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion: ClassVar[int] = 4

    def __init__(self, in_channels: int, planes: int, stride: int, dilation: int) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = _conv3x3(planes, planes, stride=stride, dilation=dilation)  # v1.5: stride here
        self.bn2 = _bn(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = _bn(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _shortcut(in_channels: int, out_channels: int, stride: int) -> Shortcut | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return Shortcut(in_channels, out_channels, stride)


def _make_layer(
    block: type[BasicBlock | Bottleneck],
    in_channels: int,
    planes: int,
    count: int,
    stride: int,
    dilation: int,
) -> nn.Sequential:
    """The first block changes resolution/width; the others keep them. All share the layer's dilation."""
    out_channels = planes * block.expansion
    blocks = [block(in_channels, planes, stride, dilation)]
    blocks += [block(out_channels, planes, 1, dilation) for _ in range(count - 1)]
    return nn.Sequential(*blocks)


class DeepStem(nn.Module):
    """conv3×3 s2 (in→w), BN, ReLU, conv3×3 (w→w), BN, ReLU, conv3×3 (w→2w), BN, ReLU."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, width, stride=2)
        self.bn1 = _bn(width)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = _bn(width)
        self.conv3 = _conv3x3(width, 2 * width)
        self.bn3 = _bn(2 * width)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        return self.relu(self.bn3(self.conv3(x)))


class ResNetDEncoder(nn.Module):
    """Returns the five U-Net skip tensors: stem, layer1, layer2, layer3, layer4 (strides 2, 4, 8, 16, 32)."""

    def __init__(self, in_channels: int, depth: int, width: int) -> None:
        super().__init__()
        if depth not in _LAYOUTS:
            raise ValueError(f"encoder depth must be one of {sorted(_LAYOUTS)}, got {depth}")
        kind, counts = _LAYOUTS[depth]
        block: type[BasicBlock | Bottleneck] = BasicBlock if kind == "basic" else Bottleneck
        self.stem = DeepStem(in_channels, width)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = [2 * width]
        layers = []
        for index, count in enumerate(counts):
            planes = width * 2**index
            stride = 1 if index == 0 else 2
            layers.append(_make_layer(block, channels[-1], planes, count, stride, _DILATIONS[index]))
            channels.append(planes * block.expansion)
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.channels: tuple[int, ...] = tuple(channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x0 = self.stem(x)
        x1 = self.layer1(self.maxpool(x0))
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        return [x0, x1, x2, x3, x4]
