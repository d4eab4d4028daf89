"""Registry of model architectures: a name in a checkpoint's sidecar → how to build and load that model.

Adding UGSNet, FUSU-Net or STSUN means writing its module and config, then one `register(...)` call
below; the checkpoint I/O (`checkpoint_io`, re-exported here) needs no change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from .convert import OPTIONAL_PREFIXES as STSR_OPTIONAL_PREFIXES
from .convert import convert_authors_state_dict, is_authors_layout
from .stsr_seg import STSRSeg, STSRSegConfig


class ModelConfig(Protocol):
    """What the registry needs from a config: a JSON round trip."""

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Architecture:
    name: str
    model_cls: Callable[[Any], nn.Module]  # called with the config
    config_cls: type
    # Keys a checkpoint may lack (training-only parts); they keep their initial values.
    optional_prefixes: tuple[str, ...] = ()
    # A foreign (authors') checkpoint layout: how to recognise it and convert it to our names.
    is_foreign: Callable[[Mapping[str, torch.Tensor]], bool] | None = None
    convert_foreign: Callable[[Mapping[str, torch.Tensor], Any], dict[str, torch.Tensor]] | None = None

    def config_from_dict(self, data: Mapping[str, Any]) -> Any:
        return self.config_cls.from_dict(data)

    def build(self, config: Any) -> nn.Module:
        return self.model_cls(config)


_ARCHITECTURES: dict[str, Architecture] = {}


def register(architecture: Architecture) -> Architecture:
    if architecture.name in _ARCHITECTURES:
        raise ValueError(f"architecture '{architecture.name}' is already registered")
    _ARCHITECTURES[architecture.name] = architecture
    return architecture


def architecture_names() -> list[str]:
    return sorted(_ARCHITECTURES)


def get_architecture(name: str) -> Architecture:
    try:
        return _ARCHITECTURES[name]
    except KeyError:
        raise ValueError(
            f"unknown architecture '{name}' (known: {', '.join(architecture_names())})"
        ) from None


def architecture_for_config(config: object) -> Architecture:
    for architecture in _ARCHITECTURES.values():
        if type(config) is architecture.config_cls:
            return architecture
    raise ValueError(f"no registered architecture takes a {type(config).__name__}")


register(
    Architecture(
        name="stsr-seg",
        model_cls=STSRSeg,
        config_cls=STSRSegConfig,
        optional_prefixes=STSR_OPTIONAL_PREFIXES,
        is_foreign=is_authors_layout,
        convert_foreign=convert_authors_state_dict,
    )
)

_CHECKPOINT_NAMES = (
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "init_checkpoint",
    "write_sidecar",
)


def __getattr__(name: str) -> object:
    # Checkpoint I/O lives in checkpoint_io (which imports this module); re-exported lazily here so that
    # `from mapgen.models.registry import load_checkpoint` works without a circular import.
    if name in _CHECKPOINT_NAMES:
        from . import checkpoint_io

        return getattr(checkpoint_io, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
