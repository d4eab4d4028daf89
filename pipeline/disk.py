"""Disk space: checked before a writer starts, and a full disk named as such when a write fails.

GDAL and Zarr report a full disk in many words (`TIFFRewriteDirectory:Error fetching directory count`,
`Write failed`, `not recognized as being in a supported file format`, `[Errno 28]`); a run says which
file system is full, what it was writing and how much that needs.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class DiskFull(OSError):
    """Not enough space to write an output: says which file system, which file and how much is needed."""


def mount_point(path: Path) -> Path:
    """The mount point of the file system that holds `path` (the disk a user would free)."""
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    while not os.path.ismount(path):
        path = path.parent
    return path


def ensure_space(folder: Path, need: int, what: str) -> None:
    """Refuse (DiskFull) to write `what` when the file system of `folder` has less than `need` bytes free."""
    free = free_bytes(folder)
    if free < need:
        raise DiskFull(errno.ENOSPC, f"no space left on {mount_point(folder)} for {what}: it needs about "
                       f"{megabytes(need)} MB and {megabytes(free)} MB are free")


def megabytes(n: int) -> str:
    return f"{n / 1e6:.1f}"


@contextmanager
def reporting_full_disk(path: str | Path, need: int, what: str) -> Iterator[None]:
    """Turn a write that fails for want of space under `path` into DiskFull naming `what` and `need`."""
    try:
        yield
    except DiskFull:
        raise
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise full_disk(path, need, what) from None


def full_disk(path: str | Path, need: int, what: str) -> DiskFull:
    """The one-line error of a write to `what` under `path` that ran out of space."""
    return DiskFull(errno.ENOSPC, f"no space left on {mount_point(Path(path))} while writing {what}: it needs "
                    f"about {megabytes(need)} MB and {megabytes(free_bytes(path))} MB are free")


def free_bytes(path: str | Path) -> int:
    """Free bytes on the file system of `path` (of the folder it will be made in, if it does not exist)."""
    existing = Path(os.path.abspath(path))
    while not existing.exists():
        existing = existing.parent
    return shutil.disk_usage(existing).free
