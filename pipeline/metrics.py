"""Map accuracy as the CBRA paper measures it: Table 2's pixel metrics, temporal flicker (§5.2) and the
R² between two products' foreground fractions on a coarse grid (Fig. 15). Pure NumPy, no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Confusion:
    """Pixel counts of a binary map against a reference; add() accumulates over years and tiles."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, predicted: np.ndarray, truth: np.ndarray) -> Confusion:
        predicted, truth = predicted.astype(bool), truth.astype(bool)
        self.tp += int(np.count_nonzero(predicted & truth))
        self.fp += int(np.count_nonzero(predicted & ~truth))
        self.fn += int(np.count_nonzero(~predicted & truth))
        self.tn += int(np.count_nonzero(~predicted & ~truth))
        return self

    def __iadd__(self, other: Confusion) -> Confusion:
        self.tp, self.fp, self.fn, self.tn = (self.tp + other.tp, self.fp + other.fp, self.fn + other.fn,
                                              self.tn + other.tn)
        return self

    @property
    def pixels(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def metrics(self) -> dict[str, float]:
        """Table 2: TP, FP, TN, FN (as shares of all pixels, as Table 3 gives them), IoU, OA, recall, F1;
        also precision. A ratio with a zero denominator is 0."""
        def ratio(a: int, b: int) -> float:
            return a / b if b else 0.0

        total = self.pixels
        return {
            "tp": ratio(self.tp, total), "fp": ratio(self.fp, total),
            "tn": ratio(self.tn, total), "fn": ratio(self.fn, total),
            "iou": ratio(self.tp, self.tp + self.fp + self.fn),
            "oa": ratio(self.tp + self.tn, total),
            "recall": ratio(self.tp, self.tp + self.fn),
            "precision": ratio(self.tp, self.tp + self.fp),
            "f1": ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn),
        }

    def to_dict(self, digits: int = 4) -> dict[str, float | int]:
        return {**{k: round(v, digits) for k, v in self.metrics().items()}, "pixels": self.pixels,
                "counts": asdict(self)}


def flicker(stack: np.ndarray, valid: np.ndarray, stable: np.ndarray) -> tuple[int, int]:
    """(flips, pairs): over consecutive years, how often a pixel's class changes where `stable` says the
    truth does not change. stack: (T, H, W) 0/1 classes; valid: (T, H, W) where the map has data;
    stable: (H, W). A pair counts only where both years have data."""
    if stack.shape[0] < 2:
        return 0, 0
    both = valid[1:] & valid[:-1] & stable[None]
    flips = (stack[1:] != stack[:-1]) & both
    return int(np.count_nonzero(flips)), int(np.count_nonzero(both))


def block_fraction(mask: np.ndarray, valid: np.ndarray, cell: int) -> np.ndarray:
    """Foreground fraction per cell × cell block of valid pixels; NaN for a block without any. Partial
    blocks at the right and bottom edges count over the pixels they have."""
    h, w = mask.shape
    rows, cols = -(-h // cell), -(-w // cell)
    pad = ((0, rows * cell - h), (0, cols * cell - w))
    fg = np.pad(mask & valid, pad).reshape(rows, cell, cols, cell).sum(axis=(1, 3), dtype=np.int64)
    n = np.pad(valid, pad).reshape(rows, cell, cols, cell).sum(axis=(1, 3), dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, fg / np.maximum(n, 1), np.nan)


def r_squared(a: np.ndarray, b: np.ndarray) -> float:
    """Squared Pearson correlation of two series, ignoring pairs with a NaN; NaN when undefined
    (fewer than 2 pairs, or a constant series)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1] ** 2)
