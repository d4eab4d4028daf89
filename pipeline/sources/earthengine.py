"""Google Earth Engine as a source: the yearly Sentinel-2 composite and Dynamic World, computed server-side.

For each block + halo a worker asks Earth Engine (`ee.data.computePixels`) for the composite directly on
the product's lattice, so nothing is resampled on our side. The recipe is the one of the CBRA paper
(Liu et al. 2023): Sentinel-2 L1C (`COPERNICUS/S2_HARMONIZED`) scenes of the calendar year with less than
`cloud_pct` % cloudy pixels, each masked with QA60 (opaque clouds and cirrus), median of the year, in
reflectance (DN / 10000); Dynamic World (`GOOGLE/DYNAMICWORLD/V1`) probabilities, median of the year.

`earthengine-api` is optional (`pip install "mapgen[ee]"`): it is imported only when a source is used, so
the source can be built, described and pickled without it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from shapely.geometry.base import BaseGeometry

from mapgen.tiles import Box, Grid
from mapgen.workflows.product import InputSpec

from .base import Bounds, Source, SourceError
from .sample import Coverage, as_geometry, bounds_parts

log = logging.getLogger(__name__)

S2_COLLECTION = "COPERNICUS/S2_HARMONIZED"
DW_COLLECTION = "GOOGLE/DYNAMICWORLD/V1"
S2_BANDS = frozenset({"B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"})
DW_BANDS = frozenset({"water", "trees", "grass", "flooded_vegetation", "crops", "shrub_and_scrub", "built",
                      "bare", "snow_and_ice"})
S2_SCALE = 10000  # Sentinel-2 L1C DN → top-of-atmosphere reflectance
DEFAULT_CLOUD_PCT = 20.0  # the paper's scene filter (the authors' code used 10)
QA60_OPAQUE, QA60_CIRRUS = 1 << 10, 1 << 11

# computePixels' NUMPY_NDARRAY output has no mask: masked and out-of-footprint pixels are filled with this
# value server-side and turned into NaN here. Reflectance and probabilities are never negative.
NODATA_SENTINEL = -9999.0
# computePixels refuses more than 32768 px per side or 48 MiB of pixels per request; stay under the byte
# limit with room for Earth Engine's own accounting (a 0.1° block + halo is ~23 MB in one request).
MAX_REQUEST_SIDE = 32768
MAX_REQUEST_BYTES = 32 * 2**20
BYTES_PER_VALUE = 4  # float32

_TRANSIENT = re.compile(r"quota|too many requests|rate limit|\b(429|500|502|503|504)\b|timed out|timeout|deadline"
                        r"|temporar|unavailable|connection (reset|aborted)|backend error", re.IGNORECASE)
_AUTH = re.compile(r"permission|denied|unauthori[sz]ed|not authori[sz]ed|\b(401|403)\b|credential|authenticat"
                   r"|not registered|not signed up|invalid_grant", re.IGNORECASE)
_PEM = re.compile(r"-----BEGIN [A-Z ]+-----.*?(-----END [A-Z ]+-----|$)", re.DOTALL)
_TOKEN = re.compile(r"\bya29\.[\w.-]+|\bBearer\s+[\w.~+/-]+=*", re.IGNORECASE)

AUTH_HINT = "give a service-account key with ee://PROJECT?key=KEY.json or run `earthengine authenticate`"

# One Earth Engine session per process (ee.Initialize is global state): the module it was made with and
# the (project, key) it was made for, so a worker initialises once however many blocks it reads.
_INIT_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}


# --- The recipe, as functions over ee objects -----------------------------------------------------------

def qa60_clear(qa: Any) -> Any:
    """1 where QA60 says neither opaque cloud (bit 10) nor cirrus (bit 11), else 0.

    Only `.bitwiseAnd(int)`, `.eq(0)` and `.And(other)` are used, so the same function runs on an
    `ee.Image` and, in the tests, on NumPy values. Both bits are tested on QA60 itself: the authors' code
    tested the cirrus bit on the 0/1 opaque mask, which is always 0 there, so their mask kept every pixel.
    """
    return qa.bitwiseAnd(QA60_OPAQUE).eq(0).And(qa.bitwiseAnd(QA60_CIRRUS).eq(0))


def mask_clouds(image: Any) -> Any:
    """A Sentinel-2 L1C scene with its cloudy and cirrus pixels masked (mapped over the collection)."""
    return image.updateMask(qa60_clear(image.select("QA60")))


def collection_for(spec: InputSpec) -> str:
    """The Earth Engine collection that has all of `spec`'s bands."""
    bands = set(spec.bands)
    if bands and bands <= S2_BANDS:
        return S2_COLLECTION
    if bands and bands <= DW_BANDS:
        return DW_COLLECTION
    raise SourceError(f"Earth Engine: input '{spec.name}' asks for bands {', '.join(spec.bands) or '(none)'} "
                      f"that neither {S2_COLLECTION} nor {DW_COLLECTION} has")


