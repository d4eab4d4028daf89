"""Strict state-dict loading that may leave named optional parts (e.g. a training-only head) untouched.

`nn.Module.load_state_dict(strict=True)` is all or nothing. A checkpoint made for inference lacks
the temporal head, which inference never runs; we still want every other key checked, so missing
keys are tolerated only under the given prefixes and reported back to the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

_SHOWN = 3  # keys named in a one-line summary before "…"


def summarise_keys(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_SHOWN])
    return f"{len(keys)} ({shown}{', …' if len(keys) > _SHOWN else ''})"


def check_state_dict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], optional_prefixes: tuple[str, ...] = ()
) -> list[str]:
    """Raise ValueError (one line) unless `state_dict` fits `model`; return the optional keys it lacks."""
    expected = model.state_dict()
    for key, value in state_dict.items():
        if key in expected and tuple(value.shape) != tuple(expected[key].shape):
            raise ValueError(
                f"key '{key}' has shape {tuple(value.shape)}, the model expects {tuple(expected[key].shape)}"
            )
    unexpected = set(state_dict) - set(expected)
    missing = set(expected) - set(state_dict)
    optional = {k for k in missing if k.startswith(optional_prefixes)} if optional_prefixes else set()
    required = missing - optional
    problems = []
    if required:
        problems.append(f"missing keys {summarise_keys(required)}")
    if unexpected:
        problems.append(f"unexpected keys {summarise_keys(unexpected)}")
    if problems:
        raise ValueError("; ".join(problems))
    return sorted(optional)


def load_state_dict_checked(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], optional_prefixes: tuple[str, ...] = ()
) -> list[str]:
    """Load strictly except for keys under `optional_prefixes`; return those that were absent."""
    absent = check_state_dict(model, state_dict, optional_prefixes)
    # strict=False only because absent optional keys were checked above; nothing else is skipped.
    model.load_state_dict(state_dict, strict=not absent)
    return absent
