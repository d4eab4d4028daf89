"""What a network costs per window: FLOP of its paper configuration, counted by torch's FlopCounterMode on
the meta device (no memory, no arithmetic), so that `mapgen plan` prices any product's own model."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from .contract import ModelMeta
from .registry import get_architecture


@cache
def _flop(architecture: str, shapes: tuple[tuple[str, tuple[int, ...]], ...], config: Any) -> float | None:
    arch = get_architecture(architecture)
    if config is None:
        if arch.paper_config is None:
            return None
        config = arch.paper_config()
    with torch.device("meta"):
        model = arch.build(config).eval()
        inputs = {name: torch.empty((1, *shape)) for name, shape in shapes}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.forward_heads(inputs, ModelMeta())
    return float(counter.get_total_flops())


def window_flop(architecture: str, shapes: Mapping[str, tuple[int, ...]], config: Any = None) -> float | None:
    """FLOP of one forward pass of `architecture` on one window whose inputs have these shapes (no batch
    axis): of `config` (a hashable config, frozen like the registered ones), else of the paper's
    configuration; None when none is given and the architecture names no paper configuration. ValueError
    for an architecture that is not registered."""
    return _flop(architecture, tuple(sorted((k, tuple(v)) for k, v in shapes.items())), config)
