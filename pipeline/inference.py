"""Running a checkpoint on batches of windows, with the model loaded once per worker process."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
from distributed import WorkerPlugin

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
            if ref.precision == "bf16":
                model = model.to(memory_format=torch.channels_last)
            _MODELS[ref] = model
            loads[ref.sha256] = loads.get(ref.sha256, 0) + 1
        return model


def predict_windows(ref: ModelRef, windows: np.ndarray, batch: int) -> np.ndarray:
    """(N, scale·h, scale·w) sigmoid confidences of (N, C, h, w) normalised windows.

    Every batch is padded to `batch` windows so each window goes through the same kernels whatever its
    company: a window's prediction must not depend on which block it was computed for. With
    `ref.precision == 'bf16'` the network runs under bfloat16 autocast on channels-last tensors, the fast
    path of tensor-core GPUs; confidences come back as float32 either way.
    """
    model = get_model(ref)
    device = torch.device(ref.device)
    bf16 = ref.precision == "bf16"
    layout = torch.channels_last if bf16 else torch.contiguous_format
    outputs = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for part in batches(len(windows), batch):
            chunk = windows[part]
            if len(chunk) < batch:
                pad = np.zeros((batch - len(chunk), *chunk.shape[1:]), dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            x = torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32))
            x = x.to(device, non_blocking=True).contiguous(memory_format=layout)
            conf = model.predict(x)[:, 0]
            outputs.append(conf[: part.stop - part.start].float().cpu().numpy())
    if not outputs:
        return np.zeros((0, 0, 0), dtype=np.float32)
    return np.concatenate(outputs)


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
