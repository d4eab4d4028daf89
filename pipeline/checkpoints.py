"""Finding a checkpoint by registry name or path, and pinning it by hash before any work."""

from __future__ import annotations

from pathlib import Path

from mapgen.models import CheckpointError, verify_checkpoint



def bundled_dir() -> Path:
    from importlib import resources

    return Path(str(resources.files("mapgen.models") / "checkpoints"))


def resolve_checkpoint(name_or_path: str, architecture: str) -> tuple[Path, str]:
    """(path, sha256) of a checkpoint given by path or by the name of a bundled one; refuses a missing
    file, a wrong hash or another architecture in one line."""
    path = Path(name_or_path)
    if not path.exists():
        candidate = bundled_dir() / f"{name_or_path}.safetensors"
        if not candidate.exists():
            raise CheckpointError(f"checkpoint {name_or_path}: no such file and no bundled checkpoint of "
                                  "that name")
        path = candidate
    sha256 = verify_checkpoint(path, architecture=architecture)
    return path.resolve(), sha256
