"""One process writes a folder at a time (a run's OUT, a fetch's cache): an advisory lock on a file in it.

The lock is the kernel's (flock), so it goes with its process: a run that exits, crashes or is killed
leaves nothing to clean up, and the next run simply takes it. The file also names its holder (pid, host,
start time, command) for the refusal a second run gets.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from .runfolder import LOCK


class LockedError(RuntimeError):
    """The folder is held by another live run: one line naming it."""


_HELD: dict[str, int] = {}  # run folder → open descriptor holding its lock, in this process


def acquire(folder: str | Path, owner: str | Path | None = None) -> None:
    """Take the lock of `folder` (a run folder, a cache) for this process (again: a no-op), or refuse naming
    the holder; `owner` is the folder the user named (default: `folder`'s parent, the run's OUT)."""
    folder = Path(folder)
    key = str(folder.resolve())
    if key in _HELD:
        return
    path = folder / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _describe(path)
        os.close(fd)
        raise LockedError(f"{owner or folder.parent}: in use by another mapgen process ({holder}); wait for it "
                          "to end, or give another folder") from None
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": _command()[:300]}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(info).encode())
    _HELD[key] = fd


def release(folder: str | Path) -> None:
    """Let go of the folder's lock, if this process holds it."""
    fd = _HELD.pop(str(Path(folder).resolve()), None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _command() -> str:
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if program in ("mapgen", "__main__.py"):  # the console script, or python -m mapgen.cli
        program = "mapgen"
    return " ".join([program, *sys.argv[1:]])


def _describe(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"pid {info['pid']} on {info['host']}, since {info['started']}: {info['command']}"
    except (OSError, ValueError, KeyError):
        return "a process that has not said who it is yet"
