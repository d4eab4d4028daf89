"""Running a checkpoint on batches of windows, with the model loaded once per worker process."""

from __future__ import annotations

import threading
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
    if isinstance(ref, ModelRef):
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
            heads = model.forward_heads(x, meta)
            for head, activation in activations.items():
                scores = heads[head]
                scores = _activate(scores, activation, channel_axis=scores.ndim - 3)
                outputs.setdefault(head, []).append(scores[: part.stop - part.start].float().cpu().numpy())
    return {head: np.concatenate(parts) for head, parts in outputs.items()}


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


class PreloadModel(WorkerPlugin):
    """Dask worker plugin: load the model (and compile the kernels) when a worker starts or joins, so the
    first task does not pay for it and a model is loaded exactly once per worker."""

    def __init__(self, ref: ModelRef):
        self.ref = ref
        self.name = f"mapgen-preload-{ref.sha256[:12]}"

    def setup(self, worker=None) -> None:
        from . import kernels

        get_model(self.ref)
        codes = kernels.threshold(np.zeros((4, 4), np.float32), np.ones((1, 1), bool), 0.5, 4)
        kernels.majority_vote(np.stack([kernels.mask_below(codes, np.zeros((3, 3), np.float32), 0.2, 4)] * 3))
