"""The product's chains, step by step on top of the kernels, and the engine's checks of a product.

A post chain turns one map's stitched scores (K channels at output resolution) into class codes: it
starts with a step that makes codes (`threshold` of one channel, `argmax` over all) and may go on with
steps on codes (`mask`). A temporal chain works on all maps of an output of a block (`majority_vote`), or
makes an output of another one's maps (`change`: one map per pair of consecutive dates).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mapgen.workflows import OutputSpec, Product, ProductError, StepSpec
from mapgen.workflows.product import ACTIVATIONS

from . import kernels

CODE_KERNELS = ("threshold", "argmax")  # the first step of a post chain: scores → codes
POST_KERNELS = (*CODE_KERNELS, "mask")
TEMPORAL_KERNELS = ("majority_vote", "change")

PADDINGS = ("zeros", "reflect")
STITCH_METHODS = ("max", "mean")
STITCH_WEIGHTS = ("flat", "tent")
PER = ("date", "pair")
GRID_KINDS = ("regular", "map_frame")
TASK_KINDS = ("ss", "bcd", "scd")


def _one_of(where: str, key: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ProductError(f"{where}: {key} = {value!r} must be one of {', '.join(map(repr, allowed))}")


def check_product(product: Product) -> None:
    """Refuse, before any work, a product whose values the engine cannot interpret (one line each)."""
    where = product.source_file
    _one_of(f"{where}: [grid]", "kind", product.grid.kind, GRID_KINDS)
    _one_of(f"{where}: [window]", "padding", product.window.padding, PADDINGS)
    _one_of(f"{where}: [stitch]", "method", product.stitch.method, STITCH_METHODS)
    _one_of(f"{where}: [stitch]", "weights", product.stitch.weights, STITCH_WEIGHTS)
    if product.stitch.method == "max" and product.stitch.weights != "flat":
        raise ProductError(f"{where}: [stitch] weights = {product.stitch.weights!r} weighs a mean; a maximum "
                           "takes none (method = \"mean\" to use them)")
    _one_of(f"{where}: [model]", "output", product.model.output, ACTIVATIONS)
    for head, activation in (product.model.heads or {}).items():
        _one_of(f"{where}: [model.heads]", head, activation, ACTIVATIONS)
    if product.task is not None:
        _one_of(f"{where}: [task]", "kind", product.task.kind, TASK_KINDS)
    names = [i.name for i in product.inputs]
    if len(set(names)) != len(names):
        raise ProductError(f"{where}: [[inputs]] names {names} list a name twice")
    if not product.image_inputs:
        raise ProductError(f"{where}: [[inputs]] needs an input with role = \"image\" (the model's)")
    for spec in product.inputs:
        _check_input(product, spec, f"{where}: input {spec.name!r}")
    heads = set(product.model.heads or ())
    for output in product.outputs:
        at = f"{where}: output {output.name!r}" if output.name else where
        _one_of(at, "per", output.per, PER)
        if output.of:
            _check_derived(product, output, at)
            continue
        if heads and output.head not in heads:
            raise ProductError(f"{at}: head = {output.head!r} names no head of [model.heads] "
                               f"({', '.join(sorted(heads))})")
        if not heads and output.head:
            raise ProductError(f"{at}: head = {output.head!r}, but [model] declares no [model.heads]")
        values = list(output.values)
        if len(set(values)) != len(values) or not all(0 <= v <= 255 for v in values):
            raise ProductError(f"{at}: class values {values} must be distinct uint8 values")
        if not 0 <= output.nodata <= 255 or output.nodata in values:
            raise ProductError(f"{at}: [output] nodata = {output.nodata} must be a uint8 value that is no "
                               f"class value ({values})")
        check_steps(output.post, output.temporal, at, inputs=tuple(names), classes=len(values))


def _check_derived(product: Product, output: OutputSpec, where: str) -> None:
    """An output made of another one's maps: a change map per pair of its dates, from its final codes."""
    before = product.outputs[:product.outputs.index(output)]  # made first, so that the vote has their maps
    sources = {o.name: o for o in before if not o.of}
    if output.of not in sources or not output.of:
        raise ProductError(f"{where}: of = {output.of!r} names no output made by the model "
                           f"({', '.join(n for n in sources if n) or 'none'})")
    if output.per != "pair" or output.head or output.post or [s.kernel for s in output.temporal] != ["change"]:
        raise ProductError(f"{where}: an output of another one's maps needs per = \"pair\", no head and no post, "
                           "and temporal = [{ kernel = \"change\" }]")
    values = list(output.values)
    if len(values) < 2 or not all(0 <= v <= 255 for v in values) or output.nodata in values:
        raise ProductError(f"{where}: a change map lists two classes (no change, change) and a nodata apart")


