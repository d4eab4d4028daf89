"""Registry of model architectures: a name in a checkpoint's sidecar → how to build and load that model.

A model registers itself: its module under `mapgen/models/` defines `_register()`, which calls
`register(Architecture(...))`; the registry finds every such module the first time a name is looked up,
and any installed package's too through the `mapgen.models` entry-point group (a function that
registers). Adding UGSNet, FUSU-Net or STSUN means adding its module, not editing this one.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol

import torch
from torch import nn


class ModelConfig(Protocol):
    """What the registry needs from a config: a JSON round trip."""

    def to_dict(self) -> dict[str, Any]: ...


class DictConfig:
    """The JSON round trip of a dataclass config (what a checkpoint's sidecar holds): `from_dict` refuses
    fields the class does not have, so a sidecar of another network's config is not half-read."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        return cls(**dict(data))


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
    # The paper's configuration, for the cost of the full network (`mapgen plan`); None: unknown.
    paper_config: Callable[[], Any] | None = None

    def config_from_dict(self, data: Mapping[str, Any]) -> Any:
        return self.config_cls.from_dict(data)

    def build(self, config: Any) -> nn.Module:
        return self.model_cls(config)


_ARCHITECTURES: dict[str, Architecture] = {}
_DISCOVERED = False


def register(architecture: Architecture) -> Architecture:
    known = _ARCHITECTURES.get(architecture.name)
    if known is not None and known != architecture:
        raise ValueError(f"architecture '{architecture.name}' is already registered")
    _ARCHITECTURES[architecture.name] = architecture
    return architecture


def _discover() -> None:
    """Import every model module of this package and call its `_register`, then the entry points."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    package = __name__.rsplit(".", 1)[0]
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        module = importlib.import_module(f"{package}.{info.name}")
        if callable(getattr(module, "_register", None)):
            module._register()
    for point in entry_points(group="mapgen.models"):
        point.load()()


def architecture_names() -> list[str]:
    _discover()
    return sorted(_ARCHITECTURES)


def get_architecture(name: str) -> Architecture:
    _discover()
    try:
        return _ARCHITECTURES[name]
    except KeyError:
        raise ValueError(
            f"unknown architecture '{name}' (known: {', '.join(architecture_names())})"
        ) from None


def architecture_for_config(config: object) -> Architecture:
    _discover()
    for architecture in _ARCHITECTURES.values():
        if type(config) is architecture.config_cls:
            return architecture
    raise ValueError(f"no registered architecture takes a {type(config).__name__}")


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
