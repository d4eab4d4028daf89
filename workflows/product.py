"""Products as data: one TOML file per product under `workflows/products/`.

A product says what to read, which model to run on which windows, how to stitch, the post-processing
chain, the temporal step, the output grid, naming and encoding. The engine in `mapgen.pipeline`
interprets it; adding a product means adding a file, not a code path. Plain data types only.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any


class ProductError(ValueError):
    """A product name or file that cannot be used: one line saying what and where."""


@dataclass(frozen=True)
class GridSpec:
    crs: str
    input_resolution: str
    scale: int
    tile_size: str
    block_size: str
    naming: str


@dataclass(frozen=True)
class InputSpec:
    name: str
    role: str  # "image" (model input) or "mask" (used by post-processing)
    bands: tuple[str, ...]
    description: str = ""
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


@dataclass(frozen=True)
class ModelSpec:
    architecture: str
    checkpoint: str
    output: str = "sigmoid"


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
    method: str = "max"


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
    dtype: str
    band_description: str
    classes: tuple[OutputClass, ...]
    overview_resampling: str = "nearest"
    compress: str = "deflate"
    nodata: int = 1  # the value of pixels without input data; distinct from every class value

    @property
    def foreground(self) -> int:
        return max(c.value for c in self.classes)

    @property
    def background(self) -> int:
        return min(c.value for c in self.classes)


@dataclass(frozen=True)
class Product:
    name: str
    title: str
    grid: GridSpec
    inputs: tuple[InputSpec, ...]
    model: ModelSpec
    window: WindowSpec
    stitch: StitchSpec
    post: tuple[StepSpec, ...]
    temporal: tuple[StepSpec, ...]
    output: OutputSpec
    reference: str = ""
    source_file: str = ""

    def input(self, name: str) -> InputSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def image_input(self) -> InputSpec:
        return next(spec for spec in self.inputs if spec.role == "image")


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ProductError(f"{where}: unknown key(s) {sorted(unknown)}")
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
    except TypeError as exc:
        raise ProductError(f"{where}: {exc}") from None


def _step(data: dict[str, Any], where: str) -> StepSpec:
    if "kernel" not in data:
        raise ProductError(f"{where}: a step needs a 'kernel'")
    params = {k: v for k, v in data.items() if k != "kernel"}
    return StepSpec(data["kernel"], params)


def parse_product(data: dict[str, Any], where: str = "product") -> Product:
    """A Product from the dictionary of a product file."""
    required = {"name", "grid", "inputs", "model", "window", "output"}
    missing = required - set(data)
    if missing:
        raise ProductError(f"{where}: missing section(s) {sorted(missing)}")
    output = dict(data["output"])
    classes = tuple(_build(OutputClass, c, f"{where} [output.classes]") for c in output.pop("classes", []))
    if not classes:
        raise ProductError(f"{where}: [output] needs at least one [[output.classes]]")
    return Product(
        name=data["name"],
        title=data.get("title", data["name"]),
        reference=data.get("reference", ""),
        grid=_build(GridSpec, data["grid"], f"{where} [grid]"),
        inputs=tuple(_build(InputSpec, i, f"{where} [[inputs]]") for i in data["inputs"]),
        model=_build(ModelSpec, data["model"], f"{where} [model]"),
        window=_build(WindowSpec, data["window"], f"{where} [window]"),
        stitch=_build(StitchSpec, data.get("stitch", {}), f"{where} [stitch]"),
        post=tuple(_step(s, f"{where} [[post]]") for s in data.get("post", [])),
        temporal=tuple(_step(s, f"{where} [[temporal]]") for s in data.get("temporal", [])),
        output=_build(OutputSpec, {**output, "classes": classes}, f"{where} [output]"),
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
