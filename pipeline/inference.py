"""Running a checkpoint on batches of windows, with the model loaded once per worker process."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

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
load_count = 0  # how many times this process loaded a checkpoint (read by the tests)


def get_model(ref: ModelRef) -> torch.nn.Module:
    """The model of `ref`, loaded on first use in this process and kept for every later task."""
    global load_count
    with _LOCK:
        model = _MODELS.get(ref)
        if model is None:
            from mapgen.models import load_checkpoint

            model, _ = load_checkpoint(ref.path, sha256=ref.sha256, architecture=ref.architecture,
                                       device=ref.device)
            _MODELS[ref] = model
            load_count += 1
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
