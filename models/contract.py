"""The model contract: what the engine gives a network and what it takes back.

A network takes named inputs and metadata and returns named heads of per-class scores (logits) at output
resolution; the product says each head's activation (sigmoid, softmax, none) and how it is stitched, so the
engine never knows which network it runs.

- `inputs`: the input names the network takes. A network with one input takes the product's primary image
  input whatever its name; with several, the product's image inputs must carry these names.
- `frames`: how many dates the network sees at once: 1 (each run date alone; tensors B × C × H × W) or
  None (all the run's dates together; image inputs B × T × C × H × W, series inputs B × T′ × C × h × w).
- `heads`: head name → channels. Each head comes back B × K × sH × sW (frames = 1), or with a time axis
  B × T × K × sH × sW (frames = None: T dates for a per-date output, T − 1 for a per-pair one).
- `reads_dates` (optional, True if absent): whether the network reads `meta.dates`. A network of one frame
  that does not (`reads_dates = False`) gets windows of a block's several dates in one batch, so that only
  a block's last batch is padded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class ModelMeta:
    """What the product and the run tell a network beside its pixels (STSUN builds its layers from it)."""

    bands: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # input → band names, in order
    wavelengths: Mapping[str, tuple[float, ...] | None] = field(default_factory=dict)  # input → nm
    gsd: Mapping[str, float | None] = field(default_factory=dict)  # input → metres
    dates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # input → the dates of its frames
    task: str | None = None  # "ss", "bcd", "scd"
    classes: tuple[str, ...] = ()  # the class subset asked for, in output-channel order


@runtime_checkable
class Network(Protocol):
    inputs: tuple[str, ...]
    frames: int | None
    heads: Mapping[str, int]

    def forward_heads(self, inputs: Mapping[str, torch.Tensor], meta: ModelMeta) -> dict[str, torch.Tensor]:
        """Scores (logits) of every head for a batch of windows."""
        ...


def check_network(model: object, name: str) -> Network:
    """`model` if it keeps the contract, else one TypeError line naming the architecture."""
    missing = [a for a in ("inputs", "frames", "heads", "forward_heads") if not hasattr(model, a)]
    if missing:
        raise TypeError(f"architecture {name}: the network lacks {', '.join(missing)} of the model contract "
                        "(mapgen.models.contract)")
    if model.frames not in (1, None):
        raise TypeError(f"architecture {name}: frames = {model.frames!r} must be 1 or None")
    return model  # type: ignore[return-value]
