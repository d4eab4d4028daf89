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
            _MODELS[ref] = model
            loads[ref.sha256] = loads.get(ref.sha256, 0) + 1
        return model


def predict_windows(ref: ModelRef, windows: np.ndarray, batch: int) -> np.ndarray:
    """(N, scale·h, scale·w) sigmoid confidences of (N, C, h, w) normalised windows.

    Every batch is padded to `batch` windows so each window goes through the same kernels whatever its
    company: a window's prediction must not depend on which block it was computed for.
    """
    model = get_model(ref)
    device = torch.device(ref.device)
    outputs = []
    with torch.inference_mode():
        for part in batches(len(windows), batch):
            chunk = windows[part]
            if len(chunk) < batch:
                pad = np.zeros((batch - len(chunk), *chunk.shape[1:]), dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            x = torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32)).to(device)
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
