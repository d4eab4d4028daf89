"""The run folder's layout, in one place: what `OUT/mapgen-run/` holds and where.

    OUT/                      the tiles and VRTs (what users get)
      mapgen-run/
        lock                  held (flock) by the one process running there
        manifest.json         the run's identity (`identity.py`)
        report.json           what the last run did
        report.html           the same to look at, with a quick-look of each map (`report_html.py`)
        store.zarr/           class codes per output, stage and map (`store.py`)
        state/{stage}/{key}   markers: JSON with the sha256 of what they vouch for
        tmp/                  the writers' temporaries (tiles, VRTs, the COG translator's)

An input cache of `mapgen fetch` keeps its markers the same way (`state/fetch/{key}`).
"""

from __future__ import annotations

from pathlib import Path

RUN_DIR = "mapgen-run"
LOCK = "lock"
MANIFEST = "manifest.json"
REPORT = "report.json"
REPORT_HTML = "report.html"
STORE = "store.zarr"
STATE = "state"
SCRATCH = "tmp"
# What a knowing restart (--force-restart) removes: everything but the lock.
CONTENTS = (MANIFEST, REPORT, REPORT_HTML, STORE, STATE, SCRATCH)


def run_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / RUN_DIR


def marker_path(folder: str | Path, stage: str, key: str) -> Path:
    """The marker of a finished step: `state/{stage}/{key}` in a run folder (or an input cache)."""
    return Path(folder) / STATE / stage / key
