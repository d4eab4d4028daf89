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
    check_steps(product.post, product.temporal, where, inputs=tuple(i.name for i in product.inputs))


def _fraction(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1


# Each kernel's parameters: name → (required, what it must be, test). Anything else in a step is refused.
_PARAMS: dict[str, dict[str, tuple[bool, str, Callable[[object], bool]]]] = {
    "threshold": {"threshold": (True, "a number from 0 to 1", _fraction)},
    "mask": {"layer": (True, "a string naming an input", lambda v: isinstance(v, str)),
             "threshold": (True, "a number from 0 to 1", _fraction),
             "resampling": (False, "'bilinear' (the mask step upsamples bilinearly only)", lambda v: v == "bilinear")},
    "majority_vote": {"window": (False, "3 (the vote over a year and its two neighbours)",
                                 lambda v: v == 3 and not isinstance(v, bool))},
}


def _check_params(step: StepSpec, where: str) -> None:
    """Refuse, before any work, a missing, unknown or ill-typed parameter of a known kernel: the workers would
    otherwise fail on it after minutes of work."""
    known = _PARAMS[step.kernel]
    unknown = sorted(set(step.params) - set(known))
    if unknown:
        raise ProductError(f"{where}: unknown parameter(s) {', '.join(unknown)} (known: {', '.join(known)})")
    for name, (required, what, fits) in known.items():
        if name not in step.params:
            if required:
                raise ProductError(f"{where}: needs {name} = … ({what})")
        elif not fits(step.params[name]):
            raise ProductError(f"{where}: {name} = {step.params[name]!r} must be {what}")


def check_steps(post: tuple[StepSpec, ...], temporal: tuple[StepSpec, ...], where: str,
                inputs: tuple[str, ...] | None = None) -> None:
    """Refuse unknown kernels, bad kernel parameters, a mask layer that names none of `inputs` (when given) or
    a chain that does not start by thresholding, before any work."""
    for i, step in enumerate(post, 1):
        if step.kernel not in POST_KERNELS:
            raise ProductError(f"{where}: unknown post kernel {step.kernel!r} (known: {', '.join(POST_KERNELS)})")
        at = f"{where}: [[post]] step {i} ({step.kernel})"
        _check_params(step, at)
        if step.kernel == "mask" and inputs is not None and step["layer"] not in inputs:
            raise ProductError(f"{at}: layer = {step['layer']!r} names no input (inputs: {', '.join(inputs)})")
    if not post or post[0].kernel != "threshold":
        raise ProductError(f"{where}: the post chain must start with a 'threshold' step")
    for i, step in enumerate(temporal, 1):
        if step.kernel not in TEMPORAL_KERNELS:
            raise ProductError(f"{where}: unknown temporal kernel {step.kernel!r}")
        _check_params(step, f"{where}: [[temporal]] step {i} ({step.kernel})")


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
