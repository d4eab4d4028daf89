"""A model's stitched confidence over a box, outside the run's tasks: used by `mapgen evaluate` (isolated
windows) and by training's held-out scores (`mapgen.training.scoring`), stitched as the run stitches."""

from __future__ import annotations

import numpy as np
import torch

from mapgen.models import STSRSeg
from mapgen.tiles import Box

from .stitch import max_stitch
from .windows import WindowLattice


@torch.no_grad()
def stitched_confidence(model: STSRSeg, image: np.ndarray, read: Box, origins: np.ndarray, lattice: WindowLattice,
                        batch: int, border: int = 0) -> np.ndarray:
    """Sigmoid confidence over `read` (output resolution) from the windows at `origins` of a normalised
    (C, H, W) image covering `read`, stitched by the pipeline's `max_stitch` with `border`."""
    model.eval()
    windows = lattice.extract(image, read, origins)
    conf = np.concatenate([
        model.predict(torch.from_numpy(windows[i:i + batch]), batch_size=batch)[:, 0].numpy()
        for i in range(0, len(windows), batch)
    ])
    return max_stitch(conf, origins, read, model.config.scale, border)
