"""A recording, checking stand-in for the `ee` module (earthengine-api is not a test dependency).

Images, collections, filters and geometries are symbolic: each call returns a new object that remembers
its parent, the operation and its arguments, like Earth Engine's computation graph, so a test can read
back exactly what was sent. `ImageCollection.map` traces the mapped function on a placeholder image, as
the real client does. `ee.data.computePixels` checks the request the way the service would and
evaluates the expression's arithmetic over a pixel function `(band, lon, lat) -> value` sampled at the
centre of every requested pixel (taken from the affine sent), so the pixels a source returns can be
checked against where they should be. NaN from the pixel function means "masked": it comes back as the
`unmask` value, or as 0 without `unmask` (the NUMPY output has no mask, as in Earth Engine).

Install it with `monkeypatch.setitem(sys.modules, "ee", FakeEE(...))`.
"""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

S2_ALL_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12",
                "QA10", "QA20", "QA60")
DW_ALL_BANDS = ("water", "trees", "grass", "flooded_vegetation", "crops", "shrub_and_scrub", "built", "bare",
                "snow_and_ice", "label")
COLLECTION_BANDS = {"COPERNICUS/S2_HARMONIZED": S2_ALL_BANDS, "GOOGLE/DYNAMICWORLD/V1": DW_ALL_BANDS}
MAX_SIDE = 32768
MAX_BYTES = 48 * 2**20
REQUEST_KEYS = {"expression", "fileFormat", "grid", "bandIds", "visualizationOptions", "workloadTag"}
AFFINE_KEYS = {"scaleX", "shearX", "translateX", "shearY", "scaleY", "translateY"}


class EEException(Exception):
    """The fake's ee.EEException."""


class Node:
    """One step of the computation graph: the operation, its arguments and the step it applies to.

    Each fake has its own subclasses (`fake.Image`, ...) whose class attribute `fake` is that fake."""

    fake: FakeEE

    @classmethod
    def make(cls, op: str, args: tuple = (), parent: Node | None = None, bands: tuple[str, ...] = ()) -> Any:
        if not cls.fake.initialised:
            raise EEException("Earth Engine client library not initialized. Run `ee.Initialize()`")
        node = object.__new__(cls)
        node.op, node.args, node.parent, node.bands = op, args, parent, bands
        return node

    def chain(self) -> list[tuple[str, tuple]]:
        """(op, args) from the root of the graph to this step."""
        steps, node = [], self
        while node is not None:
            steps.append((node.op, node.args))
            node = node.parent
        return steps[::-1]

    def ops(self) -> list[str]:
        return [op for op, _ in self.chain()]

    def args_of(self, op: str) -> list[tuple]:
        return [args for name, args in self.chain() if name == op]

    def _then(self, kind: str, op: str, *args: Any, bands: tuple[str, ...] | None = None) -> Any:
        cls = getattr(self.fake, kind)
        return cls.make(op, args, self, self.bands if bands is None else bands)

    def _selected(self, names: Any) -> tuple[str, ...]:
        names = (names,) if isinstance(names, str) else tuple(names)
        for name in names:
            if name not in self.bands:
                raise EEException(f"Image.select: Pattern '{name}' did not match any bands.")
        return names


class Geometry(Node):
    @classmethod
    def Rectangle(cls, coords: Any = None, proj: Any = None, geodesic: Any = None) -> Geometry:  # noqa: N802
        coords = [float(v) for v in coords]
        if len(coords) != 4 or coords[0] > coords[2] or coords[1] > coords[3]:
            raise EEException(f"Geometry.Rectangle: bad coordinates {coords}")
        return cls.make("Rectangle", (coords, proj, geodesic))


class Filter(Node):
    @classmethod
    def lt(cls, name: str, value: Any) -> Filter:
        return cls.make("Filter.lt", (name, value))


class Number(Node):
    def gt(self, value: Any) -> Number:
        return self._then("Number", "gt", value)

    def getInfo(self) -> Any:  # noqa: N802
        return self.fake.number(self)


