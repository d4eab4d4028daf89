"""Checkpoint files: safetensors weights plus a JSON sidecar that says what they are.

`model.safetensors` holds the tensors; `model.json` holds {"architecture", "config", "sha256", …meta}.
Loading verifies the bytes against the sidecar's hash (and the caller's, when given) before any
tensor is read, then builds the model from the sidecar's config and loads it strictly. Pickled
checkpoints (`.pt`, `.pth`, `.ckpt`, e.g. the authors') are read only with `weights_only=True`, so a
file cannot run code on a worker. Every refusal is one `CheckpointError` line naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from mapgen.files import atomic

from .registry import Architecture, ModelConfig, architecture_for_config, get_architecture
from .state_dict import check_state_dict, load_state_dict_checked

SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt")
SIDECAR_KEYS = ("architecture", "config", "sha256")
_HASH_SHOWN = 12  # hex digits of a hash quoted in a message


class CheckpointError(ValueError):
    """A checkpoint was refused; the message is one line naming the file and the reason."""


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    return Path(path).with_suffix(".json")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _short(digest: str) -> str:
    return f"{digest[:_HASH_SHOWN]}…"


def _check_meta(meta: Mapping[str, Any] | None) -> None:
    clash = sorted(set(meta or {}) & set(SIDECAR_KEYS))
    if clash:
        raise ValueError(f"meta may not set the sidecar's own keys: {', '.join(clash)}")
    json.dumps(dict(meta or {}))  # TypeError now, before any file is written, if meta is not JSON data


def write_sidecar(
    path: str | os.PathLike[str],
    architecture: str,
    config: ModelConfig,
    meta: Mapping[str, Any] | None = None,
    *,
    sha256: str | None = None,
) -> str:
    """Write `path`'s sidecar (hashing the file unless `sha256` is given); return the hash.

    Also the way to adopt a foreign checkpoint (e.g. the authors' `.ckpt`): write its sidecar once,
    after checking the file, and `load_checkpoint` will verify and convert it from then on.
    """
    path = Path(path)
    _check_meta(meta)
    digest = sha256 if sha256 is not None else sha256_bytes(path.read_bytes())
    document = {"architecture": architecture, "config": config.to_dict(), "sha256": digest, **(meta or {})}
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic.write_text(sidecar_path(path), text, fsync=True)
    return digest


def save_checkpoint(
    model: nn.Module, config: ModelConfig, path: str | os.PathLike[str], *, meta: Mapping[str, Any]
) -> str:
    """Write `path` (.safetensors) and its sidecar; return the weights' sha256.

    The bytes depend only on the tensors (fixed key order, no timestamps), so the same weights give
    the same file and hash.
    """
    path = Path(path)
    if path.suffix != SAFETENSORS_SUFFIX:
        raise ValueError(f"checkpoint {path}: save_checkpoint writes {SAFETENSORS_SUFFIX} files only")
    _check_meta(meta)
    architecture = architecture_for_config(config)
    state = model.state_dict()
    with torch.device("meta"):
        reference = architecture.build(config)
    try:
        check_state_dict(reference, state)
    except ValueError as error:
        raise ValueError(f"checkpoint {path}: the model does not match its config: {error}") from None
    # Clone: safetensors refuses tensors that share storage, and views may hide such sharing.
    tensors = {key: value.detach().to("cpu").contiguous().clone() for key, value in state.items()}
    # A single metadata entry: safetensors' header must not depend on a hash-map's iteration order.
    data = safetensors.torch.save(tensors, metadata={"format": "pt"})
    path.parent.mkdir(parents=True, exist_ok=True)
    # write then rename (fsynced), so that a reader never sees a half-written file under the final name
    atomic.write_bytes(path, data, fsync=True)
    return write_sidecar(path, architecture.name, config, meta, sha256=sha256_bytes(data))


def init_checkpoint(
    config: ModelConfig, path: str | os.PathLike[str], seed: int, *, meta: Mapping[str, Any] | None = None
) -> str:
    """Save a freshly initialised model (seeded, so the bytes repeat); a stand-in for trained weights."""
    architecture = architecture_for_config(config)
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream as it was
        torch.manual_seed(seed)
        model = architecture.build(config)
    info = {"weights": "random initialisation, not trained", "init_seed": seed, **(meta or {})}
    return save_checkpoint(model, config, path, meta=info)


def _read_sidecar(path: Path) -> dict[str, Any]:
    side = sidecar_path(path)
    if not side.is_file():
        raise CheckpointError(f"checkpoint {path}: no sidecar {side.name} (architecture, config, sha256)")
    try:
        document = json.loads(side.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"checkpoint {path}: sidecar {side.name} is not valid JSON ({error})") from None
    missing = [k for k in SIDECAR_KEYS if not isinstance(document, dict) or k not in document]
    if missing:
        raise CheckpointError(f"checkpoint {path}: sidecar {side.name} lacks {', '.join(missing)}")
    return document


def _weights_only_reason(path: Path, error: Exception) -> str:
    """The one-line refusal of a pickle that torch's safe loader would not read.

    torch's own message is paragraphs of advice, among them to load with weights_only=False, which
    would run whatever code the pickle holds: never pass that on. Say what was found and why it was
    refused instead.
    """
    text = str(error)
    if isinstance(error, pickle.UnpicklingError) or "Weights only load failed" in text:
        found = re.search(r"GLOBAL (\S+) was not an allowed global", text)
        operand = re.search(r"Unsupported operand (\d+)", text)
        what = (f" (it refers to {found[1]})" if found
                else f" (it uses pickle operation {operand[1]})" if operand else "")
        return (f"checkpoint {path}: refused, since loading it could run code: it is a pickle with objects other "
                f"than tensors{what}; give the weights alone (a state dict of tensors) or a .safetensors file")
    reason = text.strip().splitlines()[0].split(". ")[0] if text.strip() else type(error).__name__
    return f"checkpoint {path}: not a readable torch checkpoint ({reason})"


def _read_tensors(path: Path, data: bytes) -> dict[str, torch.Tensor]:
    if path.suffix == SAFETENSORS_SUFFIX:
        try:
            return safetensors.torch.load(data)
        except Exception as error:  # the Rust error type is not part of safetensors' public API
            raise CheckpointError(f"checkpoint {path}: not a valid safetensors file ({error})") from None
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError for foreign objects; others for corrupt files
        raise CheckpointError(_weights_only_reason(path, error)) from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]  # a training checkpoint that wraps the weights
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path}: does not hold a state dict of tensors")
    return dict(obj)


def _check_hashes(path: Path, digest: str, recorded: str, expected: str | None) -> None:
    if digest != recorded:
        raise CheckpointError(
            f"checkpoint {path}: sha256 {_short(digest)} does not match its sidecar's {_short(recorded)}"
        )
    if expected is not None and digest != expected.lower():
        raise CheckpointError(
            f"checkpoint {path}: sha256 {_short(digest)} does not match the expected {_short(expected)}"
        )


def _resolve_architecture(path: Path, name: str, wanted: str | None) -> Architecture:
    if wanted is not None and name != wanted:
        raise CheckpointError(f"checkpoint {path}: architecture '{name}' is not '{wanted}'")
    try:
        return get_architecture(name)
    except ValueError as error:
        raise CheckpointError(f"checkpoint {path}: {error}") from None


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    architecture: str | None = None,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """Verify, build and load a checkpoint; return (model in eval mode, sidecar info).

    The info is the sidecar's content plus "path" and "absent_optional_keys" (training-only keys
    the file lacked, e.g. the temporal head of an authors' inference checkpoint).
    """
    path = Path(path)
    if path.suffix not in (SAFETENSORS_SUFFIX, *PICKLE_SUFFIXES):
        raise CheckpointError(
            f"checkpoint {path}: unsupported file type '{path.suffix}' "
            f"(use {SAFETENSORS_SUFFIX} or {', '.join(PICKLE_SUFFIXES)})"
        )
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    sidecar = _read_sidecar(path)
    arch = _resolve_architecture(path, str(sidecar["architecture"]), architecture)
    # Hash the very bytes that are then parsed: the file cannot change between check and use.
    data = path.read_bytes()
    _check_hashes(path, sha256_bytes(data), str(sidecar["sha256"]), sha256)
    try:
        config = arch.config_from_dict(sidecar["config"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path}: bad config in sidecar ({error})") from None
    tensors = _read_tensors(path, data)
    model = arch.build(config)
    try:
        if arch.is_foreign is not None and arch.convert_foreign is not None and arch.is_foreign(tensors):
            tensors = arch.convert_foreign(tensors, config)
        absent = load_state_dict_checked(model, tensors, arch.optional_prefixes)
    except ValueError as error:
        raise CheckpointError(f"checkpoint {path}: {error}") from None
    model.to(device).eval()
    return model, {**sidecar, "path": str(path), "absent_optional_keys": absent}
