"""Products as data: one TOML file per product under `workflows/products/`.

A product says what to read, which model to run on which windows, how to stitch, the post-processing
chain, the temporal step, the output grid, naming and encoding. The engine in `mapgen.pipeline`
interprets it; adding a product means adding a file, not a code path. Plain data types only.
"""

from __future__ import annotations

import tomllib
import types
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints


class ProductError(ValueError):
    """A product name or file that cannot be used: one line saying what and where."""


@dataclass(frozen=True)
class GridSpec:
    crs: str  # a geographic CRS in degrees (EPSG:4326, EPSG:4490): the lattice's and the tiles'
    input_resolution: str
    scale: int
    tile_size: str | tuple[str, ...]  # degrees; square, or [lon, lat]
    block_size: str
    naming: str  # the first output's tile names, unless the output gives its own
    kind: str = "regular"  # "regular" (anchored at -180°, 90°) or "map_frame" (GB/T 13989 1:25,000 sheets)


@dataclass(frozen=True)
class InputSpec:
    name: str
    role: str  # "image" (model input) or "mask" (used by post-processing)
    bands: tuple[str, ...]
    description: str = ""
    mean: tuple[float, ...] | None = None  # both absent: the model sees raw values
    std: tuple[float, ...] | None = None
    dates: tuple[str, ...] | None = None  # fixed dates whatever the run's (a boundary of 2018); None: the run's
    series: dict[str, str] | None = None  # {from, to, step}: a time series fed to the model as T × C
    resolution: str | None = None  # degrees of this input's own lattice; None: the grid's input_resolution
    context: int | None = None  # a chip of this many own pixels centred on each window (None: the window)
    resampling: str | None = None  # how a source off the lattice is warped (None: bilinear)
    wavelengths: tuple[float, ...] | None = None  # band centres, nm: metadata for the model
    gsd: float | None = None  # metres: metadata for the model
    # "dn": the product works on the file's numbers as they are (8-bit RGB, a 0/1 class raster); None:
    # physical values (reflectance, probability), which an integer file must map to with a scale
    units: str | None = None

    @property
    def normalised(self) -> bool:
        return self.mean is not None

    def read_dates(self, run_dates: tuple[str, ...]) -> tuple[str, ...]:
        """The dates this input is read at for some of the run's dates: its own fixed dates, its series, or
        those run dates."""
        from .dates import series_dates

        if self.dates is not None:
            return tuple(self.dates)
        if self.series is not None:
            s = self.series
            return tuple(series_dates(s["from"], s["to"], s.get("step", "1 month")))
        return tuple(run_dates)


ACTIVATIONS = ("sigmoid", "softmax", "logits")


@dataclass(frozen=True)
class ModelSpec:
    architecture: str
    checkpoint: str  # a registry name or path; may hold {region} (one checkpoint per region)
    # A checkpoint adapted to the run's region ({region}: its name), used instead of `checkpoint` when one
    # exists (`mapgen adapt` makes them); None: the product has no per-region checkpoints.
    adapted: str | None = None
    output: str = "sigmoid"  # the activation of a model with one head
    heads: dict[str, str] | None = None  # head name → activation, for a model with several heads

    def activation(self, head: str) -> str:
        return self.heads[head] if self.heads else self.output


@dataclass(frozen=True)
class TaskSpec:
    """What a task-conditioned model (STSUN) is asked for: the task and the classes, in output order."""

    kind: str  # "ss" (segmentation), "bcd" (binary change), "scd" (semantic change)
    classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class WindowSpec:
    size: int
    overlap: float  # a fraction of `size` when < 1, else pixels
    padding: str = "zeros"
    batch: int = 64

    @property
    def overlap_px(self) -> int:
        px = round(self.overlap * self.size) if self.overlap < 1 else int(self.overlap)
        return px

    @property
    def stride(self) -> int:
        return self.size - self.overlap_px


@dataclass(frozen=True)
class StitchSpec:
    method: str = "max"  # "max" (of scores where windows overlap) or "mean"
    weights: str = "flat"  # of the mean: "flat" or "tent" (a ramp to the window edge)
    # Input pixels along each window edge that count only where no window's interior covers the pixel,
    # so that borders (least context, most error) never draw seams; None in a file: half the overlap.
    border: int | None = None


