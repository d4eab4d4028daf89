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
from mapgen.pipeline import classes
from mapgen.pipeline.metrics import Confusion
from mapgen.pipeline.scoring import product_codes, stitched_confidence
from mapgen.pipeline.windows import WindowLattice
from mapgen.tiles import Box
from mapgen.workflows import Product, load_product

from .sampling import PATCH_SIZE, PatchSampler, SamplingConfig
from .scenes import Normalisation, SceneYear

OVERLAP = round(0.1 * PATCH_SIZE)  # the product's 10 % overlap, in input pixels
PRODUCT = "cbra"  # STSR-Seg's product: its post chain scores the whole scenes


@dataclass(frozen=True)
class EvalConfig:
    windows: int = 512  # random held-out windows, by the training sampler's rules
    whole_scene: bool = True  # also every year of the held-out scene, windowed as the pipeline does
    stride: int = PATCH_SIZE - OVERLAP
    border: int = OVERLAP // 2  # the product's stitch border (pipeline/stitch.py)
    batch: int = 64


def _threshold(product: Product) -> float:
    return float(product.output.post[0]["threshold"])


@torch.no_grad()
def evaluate_windows(model: STSRSeg, sampler: PatchSampler, n: int, batch: int,
                     product: Product | None = None) -> dict[str, Any]:
    """Pixel metrics of the product's threshold (CBRA: sigmoid > 0.5) on n windows drawn by the training rules
    (without augmentation)."""
    model.eval()
    cut = _threshold(product or load_product(PRODUCT))
    confusion = Confusion()
    positives = 0
    for start in range(0, n, batch):
        data, positive = sampler.hr_sample(min(batch, n - start))
        confusion.add(model.predict(data.x).numpy() > cut, data.y.numpy() > 0.5)
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
                   batch: int, border: int = 0, product: Product | None = None) -> dict[str, Any]:
    """Whole-scene pixel metrics over every year: the raw model (the post chain's threshold alone) and the
    product's whole post chain (CBRA: then built ≥ 0.2, upsampled as the run does), by the engine's kernels."""
    product = product or load_product(PRODUCT)
    raw, masked = Confusion(), Confusion()
    scale = model.config.scale
    for scene in scenes:
        conf = predict_scene(model, norm.apply(scene.s2), size=size, stride=stride, batch=batch, border=border)
        valid = np.isfinite(scene.s2).all(axis=0)
        layer = np.pad(scene.built.astype(np.float32), 1, constant_values=np.nan)  # centre value at the edge
        codes = product_codes(product, conf, valid, lambda _name, layer=layer: layer, scale, steps=1)
        mapped = product_codes(product, conf, valid, lambda _name, layer=layer: layer, scale)
        known = codes != classes.NODATA
        raw.add(codes[known] == classes.FOREGROUND, scene.rooftops[known])
        masked.add(mapped[known] == classes.FOREGROUND, scene.rooftops[known])
    return {"model": raw.to_dict(), "product": masked.to_dict(), "years": [s.year for s in scenes]}


def evaluate_held_out(model: STSRSeg, scenes: Sequence[SceneYear], norm: Normalisation, *, seed: int,
                      sampling: SamplingConfig, config: EvalConfig = EvalConfig()) -> dict[str, Any]:
    """Random windows by the training rules (their own random stream), then every year in full."""
    rules = SamplingConfig(**{**asdict(sampling), "augment": False})
    sampler = PatchSampler(scenes, norm, seed=seed + 1, config=rules)
    product = load_product(PRODUCT)
    metrics: dict[str, Any] = {"threshold": _threshold(product),
                               "windows": evaluate_windows(model, sampler, config.windows, config.batch, product)}
    if config.whole_scene:
        metrics["scene"] = evaluate_scene(model, scenes, norm, size=sampling.size, stride=config.stride,
                                          batch=config.batch, border=config.border, product=product)
    return metrics
