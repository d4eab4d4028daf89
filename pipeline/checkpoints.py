"""Finding a checkpoint by registry name or path, and pinning it by hash before any work."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from mapgen.models import CheckpointError, load_checkpoint


def bundled_dir() -> Path:
    return Path(str(resources.files("mapgen.models") / "checkpoints"))


def resolve_checkpoint(name_or_path: str, architecture: str) -> tuple[Path, str]:
    """(path, sha256) of a checkpoint given by path or by the name of a bundled one.

    The checkpoint is loaded once here, on the client, so that a missing file, a wrong hash or another
    architecture is refused in one line before any worker starts; workers then load it by that hash.
    """
    path = Path(name_or_path)
    if not path.exists():
        candidate = bundled_dir() / f"{name_or_path}.safetensors"
        if not candidate.exists():
            raise CheckpointError(f"checkpoint {name_or_path}: no such file and no bundled checkpoint of "
                                  "that name")
        path = candidate
    _, info = load_checkpoint(path, architecture=architecture)
    return path.resolve(), str(info["sha256"])
