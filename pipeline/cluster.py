"""Where a run's Dask workers come from: a local cluster, SLURM, Kubernetes, or a running scheduler.

Settings live in Dask's configuration under `mapgen.*` (defaults in cluster.yaml beside this module;
overrides from ~/.config/dask/*.yaml, DASK_MAPGEN__* variables, or `load_config(FILE)`). GPU workers
advertise the Dask resource `GPU`, which a run's model tasks ask for; reading, voting and exporting ask
for nothing and run on any worker thread, so a GPU worker reads the next block while its GPU works.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import dask.config
import yaml

DEFAULTS = Path(__file__).with_name("cluster.yaml")
KINDS = ("local", "slurm", "kubernetes")

with open(DEFAULTS) as _f:
    dask.config.update_defaults(yaml.safe_load(_f))


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
    unknown = _unknown_keys(data.get("mapgen") or {}, dask.config.get("mapgen"), "mapgen")
    if unknown:
        raise ClusterError(f"{path}: unknown mapgen setting(s) {', '.join(unknown)}")
    dask.config.update(dask.config.config, data, priority="new")


# Sections whose keys are passed on to another library as they are (any SLURMCluster argument)
_OPEN_SECTIONS = ("mapgen.slurm",)


def _unknown_keys(given: dict, known: dict, where: str) -> list[str]:
    """Dotted names in `given` that the defaults do not have (a typo would otherwise be ignored)."""
    found = []
    for key, value in given.items():
        name = f"{where}.{key}"
        canonical = key.replace("_", "-")
        if canonical not in known and key not in known:
            found.append(name)
        elif isinstance(value, dict) and name not in _OPEN_SECTIONS:
            found += _unknown_keys(value, known.get(canonical, known.get(key)) or {}, name)
    return sorted(found)


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


def local_cluster(workers: int | None = None, threads_per_worker: int | None = None):
    """A LocalCluster of worker processes; with GPUs present, dask-cuda's LocalCUDACluster (one worker per
    GPU, each seeing only its own and advertising GPU=1)."""
    workers = setting("local.workers") if workers is None else workers
    threads = threads_per_worker or setting("local.threads-per-worker")
    memory = setting("local.memory-limit")
    gpus = gpu_count()
    if gpus:
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            raise ClusterError(f"{gpus} GPU(s) here but dask-cuda is not installed: pip install 'mapgen[gpu]' "
                               "(one worker per GPU), or hide them (CUDA_VISIBLE_DEVICES=) to run on the CPU") from None
        return LocalCUDACluster(n_workers=workers or gpus, threads_per_worker=max(threads, 2),
                                resources={"GPU": 1}, memory_limit=memory, dashboard_address=None)
    from distributed import LocalCluster

    return LocalCluster(n_workers=workers or 2, threads_per_worker=threads, processes=True,
                        memory_limit=memory, dashboard_address=None)


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

    kind = scheduler or cluster or setting("cluster")
    if kind not in KINDS and ":" in kind:
        return Client(kind)
    if kind == "local":
        made = local_cluster(workers, threads_per_worker)
    elif kind == "slurm":
        made = slurm_cluster()
    elif kind == "kubernetes":
        made = kubernetes_cluster()
    else:
        raise ClusterError(f"cluster {kind!r}: use one of {', '.join(KINDS)} or a scheduler address "
                           "(tcp://host:8786)")
    client = Client(made)
    client._mapgen_cluster = made  # closed with the client (see close_client)
    return client


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


def resolve_device(device: str, kind: str) -> str:
    """'auto' → the torch device the workers of cluster `kind` will run the model on: cuda when they have
    GPUs (a local machine with GPUs, slurm/kubernetes with `gpus` set, or a scheduler whose workers
    advertise GPU), else cpu. Any other value is returned as it is."""
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
