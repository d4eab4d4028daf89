"""Held-out scores of a network while training: random windows, and whole scenes windowed as the pipeline
does (lattice, zero padding, maximum where windows overlap with borders yielding to interiors, threshold,
built mask)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from mapgen.models import STSRSeg
from mapgen.pipeline import kernels
from mapgen.pipeline.metrics import Confusion
from mapgen.pipeline.scoring import stitched_confidence
from mapgen.pipeline.windows import WindowLattice
from mapgen.tiles import Box

from .sampling import PATCH_SIZE, PatchSampler, SamplingConfig
from .scenes import Normalisation, SceneYear

OVERLAP = round(0.1 * PATCH_SIZE)  # the product's 10 % overlap, in input pixels


@dataclass(frozen=True)
class EvalConfig:
    windows: int = 512  # random held-out windows, by the training sampler's rules
    whole_scene: bool = True  # also every year of the held-out scene, windowed as the pipeline does
    stride: int = PATCH_SIZE - OVERLAP
    border: int = OVERLAP // 2  # the product's stitch border (pipeline/stitch.py)
    batch: int = 64


@torch.no_grad()
def evaluate_windows(model: STSRSeg, sampler: PatchSampler, n: int, batch: int) -> dict[str, Any]:
    """Pixel metrics of sigmoid > 0.5 on n windows drawn by the training rules (without augmentation)."""
    model.eval()
    confusion = Confusion()
    positives = 0
    for start in range(0, n, batch):
        data, positive = sampler.hr_sample(min(batch, n - start))
        confusion.add(model.predict(data.x).numpy() > 0.5, data.y.numpy() > 0.5)
        positives += int(positive.sum())
    return {**confusion.to_dict(), "windows": n, "windows_built": positives}


def predict_scene(model: STSRSeg, x: np.ndarray, *, size: int, stride: int, batch: int,
                  border: int = 0) -> np.ndarray:
    """Confidence over a whole (C, H, W) normalised image, the pipeline's way: windows on a lattice, zero
    padding past the edges, the maximum where windows overlap (borders of `border` px yielding to
    interiors); (sH, sW) float32."""
    scale = model.config.scale
    box = Box(0, 0, x.shape[1], x.shape[2])
    lattice = WindowLattice(size, stride)
    read, origins = lattice.covering(box)
    padded = np.zeros((x.shape[0], read.height, read.width), dtype=np.float32)
    padded[:, -read.row:-read.row + box.height, -read.col:-read.col + box.width] = x
    canvas = stitched_confidence(model, padded, read, origins, lattice, batch, border)
    rows, cols = box.scaled(scale).slices_in(read.scaled(scale))
    return canvas[rows, cols]


def evaluate_scene(model: STSRSeg, scenes: Sequence[SceneYear], norm: Normalisation, *, size: int, stride: int,
                   batch: int, border: int = 0, built_mask: float = 0.2) -> dict[str, Any]:
    """Whole-scene pixel metrics over every year: the raw model (sigmoid > 0.5) and the product's post
    chain (then built ≥ 0.2, upsampled as the pipeline's kernel does)."""
    raw, masked = Confusion(), Confusion()
    scale = model.config.scale
    for scene in scenes:
        conf = predict_scene(model, norm.apply(scene.s2), size=size, stride=stride, batch=batch, border=border)
        valid = np.isfinite(scene.s2).all(axis=0)
        codes = kernels.threshold(conf, valid, 0.5, scale)
        layer = np.pad(scene.built.astype(np.float32), 1, constant_values=np.nan)  # centre value at the edge
        product = kernels.mask_below(codes, layer, built_mask, scale)
        known = codes != kernels.NODATA
        raw.add(codes[known] == kernels.FOREGROUND, scene.rooftops[known])
        masked.add(product[known] == kernels.FOREGROUND, scene.rooftops[known])
    return {"model": raw.to_dict(), "product": masked.to_dict(), "years": [s.year for s in scenes]}


def evaluate_held_out(model: STSRSeg, scenes: Sequence[SceneYear], norm: Normalisation, *, seed: int,
                      sampling: SamplingConfig, config: EvalConfig = EvalConfig()) -> dict[str, Any]:
    """Random windows by the training rules (their own random stream), then every year in full."""
    rules = SamplingConfig(**{**asdict(sampling), "augment": False})
    sampler = PatchSampler(scenes, norm, seed=seed + 1, config=rules)
    metrics: dict[str, Any] = {"threshold": 0.5, "windows": evaluate_windows(model, sampler, config.windows,
                                                                             config.batch)}
    if config.whole_scene:
        metrics["scene"] = evaluate_scene(model, scenes, norm, size=sampling.size, stride=config.stride,
                                          batch=config.batch, border=config.border)
    return metrics
