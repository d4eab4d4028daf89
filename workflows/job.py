"""Scheduled jobs as data: one TOML file says what a recurring run makes, from what, where and on which cluster.

    [job]
    name = "cbra-china"
    product = "cbra"
    region = "../../examples/china.geojson"   # paths are relative to this file
    years = "2016-last"                       # 'last': the last complete year when the job runs
    source = "ee://my-project"
    out = "/data/cbra/{last}"                 # {last}, {first}, {name} are filled in
    cluster = "slurm"                         # local | slurm | kubernetes | tcp://scheduler:8786
    cluster_config = "cluster.yaml"           # optional: settings over the defaults
    [job.options]                             # optional: any other `mapgen run` option
    mask = "none"

`mapgen workflow run FILE` runs it; run again (the same year), it resumes where it stopped.
"""

from __future__ import annotations

import datetime
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .product import ProductError

REQUIRED = ("product", "region", "years", "source", "out")
KNOWN = (*REQUIRED, "name", "cluster", "cluster_config", "options")
# Options whose value is a path, taken relative to the job file
PATH_OPTIONS = ("region", "cluster_config", "checkpoint")


class JobError(ProductError):
    """A job file that cannot be run: one line saying what and where."""


@dataclass(frozen=True)
class Job:
    name: str
    file: str
    years: tuple[int, ...]
    argv: tuple[str, ...] = field(repr=False)  # the `mapgen run` arguments it stands for

    def command(self) -> str:
        import shlex

        return shlex.join(["mapgen", "run", *self.argv])


def _is_local_path(text: str) -> bool:
    """A relative file path (not a URL, ee://…, 'none' or an absolute path)."""
    return "://" not in text and not text.startswith("/") and text != "none"


def load_job(path: str | Path, today: datetime.date | None = None) -> Job:
    """Read a job file and resolve it for `today`: years, output folder and paths made concrete."""
    from .dates import parse_years

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise JobError(f"{path}: no such job file") from None
    except tomllib.TOMLDecodeError as exc:
        raise JobError(f"{path}: not TOML ({exc})") from None
    job = data.get("job")
    if not isinstance(job, dict):
        raise JobError(f"{path}: needs a [job] table")
    missing = [k for k in REQUIRED if k not in job]
    if missing:
        raise JobError(f"{path}: [job] lacks {', '.join(missing)}")
    unknown = sorted(set(job) - set(KNOWN))
    if unknown:
        raise JobError(f"{path}: [job] has unknown key(s) {', '.join(unknown)} (known: {', '.join(KNOWN)})")
    try:
        years = parse_years(str(job["years"]), today)
    except ValueError as exc:
        raise JobError(f"{path}: years {exc}") from None
    name = str(job.get("name", path.stem))
    here = path.resolve().parent

    def local(value: str) -> str:
        return str((here / value).resolve()) if _is_local_path(value) else value

    out = str(job["out"]).format(last=years[-1], first=years[0], name=name)
    argv = ["--product", str(job["product"]), "--years", f"{years[0]}-{years[-1]}"
            if years == list(range(years[0], years[-1] + 1)) else ",".join(map(str, years)),
            "--region", local(str(job["region"])), "--source", local(str(job["source"])),
            "--out", local(out)]
    cluster = str(job.get("cluster", ""))
    if cluster:
        argv += ["--scheduler" if ":" in cluster else "--cluster", cluster]
    if "cluster_config" in job:
        argv += ["--cluster-config", local(str(job["cluster_config"]))]
    options = job.get("options", {})
    if not isinstance(options, dict):
        raise JobError(f"{path}: [job.options] must be a table of `mapgen run` options")
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + key.replace("_", "-"))
        else:
            argv += [flag, local(str(value)) if key in PATH_OPTIONS else str(value)]
    return Job(name, str(path), tuple(years), tuple(argv))