@dataclass(frozen=True)
class StepSpec:
    """One kernel of the post or temporal chain with its parameters."""

    kernel: str
    params: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.params[key]


@dataclass(frozen=True)
class OutputClass:
    value: int
    name: str
    color: str  # "#rrggbb" or "#rrggbbaa"

    @property
    def rgba(self) -> tuple[int, int, int, int]:
        hexa = self.color.lstrip("#")
        if len(hexa) == 6:
            hexa += "ff"
        return tuple(int(hexa[i:i + 2], 16) for i in range(0, 8, 2))  # type: ignore[return-value]


@dataclass(frozen=True)
class OutputSpec:
    """One map the product makes: from which head, per date or per pair of dates, its post and temporal
    chains, names, encoding and classes. Store code i is the i-th class listed (`pipeline/classes.py`)."""

    band_description: str
    classes: tuple[OutputClass, ...]
    overview_resampling: str = "nearest"
    compress: str = "deflate"
    nodata: int = 1  # the value of pixels without input data; distinct from every class value
    name: str = ""  # "" for a product's only output
    head: str = ""  # the model head it is made from; "" for a model's only head
    per: str = "date"  # one map per run date, or per "pair" of consecutive dates
    naming: str = ""  # tile names; "" → [grid] naming
    mosaic: str = ""  # the VRT's name, e.g. "UGS_{year}_{region}.vrt"; "" → PRODUCT[_OUTPUT]_{date}.vrt
    of: str = ""  # made from another output's maps, not from a head: its pairs of dates (temporal `change`)
    post: tuple[StepSpec, ...] = ()
    temporal: tuple[StepSpec, ...] = ()

    @property
    def values(self) -> tuple[int, ...]:
        """Class values in code order (code i → values[i])."""
        return tuple(c.value for c in self.classes)


@dataclass(frozen=True)
class Product:
    name: str
    title: str
    grid: GridSpec
    inputs: tuple[InputSpec, ...]
    model: ModelSpec
    window: WindowSpec
    stitch: StitchSpec
    outputs: tuple[OutputSpec, ...]
    task: TaskSpec | None = None
    reference: str = ""
    source_file: str = ""

    def input(self, name: str) -> InputSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def image_inputs(self) -> tuple[InputSpec, ...]:
        return tuple(spec for spec in self.inputs if spec.role == "image")

    @property
    def image_input(self) -> InputSpec:
        """The primary image input: windows are cut on its lattice."""
        return self.image_inputs[0]

    @property
    def output(self) -> OutputSpec:
        """The first output (a product with one output has only this one)."""
        return self.outputs[0]

    @property
    def post(self) -> tuple[StepSpec, ...]:
        return self.output.post

    @property
    def temporal(self) -> tuple[StepSpec, ...]:
        return self.output.temporal


_TYPE_NAMES = {int: ("an integer", "integers"), float: ("a number", "numbers"), str: ("a string", "strings"),
               bool: ("true or false", "booleans")}


