"""The engine's window → model → stitch → post path outside a run's tasks, for a network in memory or a
checkpoint: `mapgen evaluate` (isolated windows) and training's held-out scores (`mapgen.training.scoring`)
go through the same functions as the run, so what is scored is what is mapped."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from mapgen.tiles import Box
from mapgen.workflows import Product

from .inference import ModelRef, predict_windows
from .post import apply_post
from .stitch import max_stitch, stitch
from .windows import WindowLattice


def stitched_confidence(model: ModelRef | torch.nn.Module, image: np.ndarray, read: Box, origins: np.ndarray,
                        lattice: WindowLattice, batch: int, border: int = 0, activation: str = "sigmoid",
                        channel: int | None = 0) -> np.ndarray:
    """Confidence (H, W) of `channel`, or (K, H, W) of every channel with `channel=None`, over `read` (output
    resolution) of a one-head network from the windows at `origins` of a normalised (C, H, W) image covering
    `read`: `predict_windows` as the run batches them, then the run's maximum with `border`."""
    if isinstance(model, torch.nn.Module):
        model.eval()
    conf = predict_windows(model, lattice.extract(image, read, origins), batch, activation, channel)
    scale = conf.shape[-1] // lattice.size if len(conf) else 1
    if channel is None:
        return stitch(conf, origins, read, scale, "max", border)
    return max_stitch(conf, origins, read, scale, border)


def product_codes(product: Product, conf: np.ndarray, valid: np.ndarray,
                  layer_with_halo: Callable[[str], np.ndarray | None], scale: int, steps: int | None = None
                  ) -> np.ndarray:
    """Class codes of a confidence, (H, W) of one channel or (K, H, W), by the product's post chain (its first
    `steps` steps only, e.g. 1 for the model's own threshold without masks), as `store_group` makes them."""
    chain = product.output.post if steps is None else product.output.post[:steps]
    return apply_post(chain, conf[None] if conf.ndim == 2 else conf, valid, layer_with_halo, scale)
