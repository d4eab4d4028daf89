"""The paper's two training streams (CBRA §4.1), drawn from synthetic scenes.

- High-resolution pairs: a Sentinel-2 window and its 2.5 m rooftops (HR loss), with the window's 10 m
  built label too, so that the SG loss also supervises where rooftops are known (the "collaborative
  training" of Table B4, which the paper found better).
- Low-resolution pairs: a window and its 10 m built label (SG loss), plus the same place in another year
  (the positive of the TC loss).

Windows are kept when ≥ 10 % of their pixels are built (§4.1), read from the built layer, as the paper
read it from land cover. The same seed gives the same windows in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from .scenes import Normalisation, SceneYear

PATCH_SIZE = 64  # input pixels, the pipeline's window (Table B3)


@dataclass(frozen=True)
class SamplingConfig:
    size: int = PATCH_SIZE
    scale: int = 4
    min_built_fraction: float = 0.10  # §4.1
    built_threshold: float = 0.5  # a 10 m pixel is "built" at this probability (also the SG label)
    # A share of windows below the 10 % rule (fields, forest, water, sparse villages), drawn on purpose,
    # so that the network also learns to say "no building" where the pipeline will show it such windows.
    background_share: float = 0.15
    augment: bool = True
    # Colour jitter on B2, B3, B4 in reflectance before normalising: one brightness gain for the three
    # bands and a small gain per band (an annual composite's colour varies year to year).
    brightness: float = 0.10
    channel_gain: float = 0.05
    jitter_bands: int = 3


def window_fraction(mask: np.ndarray, size: int) -> np.ndarray:
    """Fraction of True pixels in every size×size window of a 2-D mask, indexed by the window's origin."""
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    integral[1:, 1:] = np.cumsum(np.cumsum(mask, axis=0, dtype=np.int64), axis=1)
    s = size
    counts = integral[s:, s:] - integral[:-s, s:] - integral[s:, :-s] + integral[:-s, :-s]
    return counts / float(s * s)


def eligible_origins(scene: SceneYear, config: SamplingConfig) -> tuple[np.ndarray, np.ndarray]:
    """Flat origin indices (row · (W − size + 1) + col) of full-data windows: (≥ 10 % built, the rest)."""
    valid = np.isfinite(scene.s2).all(axis=0)
    complete = window_fraction(~valid, config.size) == 0  # training windows never need padding
    built = np.nan_to_num(scene.built, nan=0.0) >= config.built_threshold
    fraction = window_fraction(built, config.size)
    positive = np.flatnonzero(complete & (fraction >= config.min_built_fraction)).astype(np.int64)
    background = np.flatnonzero(complete & (fraction < config.min_built_fraction)).astype(np.int64)
    return positive, background


class HRBatch(NamedTuple):
    x: torch.Tensor  # N×C×H×W normalised Sentinel-2
    y: torch.Tensor  # N×1×sH×sW rooftops, 0/1
    built: torch.Tensor  # N×1×H×W built label, 0/1


class LRBatch(NamedTuple):
    x: torch.Tensor  # N×C×H×W
    built: torch.Tensor  # N×1×H×W built label, 0/1
    x_other_year: torch.Tensor  # N×C×H×W: the same windows in another year (TC positives)


