"""The product's post-processing and temporal chains, step by step, on top of the kernels."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mapgen.workflows import Product, ProductError, StepSpec

from . import kernels

POST_KERNELS = ("threshold", "mask")
TEMPORAL_KERNELS = ("majority_vote",)


# Values of the product file that this engine implements; anything else is refused, not ignored.
SUPPORTED = {
    ("grid", "crs"): "EPSG:4326",
    ("window", "padding"): "zeros",
    ("stitch", "method"): "max",
    ("model", "output"): "sigmoid",
    ("output", "dtype"): "uint8",
}


def check_product(product: Product) -> None:
    """Refuse, before any work, a product that asks for something the engine does not do."""
    where = product.source_file
    for (section, key), value in SUPPORTED.items():
        got = getattr(getattr(product, section), key)
        if got != value:
            raise ProductError(f"{where}: [{section}] {key} = {got!r} is not supported (only {value!r})")
    values = [c.value for c in product.output.classes]
    if not 0 <= product.output.nodata <= 255 or product.output.nodata in values:
        raise ProductError(f"{where}: [output] nodata = {product.output.nodata} must be a uint8 value that is no "
                           f"class value ({values})")
    image = product.image_input
    for name in ("mean", "std"):
        values = getattr(image, name)
        if values is None or len(values) != len(image.bands):
            raise ProductError(f"{where}: input {image.name!r} needs one {name} per band ({len(image.bands)})")
    check_steps(product.post, product.temporal, where)


def check_steps(post: tuple[StepSpec, ...], temporal: tuple[StepSpec, ...], where: str) -> None:
    """Refuse unknown kernels or a chain that does not start by thresholding, before any work."""
    for step in post:
        if step.kernel not in POST_KERNELS:
            raise ProductError(f"{where}: unknown post kernel {step.kernel!r} (known: {', '.join(POST_KERNELS)})")
        if step.kernel == "mask" and step.params.get("resampling", "bilinear") != "bilinear":
            raise ProductError(f"{where}: the mask step upsamples bilinearly only")
    if not post or post[0].kernel != "threshold":
        raise ProductError(f"{where}: the post chain must start with a 'threshold' step")
    for step in temporal:
        if step.kernel not in TEMPORAL_KERNELS:
            raise ProductError(f"{where}: unknown temporal kernel {step.kernel!r}")
        if step.kernel == "majority_vote" and step.params.get("window", 3) != 3:
            raise ProductError(f"{where}: majority_vote supports window = 3 only")


def apply_post(steps: tuple[StepSpec, ...], conf: np.ndarray, valid: np.ndarray,
               layer_with_halo: Callable[[str], np.ndarray | None], scale: int) -> np.ndarray:
    """Class codes of one block-year from its confidence; `layer_with_halo(name)` reads a mask layer, or
    gives None when the user switched it off (the step is then skipped)."""
    codes = kernels.threshold(conf, valid, float(steps[0]["threshold"]), scale)
    for step in steps[1:]:
        if step.kernel == "mask":
            layer = layer_with_halo(step["layer"])
            if layer is None:
                continue
            codes = kernels.mask_below(codes, layer, float(step["threshold"]), scale)
    return codes


def apply_temporal(steps: tuple[StepSpec, ...], stack: np.ndarray) -> np.ndarray:
    """The temporal chain over a (years, H, W) stack of class codes."""
    for step in steps:
        if step.kernel == "majority_vote":
            stack = kernels.majority_vote(stack)
    return stack