def _check_input(product: Product, spec, where: str) -> None:
    from mapgen.workflows.dates import DateError, check_date, series_dates

    from .sources.read import RESAMPLINGS

    _one_of(where, "role", spec.role, ("image", "mask"))
    if spec.units is not None:
        _one_of(where, "units", spec.units, ("dn",))
    if (spec.mean is None) != (spec.std is None):
        raise ProductError(f"{where}: give both mean and std (a z-score per band), or neither (raw values)")
    for name in ("mean", "std"):
        values = getattr(spec, name)
        if values is not None and len(values) != len(spec.bands):
            raise ProductError(f"{where}: {name} needs one value per band ({len(spec.bands)}), not {len(values)}")
    if spec.std is not None and any(v <= 0 for v in spec.std):
        raise ProductError(f"{where}: std {list(spec.std)} must be more than 0 for every band")
    if spec.wavelengths is not None and len(spec.wavelengths) != len(spec.bands):
        raise ProductError(f"{where}: wavelengths needs one value per band ({len(spec.bands)})")
    if spec.resampling is not None:
        _one_of(where, "resampling", spec.resampling, RESAMPLINGS)
    if spec.dates is not None and spec.series is not None:
        raise ProductError(f"{where}: give dates (fixed) or series (a time series), not both")
    try:
        for date in spec.dates or ():
            check_date(date)
        if spec.series is not None:
            unknown = sorted(set(spec.series) - {"from", "to", "step"})
            if unknown or {"from", "to"} - set(spec.series):
                raise ProductError(f"{where}: series = {{ from = …, to = …, step = \"1 month\" }}, not {spec.series}")
            series_dates(spec.series["from"], spec.series["to"], spec.series.get("step", "1 month"))
    except DateError as exc:
        raise ProductError(f"{where}: {exc}") from None
    if spec.role == "mask" and (spec.series or spec.context or spec.resolution):
        raise ProductError(f"{where}: a mask input is read on the product's lattice, one date at a time "
                           "(no series, context or resolution)")
    if spec.context is not None and spec.context < 1:
        raise ProductError(f"{where}: context = {spec.context} must be at least 1 pixel")
    if spec.resolution is not None or spec.context is not None:
        _check_own_lattice(product, spec, where)


def _check_own_lattice(product: Product, spec, where: str) -> None:
    """An input on its own lattice is read as a chip per window: its pixel must be a whole number of the
    primary input's, and the primary input's lattice is the windows'."""
    from mapgen.tiles import as_fraction

    if spec is product.image_input:
        raise ProductError(f"{where}: the first image input defines the windows; it cannot have its own "
                           "resolution or context")
    if spec.context is None:
        raise ProductError(f"{where}: an input on its own lattice needs context = N (the chip's side in its "
                           "own pixels, centred on each window)")
    try:
        ratio = as_fraction(spec.resolution or product.grid.input_resolution) / as_fraction(
            product.grid.input_resolution)
    except (ValueError, ZeroDivisionError):
        raise ProductError(f"{where}: resolution = {spec.resolution!r} is not a number of degrees") from None
    if ratio.denominator != 1 or ratio < 1:
        raise ProductError(f"{where}: resolution = {spec.resolution} must be a whole multiple of the grid's "
                           f"input_resolution {product.grid.input_resolution}")