def year_dates(year: int) -> tuple[str, str]:
    """The calendar year for `filterDate`, whose end is exclusive."""
    return f"{year}-01-01", f"{year + 1}-01-01"


def region(ee: Any, bounds: Bounds) -> Any:
    west, south, east, north = (float(v) for v in bounds)
    # Planar, in EPSG:4326: the box's edges are parallels and meridians, not geodesics.
    return ee.Geometry.Rectangle([west, south, east, north], "EPSG:4326", False)


def scenes(ee: Any, collection: str, bounds: Bounds, year: int, cloud_pct: float) -> Any:
    """The collection's scenes over `bounds` in `year` (Sentinel-2: only those with few cloudy pixels)."""
    found = ee.ImageCollection(collection).filterBounds(region(ee, bounds)).filterDate(*year_dates(year))
    if collection == S2_COLLECTION:
        found = found.filter(ee.Filter.lt("CLOUDY_PIXEL_PERCENTAGE", cloud_pct))
    return found


def no_data(ee: Any, bands: Sequence[str]) -> Any:
    """`bands` with every pixel masked: what a year without scenes gives."""
    return ee.Image.constant([0] * len(bands)).rename(list(bands)).toFloat().updateMask(0)


def composite(ee: Any, spec: InputSpec, bounds: Bounds, year: int, cloud_pct: float) -> Any:
    """The yearly median of `spec`'s bands, float, in the product's units (reflectance, probability)."""
    collection = collection_for(spec)
    found = scenes(ee, collection, bounds, year, cloud_pct)
    if collection == S2_COLLECTION:
        # toFloat before dividing: Earth Engine keeps the union of the input types, which may be integer.
        median = found.map(mask_clouds).median().select(list(spec.bands)).toFloat().divide(S2_SCALE)
    else:
        median = found.select(list(spec.bands)).median().toFloat()
    # The median of an empty collection has no bands and selecting from it fails; a block may have no
    # scene (or none under the cloud limit) where the region has some: it is then no data, not an error.
    return ee.Image(ee.Algorithms.If(found.size().gt(0), median, no_data(ee, spec.bands)))


# --- Requests --------------------------------------------------------------------------------------------