def _fits(value: Any, hint: Any) -> bool:
    """Whether a TOML value fits a field's type hint (an integer is a number; true is no integer)."""
    origin = get_origin(hint)
    if hint is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_fits(value, h) for h in get_args(hint))
    if hint is type(None):
        return value is None
    if origin is tuple:
        return isinstance(value, (list, tuple)) and all(_fits(v, get_args(hint)[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_fits(v, get_args(hint)[1]) for v in value.values())
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    """A type hint as a product file's author reads it: 'an integer', 'a list of strings', …"""
    if get_origin(hint) in (Union, types.UnionType):  # TOML has no null: `X | None` is X or left out
        return " or ".join(_describe(h) for h in get_args(hint) if h is not type(None))
    if get_origin(hint) is tuple:
        return f"a list of {_TYPE_NAMES.get(get_args(hint)[0], ('', 'tables'))[1]}"
    if get_origin(hint) is dict:
        return f"a table of {_TYPE_NAMES.get(get_args(hint)[1], ('', 'values'))[1]}"
    return _TYPE_NAMES.get(hint, ("a table", ""))[0]


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ProductError(f"{where}: must be a table of keys, not {data!r}")
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ProductError(f"{where}: unknown key(s) {sorted(unknown)}")
    # Types when the file is loaded: a wrong one would otherwise fail on the workers after minutes of work.
    hints = get_type_hints(cls)
    for key, value in data.items():
        if not _fits(value, hints[key]):
            raise ProductError(f"{where}: {key} = {value!r} must be {_describe(hints[key])}")
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
    except TypeError as exc:
        raise ProductError(f"{where}: {exc}") from None


def _step(data: dict[str, Any], where: str) -> StepSpec:
    if not isinstance(data, dict):
        raise ProductError(f"{where}: a step must be a table (kernel = …), not {data!r}")
    if "kernel" not in data:
        raise ProductError(f"{where}: a step needs a 'kernel'")
    if not isinstance(data["kernel"], str):
        raise ProductError(f"{where}: kernel = {data['kernel']!r} must be a string")
    params = {k: v for k, v in data.items() if k != "kernel"}
    return StepSpec(data["kernel"], params)


def _check_window(window: WindowSpec, where: str) -> None:
    """Sizes that cut windows at all (the stitch border and the engine depend on them)."""
    if window.size < 1 or window.batch < 1:
        raise ProductError(f"{where}: size = {window.size} and batch = {window.batch} must be at least 1")
    if window.overlap < 0 or window.overlap_px >= window.size:
        raise ProductError(f"{where}: overlap = {window.overlap} must be at least 0 and less than the window "
                           f"(a fraction below 1, or pixels below size = {window.size})")


def _stitch(data: dict[str, Any], window: WindowSpec, where: str) -> StitchSpec:
    """The [stitch] section with its border resolved (half the window overlap unless given) and checked:
    at most half the overlap, so that every pixel stays under some window's interior."""
    spec = _build(StitchSpec, data, where)
    if spec.method != "max":  # borders yield only in a maximum; a mean weighs every window (or by `weights`)
        if spec.border:
            raise ProductError(f"{where}: border = {spec.border} applies to method = \"max\" only, not "
                               f"{spec.method!r} (a mean's windows are weighed by weights = \"tent\")")
        return replace(spec, border=0)
    most = window.overlap_px // 2
    border = most if spec.border is None else spec.border
    if isinstance(border, bool) or not isinstance(border, int) or not 0 <= border <= most:
        raise ProductError(f"{where}: border = {spec.border!r} must be a whole number of input pixels from 0 to "
                           f"{most} (half the window overlap of {window.overlap_px} px)")
    return replace(spec, border=border)


_TOP_LEVEL = {"name", "title", "reference", "grid", "inputs", "model", "window", "stitch", "post", "temporal", "output",
              "outputs", "task"}


def _steps(data: Any, where: str, section: str) -> tuple[StepSpec, ...]:
    if not isinstance(data, list):
        raise ProductError(f"{where}: {section} = {data!r} must be an array of tables ([[{section}]])")
    return tuple(_step(s, f"{where} [[{section}]]") for s in data)


def _output(data: dict[str, Any], where: str) -> OutputSpec:
    """An output from its table; its post and temporal chains may sit in it (`post = [{kernel = …}]`)."""
    data = dict(data)
    if not isinstance(data.get("classes", []), list):
        raise ProductError(f"{where}: classes must be an array of tables ([[output.classes]] or classes = [{{…}}])")
    at = f"{where[:-1]}.classes]" if where.endswith("]") else f"{where} classes"  # [output.classes]
    classes = tuple(_build(OutputClass, c, at) for c in data.pop("classes", []))
    if not classes:
        raise ProductError(f"{where}: needs at least one class (classes = [{{ value = …, name = …, color = … }}])")
    post = _steps(data.pop("post", []), where, "post")
    temporal = _steps(data.pop("temporal", []), where, "temporal")
    return _build(OutputSpec, {**data, "classes": classes, "post": post, "temporal": temporal}, where)


def _outputs(data: dict[str, Any], where: str) -> tuple[OutputSpec, ...]:
    """A product's outputs: several `[[outputs]]`, each with its chains, or one `[output]` whose chains are
    the top-level `[[post]]` and `[[temporal]]` (a product with one map, like CBRA)."""
    if "outputs" in data:
        if "output" in data or "post" in data or "temporal" in data:
            raise ProductError(f"{where}: give either [[outputs]] (each with its own post = […]) or one [output] "
                               "with [[post]] and [[temporal]], not both")
        if not isinstance(data["outputs"], list) or not data["outputs"]:
            raise ProductError(f"{where}: outputs must be an array of tables ([[outputs]])")
        outputs = []
        for i, table in enumerate(data["outputs"], 1):
            if not isinstance(table, dict):
                raise ProductError(f"{where}: [[outputs]] {i} must be a table of keys, not {table!r}")
            name = table.get("name", "")
            outputs.append(_output(table, f"{where} [[outputs]] {name or i}"))
        names = [o.name for o in outputs]
        if len(outputs) > 1 and (not all(names) or len(set(names)) != len(names)):
            raise ProductError(f"{where}: several [[outputs]] need distinct names (name = …), not {names}")
        return tuple(outputs)
    if "output" not in data:
        raise ProductError(f"{where}: missing section(s) ['output'] (or [[outputs]])")
    if not isinstance(data["output"], dict):
        raise ProductError(f"{where}: output = {data['output']!r} must be a table ([output])")
    for key in ("post", "temporal"):
        if key in data["output"]:
            raise ProductError(f"{where}: [output] {key}: write the chain as [[{key}]] beside [output]")
    table = {**data["output"], "post": data.get("post", []), "temporal": data.get("temporal", [])}
    return (_output(table, f"{where} [output]"),)


def parse_product(data: dict[str, Any], where: str = "product") -> Product:
    """A Product from the dictionary of a product file."""
    required = {"name", "grid", "inputs", "model", "window"}
    missing = required - set(data)
    if missing:
        raise ProductError(f"{where}: missing section(s) {sorted(missing)}")
    unknown = set(data) - _TOP_LEVEL  # a misspelt [stich] would otherwise be ignored
    if unknown:
        raise ProductError(f"{where}: unknown key(s) or section(s) {sorted(unknown)}")
    for key in ("name", "title", "reference"):
        if key in data and not isinstance(data[key], str):
            raise ProductError(f"{where}: {key} = {data[key]!r} must be a string")
    for key in ("grid", "model", "window", "stitch", "task"):
        if key in data and not isinstance(data[key], dict):
            raise ProductError(f"{where}: {key} = {data[key]!r} must be a table ([{key}])")
    for key in ("inputs",):
        if not isinstance(data[key], list):
            raise ProductError(f"{where}: {key} = {data[key]!r} must be an array of tables ([[{key}]])")
    outputs = _outputs(data, where)
    window = _build(WindowSpec, data["window"], f"{where} [window]")
    _check_window(window, f"{where} [window]")
    return Product(
        name=data["name"],
        title=data.get("title", data["name"]),
        reference=data.get("reference", ""),
        grid=_build(GridSpec, data["grid"], f"{where} [grid]"),
        inputs=tuple(_build(InputSpec, i, f"{where} [[inputs]]") for i in data["inputs"]),
        model=_build(ModelSpec, data["model"], f"{where} [model]"),
        window=window,
        stitch=_stitch(data.get("stitch", {}), window, f"{where} [stitch]"),
        outputs=outputs,
        task=_build(TaskSpec, data["task"], f"{where} [task]") if "task" in data else None,
        source_file=where,
    )


def product_names() -> list[str]:
    """Names of the products shipped with mapgen."""
    folder = resources.files("mapgen.workflows.products")
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def load_product(name_or_path: str | Path) -> Product:
    """A shipped product by name (`cbra`) or a product file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        text, where = path.read_text(), str(path)
    else:
        resource = resources.files("mapgen.workflows.products") / f"{name_or_path}.toml"
        if not resource.is_file():
            raise ProductError(f"unknown product {str(name_or_path)!r}; known products: "
                               f"{', '.join(product_names())} (or give a path to a product .toml file)")
        text, where = resource.read_text(), f"product {name_or_path}"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProductError(f"{where}: not valid TOML ({exc})") from None
    return parse_product(data, where)
