"""What a network costs per window: FLOP of its paper configuration, counted by torch's FlopCounterMode on
the meta device (no memory, no arithmetic), so that `mapgen plan` prices any product's own model."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

import torch
from torch.utils.flop_counter import FlopCounterMode

from .contract import ModelMeta
from .registry import get_architecture


@cache
def _flop(architecture: str, shapes: tuple[tuple[str, tuple[int, ...]], ...]) -> float | None:
    arch = get_architecture(architecture)
    if arch.paper_config is None:
        return None
    with torch.device("meta"):
        model = arch.build(arch.paper_config()).eval()
        inputs = {name: torch.empty((1, *shape)) for name, shape in shapes}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.forward_heads(inputs, ModelMeta())
    return float(counter.get_total_flops())


def window_flop(architecture: str, shapes: Mapping[str, tuple[int, ...]]) -> float | None:
    """FLOP of one forward pass of `architecture`'s paper configuration on one window whose inputs have these
    shapes (no batch axis); None when the architecture names no paper configuration. ValueError for an
    architecture that is not registered."""
    return _flop(architecture, tuple(sorted((k, tuple(v)) for k, v in shapes.items())))
