"""Small test networks whose outputs are known functions of their inputs: fixtures for the engine's tests,
never shipped. Each keeps the model contract (`mapgen.models.contract`) and registers itself under a
`test-` architecture name, in the client process and, through `RegisterTestNets`, on every worker.

- `test-per-date` (one image, each date alone, output scale `scale`): head `cls` = the first three bands,
  as they are, per pixel (upsampled by repetition); head `p` = band 0 plus a ramp along each window's
  rows (0 at its top, `ramp` at its bottom), so that how windows are stitched shows, plus `context` × the
  window's mean of band 0, so that how windows are padded shows.
- `test-fusion` (image `hr` at every date + series `sentinel` as a chip per window, all dates at once):
  head `seg` per date = the three `hr` bands and a zero channel, each plus the chip's mean (the same for
  every channel, so it never changes the argmax); head `change` per pair of dates = the mean absolute
  difference of `hr` between the dates minus the chip's mean.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from distributed import WorkerPlugin
from torch import nn


@dataclass(frozen=True)
class PerDateConfig:
    scale: int = 2
    ramp: float = 0.0
    context: float = 0.0  # weight of the window's mean of band 0 in `p` (what padding then changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PerDateConfig:
        return cls(**dict(data))


class PerDateNet(nn.Module):
    inputs = ("image",)
    frames = 1
    heads = {"p": 1, "cls": 3}

    def __init__(self, config: PerDateConfig) -> None:
        super().__init__()
        self.config = config
        self.gain = nn.Parameter(torch.ones(1))  # a weight, so that the checkpoint has a tensor

    def forward_heads(self, inputs: Mapping[str, torch.Tensor], meta: object = None) -> dict[str, torch.Tensor]:
        (x,) = inputs.values()
        s = self.config.scale
        up = x.repeat_interleave(s, dim=-2).repeat_interleave(s, dim=-1) * self.gain
        rows = torch.linspace(0, self.config.ramp, up.shape[-2], dtype=up.dtype)[:, None]
        mean = x[:, :1].mean(dim=(2, 3), keepdim=True) * self.config.context
        return {"p": up[:, :1] + rows + mean, "cls": up[:, :3]}


@dataclass(frozen=True)
class FusionConfig:
    def to_dict(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FusionConfig:
        return cls()


class FusionNet(nn.Module):
    inputs = ("hr", "sentinel")
    frames = None
    heads = {"seg": 4, "change": 1}

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1))

    def forward_heads(self, inputs: Mapping[str, torch.Tensor], meta: object = None) -> dict[str, torch.Tensor]:
        hr, series = inputs["hr"], inputs["sentinel"]  # B × T × 3 × H × W, B × T' × C × c × c
        chip = series.mean(dim=(1, 2, 3, 4))[:, None, None, None, None]
        zero = torch.zeros_like(hr[:, :, :1])
        seg = torch.cat([hr, zero], dim=2) * self.gain + chip
        change = (hr[:, 1:] - hr[:, :-1]).abs().mean(dim=2, keepdim=True) - chip
        return {"seg": seg, "change": change}


def register_test_nets() -> None:
    from mapgen.models import Architecture, register

    register(Architecture("test-per-date", PerDateNet, PerDateConfig))
    register(Architecture("test-fusion", FusionNet, FusionConfig))


class RegisterTestNets(WorkerPlugin):
    """Register the test networks on each worker (its own process, where the registry knows only mapgen's)."""

    name = "mapgen-test-nets"

    def setup(self, worker=None) -> None:
        register_test_nets()
