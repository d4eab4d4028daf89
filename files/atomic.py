"""Write, then rename: a reader never sees a half-written file under its final name.

A temporary is a hidden name `.{name}.{pid}{suffix}` beside the final file or in a scratch folder on the
same file system (so that `os.replace` is a rename, atomic on POSIX). The pid keeps concurrent writers
of one name apart; the suffix is what a sweep of a killed writer's leftovers looks for.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_path(path: str | os.PathLike[str], *, scratch_dir: str | os.PathLike[str] | None = None,
                   suffix: str = ".tmp") -> Path:
    """The hidden temporary name of `path`: `.{name}.{pid}{suffix}` in `scratch_dir` (default: beside it)."""
    path = Path(path)
    folder = Path(scratch_dir) if scratch_dir is not None else path.parent
    return folder / f".{path.name}.{os.getpid()}{suffix}"


@contextmanager
def replacing(path: str | os.PathLike[str], *, scratch_dir: str | os.PathLike[str] | None = None,
              suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path to write `path`'s content to; on leaving the block without error it is
    renamed onto `path` (os.replace), otherwise removed. `scratch_dir` must be on `path`'s file system."""
    tmp = temporary_path(path, scratch_dir=scratch_dir, suffix=suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        # after a successful rename there is nothing left; after a failure, the half-written file goes
        tmp.unlink(missing_ok=True)


@contextmanager
def scratch_file(path: str | os.PathLike[str], *, scratch_dir: str | os.PathLike[str] | None = None,
                 suffix: str = ".scratch") -> Iterator[Path]:
    """Yield a temporary path for an intermediate file of `path` that is never published; it is removed
    when the block ends, with or without error."""
    tmp = temporary_path(path, scratch_dir=scratch_dir, suffix=suffix)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = False,
                scratch_dir: str | os.PathLike[str] | None = None, suffix: str = ".tmp") -> None:
    """Write `data` to `path` atomically; `fsync` flushes it to the disk before the rename (so that a
    crash of the machine cannot leave the final name with lost content)."""
    with replacing(path, scratch_dir=scratch_dir, suffix=suffix) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())


def write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8", fsync: bool = False,
               scratch_dir: str | os.PathLike[str] | None = None, suffix: str = ".tmp") -> None:
    """Write `text` to `path` atomically (see `write_bytes`)."""
    write_bytes(path, text.encode(encoding), fsync=fsync, scratch_dir=scratch_dir, suffix=suffix)
