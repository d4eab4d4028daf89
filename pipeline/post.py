"""The product's post-processing and temporal chains, step by step, on top of the kernels."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mapgen.workflows import ProductError, StepSpec

from . import kernels

POST_KERNELS = ("threshold", "mask")
TEMPORAL_KERNELS = ("majority_vote",)


def check_steps(post: tuple[StepSpec, ...], temporal: tuple[StepSpec, ...], where: str) -> None:
    """Refuse unknown kernels or a chain that does not start by thresholding, before any work."""
    for step in post:
        if step.kernel not in POST_KERNELS:
            raise ProductError(f"{where}: unknown post kernel {step.kernel!r} (known: {', '.join(POST_KERNELS)})")
    if not post or post[0].kernel != "threshold":
        raise ProductError(f"{where}: the post chain must start with a 'threshold' step")
    for step in temporal:
        if step.kernel not in TEMPORAL_KERNELS:
            raise ProductError(f"{where}: unknown temporal kernel {step.kernel!r}")
        if step.kernel == "majority_vote" and step.params.get("window", 3) != 3:
            raise ProductError(f"{where}: majority_vote supports window = 3 only")


def apply_post(steps: tuple[StepSpec, ...], conf: np.ndarray, valid: np.ndarray,
               layer_with_halo: Callable[[str], np.ndarray], scale: int) -> np.ndarray:
    """Class codes of one block-year from its confidence; `layer_with_halo(name)` reads a mask layer."""
    codes = kernels.threshold(conf, valid, float(steps[0]["threshold"]), scale)
    for step in steps[1:]:
        if step.kernel == "mask":
            layer = layer_with_halo(step["layer"])
            codes = kernels.mask_below(codes, layer, float(step["threshold"]), scale)
    return codes


def apply_temporal(steps: tuple[StepSpec, ...], stack: np.ndarray) -> np.ndarray:
    """The temporal chain over a (years, H, W) stack of class codes."""
    for step in steps:
        if step.kernel == "majority_vote":
            stack = kernels.majority_vote(stack)
    return stack
