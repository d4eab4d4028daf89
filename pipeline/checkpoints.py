"""Finding a checkpoint by name or path, and pinning it by hash before any work.

A name is looked up in the user's checkpoint folders (`MAPGEN_CHECKPOINTS`, a list of folders separated
like PATH; else `$XDG_DATA_HOME/mapgen/checkpoints`, by default `~/.local/share/mapgen/checkpoints`, where
`mapgen adapt` writes a region's checkpoint), then among the bundled ones.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from mapgen.models import CheckpointError, load_checkpoint

SUFFIX = ".safetensors"


def bundled_dir() -> Path:
    return Path(str(resources.files("mapgen.models") / "checkpoints"))


def user_dirs() -> list[Path]:
    """The folders a checkpoint name is looked up in before the bundled ones; the first is where new
    checkpoints (a region's adapted one) are written by default."""
    listed = os.environ.get("MAPGEN_CHECKPOINTS")
    if listed:
        return [Path(p).expanduser() for p in listed.split(os.pathsep) if p]
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return [data / "mapgen" / "checkpoints"]


def find_checkpoint(name_or_path: str) -> Path | None:
    """The file a checkpoint path or name stands for, or None when there is none."""
    path = Path(name_or_path)
    if path.exists():
        return path
    if path.name != name_or_path:  # a path (with folders) that does not exist
        return None
    for folder in [*user_dirs(), bundled_dir()]:
        candidate = folder / f"{name_or_path}{SUFFIX}"
        if candidate.exists():
            return candidate
    return None


def resolve_checkpoint(name_or_path: str, architecture: str) -> tuple[Path, str]:
    """(path, sha256) of a checkpoint given by path or by name.

    The checkpoint is loaded once here, on the client, so that a missing file, a wrong hash or another
    architecture is refused in one line before any worker starts; workers then load it by that hash.
    """
    path = find_checkpoint(name_or_path)
    if path is None:
        raise CheckpointError(f"checkpoint {name_or_path}: no such file and no checkpoint of that name in "
                              f"{', '.join(str(d) for d in user_dirs())} or the bundled ones")
    _, info = load_checkpoint(path, architecture=architecture)
    return path.resolve(), str(info["sha256"])