class ComputedObject(Node):
    """The result of ee.Algorithms.If: its type is known only once cast (`ee.Image(...)`)."""


class Image(Node):
    def __new__(cls, value: Any) -> Image:  # ee.Image(x): a cast of a computed object, or a constant
        if isinstance(value, Node):
            return cls.make("Image", (value,), None, value.bands)
        return cls.constant(value)

    @classmethod
    def constant(cls, value: Any) -> Image:
        values = list(value) if isinstance(value, list | tuple) else [value]
        names = ("constant",) if len(values) == 1 else tuple(f"constant_{i}" for i in range(len(values)))
        return cls.make("constant", (value,), None, names)

    def rename(self, names: Any) -> Image:
        names = (names,) if isinstance(names, str) else tuple(names)
        if len(names) != len(self.bands):
            raise EEException(f"Image.rename: {len(names)} names for {len(self.bands)} bands")
        return self._then("Image", "rename", list(names), bands=names)

    def select(self, names: Any) -> Image:
        return self._then("Image", "select", names, bands=self._selected(names))

    def updateMask(self, mask: Image) -> Image:  # noqa: N802
        return self._then("Image", "updateMask", mask)

    def bitwiseAnd(self, value: Any) -> Image:  # noqa: N802
        return self._then("Image", "bitwiseAnd", value)

    def eq(self, value: Any) -> Image:
        return self._then("Image", "eq", value)

    def And(self, other: Any) -> Image:  # noqa: N802
        return self._then("Image", "And", other)

    def toFloat(self) -> Image:  # noqa: N802
        return self._then("Image", "toFloat")

    def divide(self, value: Any) -> Image:
        return self._then("Image", "divide", value)

    def multiply(self, value: Any) -> Image:
        return self._then("Image", "multiply", value)

    def unmask(self, value: Any = None, sameFootprint: Any = None) -> Image:  # noqa: N803
        return self._then("Image", "unmask", value, sameFootprint)


class ImageCollection(Node):
    def __new__(cls, collection_id: str) -> ImageCollection:  # ee.ImageCollection("ID"), as user code calls it
        if collection_id not in COLLECTION_BANDS:
            raise EEException(f"ImageCollection.load: ImageCollection asset '{collection_id}' not found.")
        return cls.make("ImageCollection", (collection_id,), None, COLLECTION_BANDS[collection_id])

    @property
    def collection_id(self) -> str:
        return self.chain()[0][1][0]

    def filterBounds(self, geometry: Geometry) -> ImageCollection:  # noqa: N802
        if not isinstance(geometry, Geometry):
            raise EEException("filterBounds: expected a Geometry")
        return self._then("ImageCollection", "filterBounds", geometry)

    def filterDate(self, start: str, end: str) -> ImageCollection:  # noqa: N802
        return self._then("ImageCollection", "filterDate", start, end)

    def filter(self, flt: Filter) -> ImageCollection:
        if not isinstance(flt, Filter):
            raise EEException("filter: expected a Filter")
        return self._then("ImageCollection", "filter", flt)

    def map(self, fn: Callable[[Image], Any]) -> ImageCollection:
        # Like the real client: the function is traced once on a placeholder scene and must give an image.
        traced = fn(self.fake.Image.make("scene", (self.collection_id,), None, self.bands))
        if not isinstance(traced, Image):
            raise EEException("ImageCollection.map: the mapped function must return an Image")
        self.fake.traced.append((fn, traced))
        return self._then("ImageCollection", "map", fn)

    def select(self, names: Any) -> ImageCollection:
        return self._then("ImageCollection", "select", names, bands=self._selected(names))

    def median(self) -> Image:
        return self._then("Image", "median")

    def size(self) -> Number:
        return self._then("Number", "size")


