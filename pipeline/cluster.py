"""Where a run's Dask workers come from: a local cluster, SLURM, Kubernetes, or a running scheduler.

Settings live in Dask's configuration under `mapgen.*` (defaults in cluster.yaml beside this module;
overrides from ~/.config/dask/*.yaml, DASK_MAPGEN__* variables, or `load_config(FILE)`). GPU workers
advertise the Dask resource `GPU`, which a run's model tasks ask for; reading, voting and exporting ask
for nothing and run on any worker thread, so a GPU worker reads the next block while its GPU works.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask.config
import yaml

DEFAULTS = Path(__file__).with_name("cluster.yaml")
KINDS = ("local", "slurm", "kubernetes")

with open(DEFAULTS) as _f:
    _DEFAULT_DATA = yaml.safe_load(_f)
dask.config.update_defaults(copy.deepcopy(_DEFAULT_DATA))
_KNOWN = _DEFAULT_DATA["mapgen"]  # the settings there are, with values of the expected types


class ClusterError(ValueError):
    """A cluster that cannot be made from the settings: one line saying which setting and why."""


def load_config(path: str | Path) -> None:
    """Merge a YAML settings file (the shape of cluster.yaml) into Dask's configuration, over what is there."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ClusterError(f"{path}: no such cluster settings file") from None
    except yaml.YAMLError as exc:
        raise ClusterError(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ClusterError(f"{path}: expected a mapping like cluster.yaml (mapgen: cluster: …)")
    _check_section(data.get("mapgen") or {}, str(path))  # before merging: a bad file changes nothing
    dask.config.update(dask.config.config, data, priority="new")


# Settings that must be at least 1 (a 0 or a negative count would hang or do nothing); every other integer
# setting must be at least 0. Those whose default is null take null or a value of this kind.
_POSITIVE = {"max-in-flight", "gpu-batch", "gpu-blocks", "local.workers", "local.threads-per-worker", "slurm.jobs",
             "slurm.cores", "slurm.processes", "kubernetes.workers", "kubernetes.threads"}
# Sizes Dask and Kubernetes take as a string ("64GB", "auto") or as a number.
_SIZES = {"local.memory-limit", "kubernetes.cpu", "kubernetes.memory"}
# Sections whose keys are passed on to another library as they are (any SLURMCluster argument)
_OPEN_SECTIONS = ("mapgen.slurm",)


def _value_problem(name: str, value: Any) -> str | None:
    """What is wrong with `value` for the setting `name` (dotted, without `mapgen.`), or None. The expected
    type is that of the default in cluster.yaml."""
    default = _KNOWN
    for part in name.split("."):
        default = default[part]
    if isinstance(default, dict):
        return None if isinstance(value, Mapping) else "must be a mapping of settings"
    if value is None and default is None:
        return None
    integer = isinstance(value, int) and not isinstance(value, bool)
    if name in _POSITIVE:
        return None if integer and value >= 1 else "must be an integer of at least 1"
    if isinstance(default, int) and not isinstance(default, bool):
        return None if integer and value >= 0 else "must be an integer of at least 0"
    if name in _SIZES:
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        return None if isinstance(value, str) or number else "must be a size such as 64GB (or a positive number)"
    if isinstance(default, str) or default is None:
        if not isinstance(value, str):
            return "must be a string"
        if name == "cluster" and not (value in KINDS or _is_address(value)):
            return f"must be one of {', '.join(KINDS)} or a scheduler address (tcp://host:8786)"
    return None


def _canonical(known: Mapping, key: str) -> str | None:
    """The name of `key` in the defaults (Dask treats - and _ alike), or None when there is none."""
    for name in (key, key.replace("_", "-")):
        if name in known:
            return name
    return None


def _check_section(given: Any, where: str, prefix: str = "mapgen") -> None:
    """Refuse, in one line naming `where` and the setting, an unknown `mapgen.*` setting (a typo would
    otherwise be ignored) or a value of the wrong type or range."""
    if not isinstance(given, Mapping):
        raise ClusterError(f"{where}: {prefix} must be a mapping of settings, not {given!r}")
    known = _KNOWN
    for part in prefix.split(".")[1:]:
        known = known[part]
    unknown = sorted(f"{prefix}.{k}" for k in given if _canonical(known, str(k)) is None)
    if unknown and prefix not in _OPEN_SECTIONS:
        raise ClusterError(f"{where}: unknown mapgen setting(s) {', '.join(unknown)} "
                           f"(known in {prefix}: {', '.join(known)})")
    for key, value in given.items():
        canonical = _canonical(known, str(key))
        if canonical is None:
            continue  # an extra argument of an open section (any SLURMCluster argument)
        name = f"{prefix}.{canonical}"
        problem = _value_problem(name.removeprefix("mapgen."), value)
        if problem:
            raise ClusterError(f"{where}: {prefix}.{key} = {value!r} {problem}")
        if isinstance(value, Mapping):
            _check_section(value, where, name)


_ENV_PREFIX = "DASK_MAPGEN_"


def _check_environment(env: Mapping[str, str]) -> None:
    """Refuse a DASK_MAPGEN__* variable that names no setting or holds a value of the wrong type, as Dask
    reads it (lower-cased, `__` between levels, the value through ast.literal_eval)."""
    for var in sorted(env):
        if not var.startswith(_ENV_PREFIX):
            continue
        if not var.startswith(_ENV_PREFIX + "_") or len(var) == len(_ENV_PREFIX) + 1:
            raise ClusterError(f"{var}: not a mapgen setting; write DASK_MAPGEN__KEY or DASK_MAPGEN__SECTION__KEY "
                               "(two underscores between levels), e.g. DASK_MAPGEN__LOCAL__WORKERS=4")
        parts = var[len(_ENV_PREFIX) + 1:].lower().split("__")
        value = dask.config.interpret_value(env[var])
        known: Any = _KNOWN
        name = "mapgen"
        for i, part in enumerate(parts):
            canonical = _canonical(known, part) if isinstance(known, Mapping) else None
            if canonical is None and name in _OPEN_SECTIONS:
                break  # any other SLURMCluster argument
            if canonical is None:
                where = f"in {name}" if isinstance(known, Mapping) else f"below {name}"
                choices = f" (known {where}: {', '.join(known)})" if isinstance(known, Mapping) else ""
                raise ClusterError(f"{var}: unknown mapgen setting {name}.{part}{choices}")
            name, known = f"{name}.{canonical}", known[canonical]
            if i == len(parts) - 1:
                problem = _value_problem(name.removeprefix("mapgen."), value)
                if problem:
                    raise ClusterError(f"{var}={env[var]}: {name} {problem}")


def _dask_config_files() -> list[Path]:
    """The YAML and JSON files Dask reads its configuration from (~/.config/dask, $DASK_CONFIG, …)."""
    found: list[Path] = []
    for entry in map(Path, dask.config.paths):
        if entry.is_dir():
            found += sorted(p for p in entry.iterdir() if p.suffix in (".yaml", ".yml", ".json") and p.is_file())
        elif entry.is_file():
            found.append(entry)
    return found


def check_settings() -> None:
    """Refuse, before any work, a bad `mapgen.*` setting wherever it comes from, in one line naming where:
    a DASK_MAPGEN__* variable, one of Dask's own configuration files, or what is merged (e.g. by load_config)."""
    _check_environment(os.environ)
    for path in _dask_config_files():
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue  # Dask itself says so, or skips it
        if isinstance(data, dict) and "mapgen" in data:
            _check_section(data["mapgen"] or {}, str(path))
    _check_section(dask.config.get("mapgen"), "mapgen settings in force")


def setting(name: str) -> Any:
    """A `mapgen.*` setting, e.g. setting('slurm.jobs')."""
    return dask.config.get(f"mapgen.{name}")


def gpu_count() -> int:
    """GPUs this process can see."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def machine_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def local_cluster(workers: int | None = None, threads_per_worker: int | None = None):
    """A LocalCluster of worker processes sharing this machine's cores: each worker's model and kernels use
    cores / workers threads, with one Dask thread by default. With GPUs present, dask-cuda's
    LocalCUDACluster (one worker per GPU, each seeing only its own and advertising GPU=1)."""
    from .inference import CORES_VARIABLE

    workers = setting("local.workers") if workers is None else workers
    threads = setting("local.threads-per-worker") if threads_per_worker is None else threads_per_worker
    for name, value in (("workers", workers), ("threads per worker", threads)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            # a 0 used to fall back to the default without a word, and a negative count hung
            raise ClusterError(f"local cluster: {name} {value!r} must be an integer of at least 1")
    memory = setting("local.memory-limit")
    gpus = gpu_count()
    if gpus:
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            raise ClusterError(f"{gpus} GPU(s) here but dask-cuda is not installed: pip install 'mapgen[gpu]' "
                               "(one worker per GPU), or hide them (CUDA_VISIBLE_DEVICES=) to run on the CPU") from None
        workers = gpus if workers is None else workers
        cores = max(1, machine_cores() // workers)
        return LocalCUDACluster(n_workers=workers, threads_per_worker=max(threads or cores, 2),
                                resources={"GPU": 1}, memory_limit=memory, dashboard_address=None,
                                env={CORES_VARIABLE: str(cores)})
    from distributed import LocalCluster

    workers = 2 if workers is None else workers
    cores = max(1, machine_cores() // workers)
    # one Dask thread by default: a second block's reading and stitching beside the model's OpenMP threads
    # would take a core from them, and OpenMP waits for its slowest thread (measured: 29.5 windows/s on
    # 1 worker × 2 threads, against 60 for the model alone); the block's own reads run beside it anyway
    return LocalCluster(n_workers=workers, threads_per_worker=threads or 1, processes=True,
                        memory_limit=memory, dashboard_address=None, env={CORES_VARIABLE: str(cores)})


def slurm_cluster_kwargs() -> dict[str, Any]:
    """SLURMCluster arguments from `mapgen.slurm`: each job one worker with `gpus` GPUs (gres) advertised as
    the Dask resource GPU."""
    cfg = dict(setting("slurm"))
    cfg.pop("jobs", None)
    gpus = int(cfg.pop("gpus", 0) or 0)
    extra = list(cfg.pop("job_extra_directives", None) or [])
    worker_args = list(cfg.pop("worker_extra_args", None) or [])
    if gpus:
        extra.append(f"--gres=gpu:{gpus}")
        worker_args += ["--resources", f"GPU={gpus}"]
    cfg["job_extra_directives"] = extra
    cfg["worker_extra_args"] = worker_args
    cfg.setdefault("scheduler_options", {"dashboard_address": ":8787"})
    return cfg


def slurm_cluster():
    """A dask-jobqueue SLURMCluster (its scheduler runs in this process; `jobs` jobs are submitted)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise ClusterError("--cluster slurm needs dask-jobqueue: pip install 'mapgen[slurm]'") from None
    try:
        cluster = SLURMCluster(**slurm_cluster_kwargs())
    except (TypeError, ValueError) as exc:
        raise ClusterError(f"mapgen.slurm settings: {exc}") from None
    cluster.scale(jobs=int(setting("slurm.jobs")))
    return cluster


def kubernetes_cluster_spec() -> dict[str, Any]:
    """The DaskCluster resource (Dask Kubernetes operator) from `mapgen.kubernetes`: GPU workers that
    advertise GPU=N, a scheduler without a GPU, and the shared volume on both."""
    try:
        from dask_kubernetes.operator import make_cluster_spec
    except ImportError:
        raise ClusterError("--cluster kubernetes needs dask-kubernetes: pip install 'mapgen[kubernetes]'") from None
    cfg = setting("kubernetes")
    gpus = int(cfg.get("gpus") or 0)
    spec = copy.deepcopy(make_cluster_spec(cfg["name"], image=cfg["image"], n_workers=int(cfg["workers"])))
    worker = spec["spec"]["worker"]["spec"]["containers"][0]
    limits = {"cpu": str(cfg["cpu"]), "memory": str(cfg["memory"])}
    if gpus:
        limits["nvidia.com/gpu"] = gpus
        worker["args"] += ["--resources", f"GPU={gpus}"]
    worker["args"] += ["--nthreads", str(int(cfg["threads"]))]  # ≥ 2: one feeds the GPU, one reads ahead
    worker["resources"] = {"limits": limits, "requests": {"cpu": str(cfg["cpu"]), "memory": str(cfg["memory"])}}
    claim = cfg.get("volume-claim")
    if claim:
        for part in ("worker", "scheduler"):
            pod = spec["spec"][part]["spec"]
            pod["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
            pod["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": cfg["mount-path"]}]
    return spec


def kubernetes_cluster():
    """A KubeCluster of the Dask Kubernetes operator made from `kubernetes_cluster_spec()`."""
    spec = kubernetes_cluster_spec()
    from dask_kubernetes.operator import KubeCluster

    return KubeCluster(custom_cluster_spec=spec, namespace=setting("kubernetes.namespace"))


def make_client(cluster: str | None = None, *, scheduler: str | None = None, workers: int | None = None,
                threads_per_worker: int | None = None):
    """A distributed.Client on the cluster named by `scheduler`, `cluster` or the `mapgen.cluster` setting.
    Closing the client closes a cluster it made; a scheduler given by address stays up."""
    from distributed import Client

    kind = cluster_kind(cluster, scheduler)
    if kind not in KINDS:
        return Client(kind)
    if kind == "local":
        made = local_cluster(workers, threads_per_worker)
    elif kind == "slurm":
        made = slurm_cluster()
    elif kind == "kubernetes":
        made = kubernetes_cluster()
    else:  # pragma: no cover - cluster_kind lets nothing else through
        raise ClusterError(f"cluster {kind!r}: use one of {', '.join(KINDS)} or a scheduler address")
    client = Client(made)
    client._mapgen_cluster = made  # closed with the client (see close_client)
    return client


# A scheduler address: [protocol://]host:port (host a name, an IPv4 or a bracketed IPv6 address).
_ADDRESS = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$")


def _is_address(text: str) -> bool:
    return bool(_ADDRESS.match(text)) or text.startswith("inproc://")


def cluster_kind(cluster: str | None = None, scheduler: str | None = None) -> str:
    """Where a run's workers come from: `scheduler`, else `cluster`, else the `mapgen.cluster` setting; one of
    KINDS or a scheduler address. Refuses anything else on the client, in one line naming the option or
    setting: a typo such as 'slrum' would otherwise be dialled as an address ("missing port number")."""
    for value, where in ((scheduler, "--scheduler"), (cluster, "--cluster"), (setting("cluster"), "mapgen.cluster")):
        if value is None:
            continue
        if isinstance(value, str) and (value in KINDS or _is_address(value)):
            return value
        raise ClusterError(f"{where} {value!r}: not a kind of cluster ({', '.join(KINDS)}) nor a scheduler address "
                           "(tcp://host:8786)")
    raise ClusterError("mapgen.cluster is not set: give --cluster local, slurm or kubernetes, or --scheduler ADDRESS")


def close_client(client) -> None:
    """Close the client and the cluster it made, if any."""
    made = getattr(client, "_mapgen_cluster", None)
    client.close()
    if made is not None:
        made.close()


def describe_cluster(client, gpu: bool) -> dict[str, Any]:
    """Workers, threads and GPUs of the cluster as the scheduler sees them now."""
    info = client.scheduler_info(n_workers=-1)
    workers = info.get("workers", {})
    return {
        "scheduler": info.get("address", ""),
        "workers": len(workers),
        "threads": sum(w.get("nthreads", 0) for w in workers.values()),
        "gpus": sum(w.get("resources", {}).get("GPU", 0) for w in workers.values()),
        "model_tasks_ask_for_gpu": gpu,
    }


def workers_have_gpus(client) -> bool:
    info = client.scheduler_info(n_workers=-1)
    return any(w.get("resources", {}).get("GPU", 0) for w in info.get("workers", {}).values())


_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def resolve_device(device: str, kind: str) -> str:
    """'auto' → the torch device the workers of cluster `kind` will run the model on: cuda when they have
    GPUs (a local machine with GPUs, slurm/kubernetes with `gpus` set, or a scheduler whose workers
    advertise GPU), else cpu. cpu, cuda and cuda:N are returned as they are, once checked where this
    process can know (a local cluster's workers see this machine's GPUs); anything else is refused."""
    if kind not in KINDS and not _is_address(kind):
        cluster_kind(kind)  # refuses it, before anything dials it as an address
    if not _DEVICE.match(device):
        raise ClusterError(f"--device {device}: not a device; use auto, cpu, cuda or cuda:N")
    if device.startswith("cuda") and kind == "local":
        gpus = gpu_count()
        if not gpus:  # else every worker fails on its first block with a long CUDA traceback
            raise ClusterError(f"--device {device}: this machine has no GPU that torch can use "
                               "(torch.cuda.is_available() is False); give --device cpu or auto")
        if device not in ("cuda", "cuda:0"):  # each local GPU worker sees only its own GPU, as cuda:0
            raise ClusterError(f"--device {device}: each local worker sees only its own GPU (as cuda); "
                               "give --device cuda, or CUDA_VISIBLE_DEVICES to choose the GPUs")
    if device != "auto":
        return device
    if kind == "local":
        return "cuda" if gpu_count() else "cpu"
    if kind in ("slurm", "kubernetes"):
        return "cuda" if int(setting(f"{kind}.gpus") or 0) else "cpu"
    from distributed import Client

    try:
        with Client(kind, timeout="10s") as client:
            if not client.scheduler_info(n_workers=-1).get("workers"):
                raise ClusterError(f"scheduler {kind}: no worker connected yet to tell CPU from GPU; give --device "
                                   "cuda or --device cpu")
            return "cuda" if workers_have_gpus(client) else "cpu"
    except OSError as exc:
        raise ClusterError(f"scheduler {kind}: cannot connect ({exc})") from None
