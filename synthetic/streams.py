"""What every generator shares: independent random streams per concern, and parameters as plain JSON."""

from __future__ import annotations

from typing import Any

import numpy as np


def stream_rng(seed: int, stream: int, *extra: int) -> np.random.Generator:
    """The random stream `stream` (and sub-streams `extra`) of a scene's seed, independent of the others, so
    that changing one part of a generator leaves the others' draws (and the files they make) as they were."""
    seed = int(seed)
    zigzag = 2 * seed if seed >= 0 else -2 * seed - 1  # SeedSequence wants non-negative entropy
    return np.random.default_rng(np.random.SeedSequence([zigzag, stream, *extra]))


def jsonable(x: Any) -> Any:
    """Sampled parameters as JSON types (NumPy scalars and arrays, tuples, non-string keys converted)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    return x  # Python floats print as their shortest round-trip repr: stable text, exact values