def split_box(box: Box, n_bands: int, max_side: int = MAX_REQUEST_SIDE,
              max_bytes: int = MAX_REQUEST_BYTES) -> list[Box]:
    """Boxes that tile `box` exactly, each within computePixels' size limits (full rows when they fit)."""
    per_px = BYTES_PER_VALUE * max(n_bands, 1)
    width = max(1, min(box.width, max_side, max_bytes // per_px))
    rows = max(1, min(max_side, max_bytes // (width * per_px)))
    return [Box(r, c, min(rows, box.row_stop - r), min(width, box.col_stop - c))
            for r in range(box.row, box.row_stop, rows) for c in range(box.col, box.col_stop, width)]


def pixel_request(image: Any, grid: Grid, box: Box) -> dict[str, Any]:
    """The computePixels request for `box` of `grid`: Earth Engine resamples onto exactly our pixels."""
    t = grid.transform(box)
    return {
        "expression": image,
        "fileFormat": "NUMPY_NDARRAY",
        "grid": {
            "dimensions": {"width": box.width, "height": box.height},
            "affineTransform": {"scaleX": t.a, "shearX": t.b, "translateX": t.c,
                                "shearY": t.d, "scaleY": t.e, "translateY": t.f},
            "crsCode": grid.crs,
        },
    }


def stack_bands(pixels: Any, bands: Sequence[str], shape: tuple[int, int]) -> np.ndarray:
    """(bands, h, w) float32 from computePixels' structured array (one field per band); sentinel → NaN."""
    names = getattr(getattr(pixels, "dtype", None), "names", None) or ()
    missing = [b for b in bands if b not in names]
    if missing or tuple(pixels.shape) != tuple(shape):
        raise SourceError(f"Earth Engine: computePixels returned bands {', '.join(names) or '(none)'} of shape "
                          f"{tuple(getattr(pixels, 'shape', ()))}, not {', '.join(bands)} of shape {tuple(shape)}")
    out = np.stack([np.asarray(pixels[b], dtype=np.float32) for b in bands])
    out[out == np.float32(NODATA_SENTINEL)] = np.nan
    return out


# --- Errors ----------------------------------------------------------------------------------------------

def is_transient(exc: BaseException) -> bool:
    """Whether an error is worth retrying (quota, overload, time-outs), never an auth or permission error."""
    text = str(exc)
    if _AUTH.search(text):
        return False
    return isinstance(exc, TimeoutError | ConnectionError) or bool(_TRANSIENT.search(text))


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """`text` without the given secrets (also JSON-escaped, also line by line), PEM keys or OAuth tokens."""
    for secret in secrets:
        if not secret:
            continue
        pieces = {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1]}
        pieces |= {line.strip() for line in secret.splitlines() if len(line.strip()) >= 16}
        for piece in sorted(pieces, key=len, reverse=True):
            text = text.replace(piece, "[redacted]")
    return _TOKEN.sub("[redacted token]", _PEM.sub("[redacted key]", text))


def short_reason(exc: BaseException, secrets: Sequence[str] = ()) -> str:
    """The first line of an error, redacted and cut, for a one-line message."""
    text = redact(str(exc), secrets)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "") or type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def fmt_bounds(bounds: Bounds) -> str:
    return "(" + ", ".join(f"{float(v):.10g}" for v in bounds) + ")"


# --- The source ------------------------------------------------------------------------------------------

def _read_key(path: str) -> dict[str, Any]:
    """The service-account key's fields; refuses, without quoting the file, what is not such a key."""
    try:
        info = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SourceError(f"Earth Engine: authentication failed (no key file {path}); {AUTH_HINT}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"Earth Engine: authentication failed (cannot read key file {path}: "
                          f"{type(exc).__name__}); {AUTH_HINT}") from None
    except ValueError:
        raise SourceError(f"Earth Engine: authentication failed (key file {path} is not JSON); "
                          f"{AUTH_HINT}") from None
    if not isinstance(info, dict) or not isinstance(info.get("client_email"), str):
        raise SourceError(f"Earth Engine: authentication failed (key file {path} is not a service-account key: "
                          f"no client_email); {AUTH_HINT}")
    return info


def _env_key() -> str | None:
    """GOOGLE_APPLICATION_CREDENTIALS when it names a service-account key. Other kinds (a user's ADC) are
    left to ee.Initialize, which finds them through google.auth.default."""
    path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not path:
        return None
    try:
        info = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SourceError(f"Earth Engine: authentication failed (GOOGLE_APPLICATION_CREDENTIALS names "
                          f"a missing file {path}); {AUTH_HINT}") from None
    except (OSError, ValueError):
        return None
    return path if isinstance(info, dict) and info.get("type") == "service_account" else None


@dataclass(frozen=True)
class EarthEngineSource(Source):
    """Sentinel-2 and Dynamic World yearly composites from Earth Engine; picklable for the workers."""

    project: str | None = None
    key_file: str | None = None  # a service-account JSON key; else the default credentials
    cloud_pct: float = DEFAULT_CLOUD_PCT
    retries: int = 5
    backoff_s: float = 2.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.cloud_pct <= 100:
            raise SourceError(f"Earth Engine: the scene cloud limit must be in (0, 100] %, not {self.cloud_pct:g}")
        if self.retries < 0 or self.backoff_s < 0:
            raise SourceError("Earth Engine: retries and backoff must not be negative")

    @property
    def description(self) -> str:
        # Never the key's content nor a token; the key file's path is left out too.
        who = ", service-account key" if self.key_file else ""
        return f"Earth Engine (project {self.project or 'default'}, S2 cloud < {self.cloud_pct:g} %{who})"

    def identity(self, years: Sequence[int]) -> dict:
        return {"kind": "earthengine", "project": self.project, "collections": [S2_COLLECTION, DW_COLLECTION],
                "cloud_pct": self.cloud_pct}

    # -- session --

    def _ee(self) -> Any:
        """The `ee` module, initialised for this source's project and credentials (once per process)."""
        try:
            import ee
        except ImportError:
            raise SourceError('Earth Engine: the earthengine-api package is not installed; '
                              'pip install "mapgen[ee]"') from None
        key_file = self.key_file or _env_key()
        wanted = (self.project, key_file)
        with _INIT_LOCK:
            if _STATE.get("module") is not ee or _STATE.get("for") != wanted:
                _STATE.clear()
                self._initialise(ee, key_file)
                _STATE.update({"module": ee, "for": wanted})
        return ee

    def _initialise(self, ee: Any, key_file: str | None) -> None:
        secrets: list[str] = []
        try:
            if key_file:
                info = _read_key(key_file)
                secrets = [str(info.get("private_key", "")), str(info.get("private_key_id", ""))]
                credentials = ee.ServiceAccountCredentials(info["client_email"], key_file)
                ee.Initialize(credentials, project=self.project or info.get("project_id"))
            else:
                ee.Initialize(project=self.project)
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever fails here is an authentication failure
            # `from None`: a chained traceback could carry the key into a log.
            raise SourceError(f"Earth Engine: authentication failed ({short_reason(exc, secrets)}); "
                              f"{AUTH_HINT}") from None
        log.debug("Earth Engine initialised (project %s)", self.project or "default")

    def _call(self, call: Callable[[], Any], what: str) -> Any:
        """`call()`, retried with exponential backoff while Earth Engine says it is busy or slow."""
        for attempt in range(self.retries + 1):
            try:
                return call()
            except SourceError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure of the call is classified below
                reason = short_reason(exc)
                if not is_transient(exc):
                    raise SourceError(f"Earth Engine: {what} failed ({reason})") from exc
                if attempt == self.retries:
                    raise SourceError(f"Earth Engine: {what} failed after {attempt + 1} attempts "
                                      f"({reason})") from exc
                delay = self.backoff_s * 2**attempt
                log.warning("Earth Engine: %s: %s; retry %d of %d in %.3g s", what, reason, attempt + 1,
                            self.retries, delay)
                self.sleep(delay)
        raise AssertionError("unreachable")

    # -- Source --

    def check(self, spec: InputSpec, years: Sequence[int], region: Bounds | BaseGeometry) -> Coverage:
        collection = collection_for(spec)
        ee = self._ee()
        where = fmt_bounds(tuple(as_geometry(region).bounds))
        cloud = f" with cloud < {self.cloud_pct:g} %" if collection == S2_COLLECTION else ""
        coverage: dict[int, float] = {}
        for year in sorted(set(years)):
            n = 0
            for bounds in bounds_parts(region):  # both sides of a region split at the antimeridian
                found = scenes(ee, collection, bounds, year, self.cloud_pct)
                n += self._call(lambda found=found: found.size().getInfo(), f"counting {collection} scenes "
                                f"for '{spec.name}' in {year} over {where}")
            if not n:
                raise SourceError(f"Earth Engine: no {collection} scene{cloud} over {where} in {year}")
            # Earth Engine cannot tell how much of the region the scenes cover without computing it over
            # every pixel; scenes exist, so count the year as covered and let NaN pixels say the rest.
            coverage[year] = 1.0
        return Coverage(coverage, measured="footprints")

    def read(self, spec: InputSpec, year: int, grid: Grid, box: Box) -> np.ndarray:
        collection_for(spec)  # refuse unknown bands before any authentication or request
        ee = self._ee()
        bounds = grid.bounds(box)
        image = composite(ee, spec, bounds, year, self.cloud_pct).unmask(NODATA_SENTINEL, False)
        what = f"reading '{spec.name}' for {year} over {fmt_bounds(bounds)}"
        out = np.full((len(spec.bands), box.height, box.width), np.nan, dtype=np.float32)
        for part in split_box(box, len(spec.bands), MAX_REQUEST_SIDE, MAX_REQUEST_BYTES):
            request = pixel_request(image, grid, part)
            pixels = self._call(lambda request=request: ee.data.computePixels(request), what)
            rows, cols = part.slices_in(box)
            out[:, rows, cols] = stack_bands(pixels, spec.bands, part.shape)
        return out


def parse_ee_spec(text: str) -> EarthEngineSource:
    """The source of `--source ee`, `ee://PROJECT` or `ee://PROJECT?cloud=10&key=/path/key.json`."""
    text = text.strip()
    if text in ("ee", "ee:", "ee://"):
        return EarthEngineSource()
    parts = urlsplit(text)
    if parts.scheme.lower() != "ee" or not text.lower().startswith("ee://") or parts.path not in ("", "/") \
            or parts.fragment:
        raise SourceError(f"source {text}: an Earth Engine source is ee, ee://PROJECT or "
                          "ee://PROJECT?cloud=20&key=KEY.json")
    project = parts.netloc or None
    if project is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]*", project):
        raise SourceError(f"source {text}: '{project}' is not a Google Cloud project id")
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise SourceError(f"source {text}: the query must be key=value pairs joined by &") from None
    options: dict[str, str] = {}
    for key, value in query:
        if key not in ("cloud", "key"):
            raise SourceError(f"source {text}: unknown option '{key}' (ee:// takes cloud and key)")
        if key in options:
            raise SourceError(f"source {text}: option '{key}' given twice")
        options[key] = value
    cloud = DEFAULT_CLOUD_PCT
    if "cloud" in options:
        try:
            cloud = float(options["cloud"])
        except ValueError:
            cloud = float("nan")
        if not 0 < cloud <= 100:  # also refuses NaN
            raise SourceError(f"source {text}: cloud={options['cloud']} is not a percentage in (0, 100]")
    key_file = None
    if "key" in options:
        if not options["key"]:
            raise SourceError(f"source {text}: key= needs the path of a service-account JSON key")
        # Absolute: the workers may not share the client's working directory.
        key_file = str(Path(options["key"]).expanduser().absolute())
    return EarthEngineSource(project=project, key_file=key_file, cloud_pct=cloud)