class FakeEE(types.ModuleType):
    """The fake `ee` module, with its configuration and what it was asked."""

    def __init__(self, pixels: Callable[[str, np.ndarray, np.ndarray], np.ndarray] | None = None,
                 scenes: dict[tuple[str, int], int] | None = None, default_scenes: int = 12) -> None:
        super().__init__("ee")
        self.pixels = pixels or (lambda band, lon, lat: np.zeros_like(lon))
        self.scenes = dict(scenes or {})
        self.default_scenes = default_scenes
        self.initialised = False
        self.calls: list[tuple[str, tuple, dict]] = []  # Initialize, ServiceAccountCredentials
        self.requests: list[dict[str, Any]] = []  # every computePixels request, as sent
        self.counted: list[ImageCollection] = []  # every collection whose size() was asked
        self.traced: list[tuple[Callable, Image]] = []  # every function given to map, and its trace
        self.initialize_error: Exception | None = None
        self.compute_errors: list[Exception] = []  # raised, in order, by the next computePixels calls
        self.EEException = EEException
        # Classes of this fake: their objects know the fake they belong to, as ee objects know their session.
        for cls in (Image, ImageCollection, Filter, Geometry, Number, ComputedObject):
            setattr(self, cls.__name__, type(cls.__name__, (cls,), {"fake": self}))
        self.Algorithms = types.SimpleNamespace(If=self.If)
        self.data = types.SimpleNamespace(computePixels=self.computePixels)

    # -- authentication --

    def ServiceAccountCredentials(self, email: str | None = None, key_file: str | None = None,  # noqa: N802
                                  key_data: str | None = None) -> types.SimpleNamespace:
        self.calls.append(("ServiceAccountCredentials", (email, key_file), {}))
        info = json.loads(Path(key_file).read_text())  # the real one reads the key too
        if info.get("type") != "service_account":
            raise ValueError("not a service-account key")
        return types.SimpleNamespace(service_account_email=email, key_file=key_file)

    def Initialize(self, credentials: Any = "persistent", url: Any = None, cloud_api_key: Any = None,  # noqa: N802
                   http_transport: Any = None, project: Any = None) -> None:
        self.calls.append(("Initialize", (credentials,), {"project": project}))
        if self.initialize_error is not None:
            raise self.initialize_error
        self.initialised = True

    def called(self, name: str) -> list[tuple[tuple, dict]]:
        return [(args, kwargs) for op, args, kwargs in self.calls if op == name]

    def If(self, condition: Any, true_case: Any, false_case: Any) -> ComputedObject:  # noqa: N802
        assert isinstance(condition, Number), "the fake's If takes a Number condition"
        if isinstance(true_case, Image) and isinstance(false_case, Image):
            # Not checked by Earth Engine, but the image would change bands with the data: a bug.
            assert true_case.bands == false_case.bands, (true_case.bands, false_case.bands)
        return self.ComputedObject.make("If", (condition, true_case, false_case), None,
                                        getattr(true_case, "bands", ()))

    # -- numbers: scene counts --

    def number(self, node: Number) -> Any:
        if node.op == "size":
            return self.scene_count(node.parent)
        if node.op == "gt":
            return self.number(node.parent) > node.args[0]
        raise NotImplementedError(f"the fake does not evaluate {node.op}")

    def scene_count(self, collection: ImageCollection, record: bool = True) -> int:
        if record:
            self.counted.append(collection)
        dates = collection.args_of("filterDate")
        if len(dates) != 1:
            raise EEException("the fake counts scenes of one date range")
        year = int(str(dates[0][0])[:4])
        return self.scenes.get((collection.collection_id, year), self.default_scenes)

    # -- pixels --

    def computePixels(self, request: dict[str, Any]) -> np.ndarray:  # noqa: N802
        self.requests.append(request)
        if not self.initialised:
            raise EEException("Earth Engine client library not initialized.")
        if self.compute_errors:
            raise self.compute_errors.pop(0)
        unknown = set(request) - REQUEST_KEYS
        assert not unknown, f"computePixels: unknown request keys {unknown}"
        assert request["fileFormat"] == "NUMPY_NDARRAY", request["fileFormat"]
        image = request["expression"]
        assert isinstance(image, Image), f"computePixels needs an Image, got {type(image).__name__}"
        grid = request["grid"]
        assert set(grid) <= {"dimensions", "affineTransform", "crsCode"}, set(grid)
        width, height = grid["dimensions"]["width"], grid["dimensions"]["height"]
        assert isinstance(width, int) and isinstance(height, int) and 0 < width and 0 < height
        assert width <= MAX_SIDE and height <= MAX_SIDE, f"{width} × {height} px is over the side limit"
        assert width * height * len(image.bands) * 4 <= MAX_BYTES, "the request is over 48 MiB"
        affine = grid["affineTransform"]
        assert set(affine) == AFFINE_KEYS, set(affine)
        assert grid["crsCode"] == "EPSG:4326", grid["crsCode"]
        cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        lon = affine["translateX"] + affine["scaleX"] * cols + affine["shearX"] * rows
        lat = affine["translateY"] + affine["shearY"] * cols + affine["scaleY"] * rows
        return self.evaluate(image, lon, lat)

    def evaluate(self, image: Image, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """The image's bands at (lon, lat) as a structured array, as computePixels' NUMPY_NDARRAY."""
        values, dtype, filled = self._values(image, lon, lat)
        out = np.zeros(lon.shape, dtype=[(b, dtype) for b in image.bands])
        for band in image.bands:
            out[band] = values[band] if filled else np.nan_to_num(values[band], nan=0.0)  # no mask in NUMPY
        return out

    def _values(self, node: Node, lon: np.ndarray, lat: np.ndarray) -> tuple[dict[str, np.ndarray], type, bool]:
        """Band values (NaN = masked), their type and whether they were unmasked, for one step."""
        op, args = node.op, node.args
        if op == "median":
            if not node.ops()[0] == "ImageCollection":
                raise NotImplementedError("the fake takes the median of a collection only")
            if not self.scene_count(node.parent, record=False):
                # As in Earth Engine: the median of no image has no bands, and a `select` after it fails.
                return _Lazy(self._no_band), np.float64, False
            # The pixel function is the composite; its bands are read only when asked for (`select` after).
            return _Lazy(lambda b: np.asarray(self.pixels(b, lon, lat), dtype=np.float64)), np.float64, False
        if op == "constant":
            consts = args[0] if isinstance(args[0], list | tuple) else [args[0]]
            return {b: np.full(lon.shape, float(c)) for b, c in zip(node.bands, consts, strict=True)}, np.int64, False
        if op == "Image":  # a cast
            return self._values(args[0], lon, lat)
        if op == "If":
            return self._values(args[1] if self.number(args[0]) else args[2], lon, lat)
        values, dtype, filled = self._values(node.parent, lon, lat)
        if op == "select":
            return {b: values[b] for b in node.bands}, dtype, filled
        if op == "rename":
            return dict(zip(node.bands, (values[b] for b in node.parent.bands), strict=True)), dtype, filled
        if op == "toFloat":
            return {b: values[b].astype(np.float32) for b in node.bands}, np.float32, filled
        if op in ("divide", "multiply"):
            k = np.asarray(args[0], dtype=dtype)
            return {b: (values[b] / k if op == "divide" else values[b] * k).astype(dtype)
                    for b in node.bands}, dtype, filled
        if op == "updateMask" and isinstance(args[0], int | float):
            return {b: np.where(args[0] != 0, values[b], np.nan) for b in node.bands}, dtype, filled
        if op == "unmask":
            fill = np.asarray(args[0], dtype=dtype)
            return {b: np.where(np.isnan(values[b]), fill, values[b]).astype(dtype) for b in node.bands}, dtype, True
        raise NotImplementedError(f"the fake does not evaluate {op}")


    @staticmethod
    def _no_band(band: str) -> np.ndarray:
        raise EEException(f"Image.select: Pattern '{band}' did not match any bands.")


class _Lazy(dict):
    """Band values computed on first use (a composite has more bands than any request reads)."""

    def __init__(self, compute: Callable[[str], np.ndarray]) -> None:
        super().__init__()
        self.compute = compute

    def __missing__(self, band: str) -> np.ndarray:
        self[band] = value = self.compute(band)
        return value