class PatchSampler:
    """Random training windows from scenes; the same seed gives the same windows in the same order."""

    def __init__(self, scenes: Sequence[SceneYear], normalisation: Normalisation, *, seed: int,
                 config: SamplingConfig = SamplingConfig()) -> None:
        if not scenes:
            raise ValueError("PatchSampler: no scenes")
        self.scenes = list(scenes)
        self.norm = normalisation
        self.config = config
        self.rng = np.random.default_rng(seed)
        pools = [eligible_origins(s, config) for s in self.scenes]
        self._widths = [s.s2.shape[2] - config.size + 1 for s in self.scenes]
        self._pools = {kind: [p[i] for p in pools] for i, kind in enumerate(("positive", "background"))}
        self._cumulative = {kind: np.cumsum([len(p) for p in pool]) for kind, pool in self._pools.items()}
        if self.count("positive") + self.count("background") == 0:
            raise ValueError("PatchSampler: the scenes hold no window with data")
        # Other years of the same scene (same name and shape), for the temporal-contrast positives.
        self._other_years = [
            [j for j, o in enumerate(self.scenes) if j != i and o.name == s.name and o.s2.shape == s.s2.shape]
            for i, s in enumerate(self.scenes)
        ]

    def count(self, kind: str) -> int:
        cumulative = self._cumulative[kind]
        return int(cumulative[-1]) if len(cumulative) else 0

    def draw(self) -> tuple[int, int, int, bool]:
        """(scene index, row, col, positive?) of one window, every eligible window equally likely."""
        want_background = self.rng.random() < self.config.background_share
        kind = "background" if want_background else "positive"
        if self.count(kind) == 0:  # a scene set without one kind still gives windows of the other
            kind = "positive" if want_background else "background"
        index = int(self.rng.integers(self.count(kind)))
        scene = int(np.searchsorted(self._cumulative[kind], index, side="right"))
        before = int(self._cumulative[kind][scene - 1]) if scene else 0
        flat = int(self._pools[kind][scene][index - before])
        row, col = divmod(flat, self._widths[scene])
        return scene, row, col, kind == "positive"

    def window(self, scene: int, row: int, col: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of one window: (C, size, size) reflectance, its (s·size)² rooftops and size² built label."""
        c, s = self.config, self.config.size
        data = self.scenes[scene]
        x = data.s2[:, row:row + s, col:col + s].copy()
        y = data.rooftops[row * c.scale:(row + s) * c.scale, col * c.scale:(col + s) * c.scale].copy()
        built = np.nan_to_num(data.built[row:row + s, col:col + s], nan=0.0) >= c.built_threshold
        return x, y, built.astype(np.uint8)

    def _geometry(self) -> tuple[int, bool]:
        return int(self.rng.integers(4)), bool(self.rng.random() < 0.5)

    @staticmethod
    def _transform(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
        a = np.rot90(a, k, axes=(-2, -1))
        return np.ascontiguousarray(a[..., ::-1] if flip else a)

    def _jitter(self, x: np.ndarray) -> np.ndarray:
        c = self.config
        gain = self.rng.uniform(1 - c.brightness, 1 + c.brightness)
        gains = gain * self.rng.uniform(1 - c.channel_gain, 1 + c.channel_gain, size=c.jitter_bands)
        x = x.copy()
        x[:c.jitter_bands] *= gains[:, None, None].astype(np.float32)
        return x

    def augment(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """One random flip/rotation of the 8 for all arrays (image first), then colour jitter on the image."""
        if not self.config.augment:
            return list(arrays)
        k, flip = self._geometry()
        out = [self._transform(a, k, flip) for a in arrays]
        out[0] = self._jitter(out[0])
        return out

    def _tensor(self, images: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(self.norm.apply(np.stack(images)))

    @staticmethod
    def _labels(labels: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(labels)[:, None].astype(np.float32))

    def hr_sample(self, n: int) -> tuple[HRBatch, np.ndarray]:
        """n high-resolution pairs and, for each, whether it passed the 10 % rule."""
        xs, ys, builts, positive = [], [], [], []
        for _ in range(n):
            scene, row, col, is_positive = self.draw()
            x, y, built = self.augment(*self.window(scene, row, col))
            xs.append(x)
            ys.append(y)
            builts.append(built)
            positive.append(is_positive)
        return HRBatch(self._tensor(xs), self._labels(ys), self._labels(builts)), np.asarray(positive)

    def hr_batch(self, n: int) -> HRBatch:
        return self.hr_sample(n)[0]

    def lr_batch(self, n: int) -> LRBatch:
        """n low-resolution pairs with, for each, the same place in another year, augmented on its own."""
        xs, builts, others = [], [], []
        for _ in range(n):
            scene, row, col, _ = self.draw()
            x, _, built = self.window(scene, row, col)
            x, built = self.augment(x, built)
            choices = self._other_years[scene] or [scene]  # a single-year scene pairs a window with itself
            other = choices[int(self.rng.integers(len(choices)))]
            x_other = self.augment(self.window(other, row, col)[0])[0]
            xs.append(x)
            builts.append(built)
            others.append(x_other)
        return LRBatch(self._tensor(xs), self._labels(builts), self._tensor(others))

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
