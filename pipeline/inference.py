"""Running a checkpoint on batches of windows, with the model loaded once per worker process."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from distributed import WorkerPlugin

from mapgen.models.contract import ModelMeta, check_network

from .windows import batches


@dataclass(frozen=True)
class ModelRef:
    """What a worker needs to load a checkpoint: small and picklable; the hash pins the bytes."""

    path: str
    sha256: str
    architecture: str
    device: str = "cpu"
    precision: str = "fp32"  # 'bf16': autocast to bfloat16 with channels-last tensors (the GPU path)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")


PRECISIONS = ("fp32", "bf16")


_MODELS: dict[ModelRef, torch.nn.Module] = {}
_LOCK = threading.Lock()
# One forward pass at a time in a process: it uses every thread the worker has (or the one GPU), while the
# worker's other threads read, stitch and vote the next blocks.
_FORWARD = threading.Lock()
loads: dict[str, int] = {}  # sha256 → how many times this process loaded that checkpoint (read by the tests)


def get_model(ref: ModelRef) -> torch.nn.Module:
    """The model of `ref`, loaded on first use in this process and kept for every later task."""
    with _LOCK:
        model = _MODELS.get(ref)
        if model is None:
            from mapgen.models import load_checkpoint

            model, _ = load_checkpoint(ref.path, sha256=ref.sha256, architecture=ref.architecture,
                                       device=ref.device)
            check_network(model, ref.architecture)
            if ref.precision == "bf16":
                model = model.to(memory_format=torch.channels_last)
            _MODELS[ref] = model
            loads[ref.sha256] = loads.get(ref.sha256, 0) + 1
        return model


def _activate(scores: torch.Tensor, activation: str, channel_axis: int) -> torch.Tensor:
    if activation == "sigmoid":
        return torch.sigmoid(scores)
    if activation == "softmax":
        return torch.softmax(scores, dim=channel_axis)
    return scores  # "logits": stitched and post-processed as they are


def predict_heads(ref: ModelRef | torch.nn.Module, windows: Mapping[str, np.ndarray], batch: int, *,
                  activations: Mapping[str, str], meta: ModelMeta | None = None) -> dict[str, np.ndarray]:
    """Each head's activated scores, float32 (N, [T,] K, S, S), for N windows given per input name
    ((N, C, h, w), or (N, T, C, h, w) for a network that sees several dates). `ref` is a checkpoint (loaded
    once per process) or a network in memory (training's held-out scores), run in fp32 where it lies.

    Every batch is padded to `batch` windows so each window goes through the same kernels whatever its
    company: a window's prediction must not depend on which block it was computed for. With
    `ref.precision == 'bf16'` the network runs under bfloat16 autocast on channels-last tensors, the fast
    path of tensor-core GPUs; scores come back as float32 either way.
    """
    shared = isinstance(ref, ModelRef)  # the process's one copy, which several task threads may use
    if shared:
        model, device, bf16 = get_model(ref), torch.device(ref.device), ref.precision == "bf16"
    else:
        model, bf16 = check_network(ref, type(ref).__name__), False
        device = next(ref.parameters()).device
    meta = meta if meta is not None else ModelMeta()
    count = len(next(iter(windows.values())))
    outputs: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for part in batches(count, batch):
            x = {}
            for name, array in windows.items():
                chunk = array[part]
                if len(chunk) < batch:
                    pad = np.zeros((batch - len(chunk), *chunk.shape[1:]), dtype=chunk.dtype)
                    chunk = np.concatenate([chunk, pad])
                tensor = torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32)).to(device, non_blocking=True)
                if bf16 and tensor.ndim == 4:
                    tensor = tensor.contiguous(memory_format=torch.channels_last)
                x[name] = tensor
            if shared:
                with _FORWARD:
                    heads = model.forward_heads(x, meta)
            else:
                heads = model.forward_heads(x, meta)
            for head, activation in activations.items():
                scores = heads[head]
                scores = _activate(scores, activation, channel_axis=scores.ndim - 3)
                outputs.setdefault(head, []).append(scores[: part.stop - part.start].float().cpu().numpy())
    return {head: np.concatenate(parts) for head, parts in outputs.items()}


class BatchStream:
    """Windows of several requests (a block's dates) through one network in batches of exactly `batch`.

    A request's last windows share a batch with the next request's first ones, so only the stream's last
    batch is padded (a block-year of CBRA is 400–441 windows: padded alone to batches of 64, up to 12 % of
    its forward passes would be padding). Every batch still holds `batch` windows, so a window's scores do
    not depend on its company, as with `predict_heads`. `add` returns the requests whose windows have all
    been run, in order, with their scores; `finish` runs and returns the rest.
    """

    def __init__(self, ref: ModelRef | torch.nn.Module, batch: int, *, activations: Mapping[str, str],
                 meta: ModelMeta | None = None):
        self.ref, self.batch, self.activations, self.meta = ref, batch, dict(activations), meta
        self._waiting: list[tuple[object, dict[str, np.ndarray]]] = []  # requests not run in full, in order
        self._done: list[dict[str, list[np.ndarray]]] = []  # their scores so far, per head
        self._queued = 0  # windows of the waiting requests not yet run
        self.model_seconds = 0.0  # spent in forward passes (and waiting for the process's model)

    def add(self, key: object, windows: Mapping[str, np.ndarray]) -> list[tuple[object, dict[str, np.ndarray]]]:
        count = len(next(iter(windows.values())))
        self._waiting.append((key, dict(windows)))
        self._done.append({head: [] for head in self.activations})
        self._queued += count
        while self._queued >= self.batch:
            self._run(self.batch)
        return self._pop_complete()

    def finish(self) -> list[tuple[object, dict[str, np.ndarray]]]:
        if self._queued:
            self._run(self._queued)
        return self._pop_complete()

    def _run(self, size: int) -> None:
        """Run the next `size` queued windows (fewer than `batch` only at the end: predict_heads pads them)."""
        parts, need = [], size
        for i, (_, windows) in enumerate(self._waiting):
            have = len(next(iter(windows.values())))
            ran = sum(len(p) for p in next(iter(self._done[i].values()), [])) if self._done[i] else 0
            if ran >= have:
                continue
            take = min(have - ran, need)
            parts.append((i, slice(ran, ran + take)))
            need -= take
            if not need:
                break
        names = self._waiting[0][1].keys()
        x = {name: np.concatenate([self._waiting[i][1][name][part] for i, part in parts]) for name in names}
        started = time.perf_counter()
        scores = predict_heads(self.ref, x, self.batch, activations=self.activations, meta=self.meta)
        self.model_seconds += time.perf_counter() - started
        offset = 0
        for i, part in parts:
            n = part.stop - part.start
            for head, values in scores.items():
                self._done[i][head].append(values[offset:offset + n])
            offset += n
        self._queued -= size

    def _pop_complete(self) -> list[tuple[object, dict[str, np.ndarray]]]:
        complete = []
        while self._waiting:
            key, windows = self._waiting[0]
            have = len(next(iter(windows.values())))
            first = next(iter(self._done[0].values()), [])
            if sum(len(p) for p in first) < have:
                break
            scores = {head: np.concatenate(parts) for head, parts in self._done[0].items()}
            complete.append((key, scores))
            self._waiting.pop(0)
            self._done.pop(0)
        return complete


def predict_windows(ref: ModelRef | torch.nn.Module, windows: np.ndarray, batch: int,
                    activation: str = "sigmoid", channel: int | None = 0) -> np.ndarray:
    """(N, scale·h, scale·w) confidences of a one-input, one-head network's `channel` for (N, C, h, w)
    normalised windows, or (N, K, scale·h, scale·w) of every channel with `channel=None` (benchmarks,
    evaluation and training's scores call it)."""
    model = get_model(ref) if isinstance(ref, ModelRef) else ref
    if not len(windows):
        return np.zeros((0, 0, 0) if channel is not None else (0, 0, 0, 0), dtype=np.float32)
    (head,) = model.heads
    scores = predict_heads(ref, {model.inputs[0]: windows}, batch, activations={head: activation})[head]
    return scores if channel is None else scores[:, channel]


# glibc's mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8


def keep_freed_memory(limit: int = 1 << 30) -> bool:
    """Let this process reuse the memory it frees, up to `limit` bytes a block, instead of handing it back to
    the kernel at once. glibc maps every block above its mmap threshold afresh and unmaps it when freed
    (and Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536), while a forward pass on the CPU allocates and frees
    hundreds of MB of activations a batch: every batch then faulted its memory in again page by page, and on
    the 2-core development machine half of the model's CPU time went to the kernel (STSR-Seg small: 26.8
    windows/s, 58.4 with this). Threads other than the main one allocate from arenas of at most 64 MB, which
    map any larger block afresh whatever the threshold, so threads that start after this call share the
    main arena; threads started before it keep theirs, hence MALLOC_ARENA_MAX=1 in the environment local
    workers start with (cluster.yaml). Returns False where the C library is not glibc (nothing is changed)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): their allocators behave otherwise
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return all([mallopt(_M_MMAP_THRESHOLD, limit), mallopt(_M_TRIM_THRESHOLD, limit), mallopt(_M_ARENA_MAX, 1)])


def worker_cores(worker) -> int:
    """The CPU threads a worker's model and kernels may use: MAPGEN_WORKER_CORES where the cluster sets it
    (a local cluster: this machine's cores shared among its workers), else the worker's Dask threads."""
    given = os.environ.get(CORES_VARIABLE, "")
    return int(given) if given.isdigit() and int(given) > 0 else max(1, int(worker.state.nthreads))


CORES_VARIABLE = "MAPGEN_WORKER_CORES"


class PreloadModel(WorkerPlugin):
    """Dask worker plugin: set the threads torch uses to the worker's cores (Dask's nanny starts every worker
    with OMP_NUM_THREADS=1, which would leave torch on one thread whatever the worker has), keep the memory
    the worker frees for reuse (`keep_freed_memory`), load the model
    and compile the kernels when a worker starts or joins, so the first task does not pay for it and a
    model is loaded exactly once per worker."""

    def __init__(self, ref: ModelRef):
        self.ref = ref
        self.name = f"mapgen-preload-{ref.sha256[:12]}"

    def setup(self, worker=None) -> None:
        from . import kernels

        if worker is not None:
            torch.set_num_threads(worker_cores(worker))
            keep_freed_memory()
        get_model(self.ref)
        codes = kernels.threshold(np.zeros((4, 4), np.float32), np.ones((1, 1), bool), 0.5, 4)
        kernels.majority_vote(np.stack([kernels.mask_below(codes, np.zeros((3, 3), np.float32), 0.2, 4)] * 3))