def _fraction(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1


def _count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


# Each kernel's parameters: name → (required, what it must be, test). Anything else in a step is refused.
_PARAMS: dict[str, dict[str, tuple[bool, str, Callable[[object], bool]]]] = {
    "threshold": {"threshold": (True, "a number from 0 to 1", _fraction),
                  "channel": (False, "a channel number of the head (0, 1, …)", _count)},
    "argmax": {"offset": (False, "a whole number ≥ 0 added to the channel index", _count)},
    "mask": {"layer": (True, "a string naming an input", lambda v: isinstance(v, str)),
             "threshold": (True, "a number from 0 to 1", _fraction),
             "resampling": (False, "'bilinear' or 'nearest'", lambda v: v in kernels.RESAMPLINGS)},
    "majority_vote": {"window": (False, "3 (the vote over a date and its two neighbours)",
                                 lambda v: v == 3 and not isinstance(v, bool))},
    "change": {},
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
                inputs: tuple[str, ...] | None = None, classes: int | None = None) -> None:
    """Refuse unknown kernels, bad kernel parameters, a mask layer that names none of `inputs` (when given), a
    chain that does not start by making codes, or codes past the output's `classes`, before any work."""
    for i, step in enumerate(post, 1):
        if step.kernel not in POST_KERNELS:
            raise ProductError(f"{where}: unknown post kernel {step.kernel!r} (known: {', '.join(POST_KERNELS)})")
        at = f"{where}: [[post]] step {i} ({step.kernel})"
        _check_params(step, at)
        if step.kernel in CODE_KERNELS and i > 1:
            raise ProductError(f"{at}: only the first step makes class codes ({' or '.join(CODE_KERNELS)})")
        if step.kernel == "mask" and inputs is not None and step["layer"] not in inputs:
            raise ProductError(f"{at}: layer = {step['layer']!r} names no input (inputs: {', '.join(inputs)})")
    if not post or post[0].kernel not in CODE_KERNELS:
        raise ProductError(f"{where}: the post chain must start with a 'threshold' or 'argmax' step")
    if classes is not None:
        first = post[0]
        needed = 2 if first.kernel == "threshold" else 1 + int(first.params.get("offset", 0))
        if classes < needed:
            raise ProductError(f"{where}: {first.kernel} makes codes up to {needed - 1}, but the output lists "
                               f"{classes} class(es); list one class per code")
    for i, step in enumerate(temporal, 1):
        if step.kernel not in TEMPORAL_KERNELS:
            raise ProductError(f"{where}: unknown temporal kernel {step.kernel!r}")
        _check_params(step, f"{where}: [[temporal]] step {i} ({step.kernel})")


def mask_layers(output: OutputSpec) -> tuple[str, ...]:
    return tuple(step["layer"] for step in output.post if step.kernel == "mask")


def apply_post(steps: tuple[StepSpec, ...], scores: np.ndarray, valid: np.ndarray,
               layer_with_halo: Callable[[str], np.ndarray | None], scale: int) -> np.ndarray:
    """Class codes of one map of a block from its stitched scores (K, scale·H, scale·W); `valid` (H, W) says
    where the input had data; `layer_with_halo(name)` reads a mask layer, or gives None when the user
    switched it off (the step is then skipped)."""
    first = steps[0]
    if first.kernel == "threshold":
        channel = int(first.params.get("channel", 0))
        if channel >= len(scores):
            raise ValueError(f"threshold: channel {channel} of a head with {len(scores)} channel(s)")
        codes = kernels.threshold(scores[channel], valid, float(first["threshold"]), scale)
    else:
        codes = kernels.argmax(scores, valid, int(first.params.get("offset", 0)), scale)
    for step in steps[1:]:
        if step.kernel == "mask":
            layer = layer_with_halo(step["layer"])
            if layer is None:
                continue
            codes = kernels.mask_below(codes, layer, float(step["threshold"]), scale,
                                       resampling=step.params.get("resampling", "bilinear"))
    return codes


def apply_temporal(steps: tuple[StepSpec, ...], stack: np.ndarray) -> np.ndarray:
    """The temporal chain over a (maps, H, W) stack of class codes; `change` makes one map per consecutive
    pair (maps − 1)."""
    for step in steps:
        if step.kernel == "majority_vote":
            stack = kernels.majority_vote(stack)
        elif step.kernel == "change":
            stack = np.stack([kernels.change(a, b) for a, b in zip(stack, stack[1:], strict=False)])
    return stack
