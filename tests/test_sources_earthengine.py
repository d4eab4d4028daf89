"""The Earth Engine source against a recording fake `ee`: what is asked of Earth Engine (collections, dates,
cloud filter, QA60 mask, bands, scale, grid), where the returned pixels land, retries, authentication."""

from __future__ import annotations

import json
import logging
import pickle
import sys
import traceback
from fractions import Fraction

import numpy as np
import pytest
from fake_ee import FakeEE
from hypothesis import given
from hypothesis import strategies as st

from mapgen.pipeline.sources import earthengine as eem
from mapgen.pipeline.sources.base import SourceError
from mapgen.pipeline.sources.earthengine import (
    EarthEngineSource,
    mask_clouds,
    parse_ee_spec,
    qa60_clear,
    split_box,
)
from mapgen.tiles import Box, Grid
from mapgen.workflows.product import InputSpec

GRID = Grid(Fraction(1, 11130))
S2 = InputSpec("s2", "image", ("B2", "B3", "B4", "B8"))
BUILT = InputSpec("built", "mask", ("built",))
BOUNDS = (116.3, 39.5, 116.4, 39.6)
BOX = GRID.box((116.3, 39.5, 116.31, 39.51))  # 112 × 112 px from (116.3°, 39.5°)
WHERE = eem.fmt_bounds(GRID.bounds(BOX))  # "(116.3, 39.5, 116.3100629, 39.51006289)"
DN_OFFSET = {"B2": 1000.0, "B3": 2000.0, "B4": 3000.0, "B8": 4000.0}
MASKED_LON, MASKED_LAT = 116.305, 39.505  # north-east of this, the fake's scenes have no clear pixel

SECRET = "MIIEvFAKESECRETdoNotLeak0123456789abcdefABCDEF"
PRIVATE_KEY = f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n"
KEY_ID = "f00dfacefeedbeef0123456789abcdef01234567"


def field(band: str, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """The fake's yearly composite: S2 in DN, Dynamic World in [0, 1]; each pixel's value says where it is
    (9 DN per column, 0.09 DN per row) and which band it is; NaN (masked) in the north-east corner."""
    if band == "built":
        value = (lon - 116.3) * 50 + (lat - 39.5) * 5
    else:
        value = DN_OFFSET[band] + (lon - 116.3) * 1e5 + (lat - 39.5) * 1e3
    return np.where((lon > MASKED_LON) & (lat > MASKED_LAT), np.nan, value)


def expected(spec: InputSpec, box: Box, scale: float) -> np.ndarray:
    """What `read` must return: `field` at the centre of each pixel of `box` (from the lattice, exactly)."""
    res = GRID.res
    lon = np.array([float(-180 + (box.col + j + Fraction(1, 2)) * res) for j in range(box.width)])
    lat = np.array([float(90 - (box.row + i + Fraction(1, 2)) * res) for i in range(box.height)])
    lon, lat = np.meshgrid(lon, lat)
    return np.stack([field(b, lon, lat) / scale for b in spec.bands]).astype(np.float32)


@pytest.fixture
def fake(monkeypatch) -> FakeEE:
    fake = FakeEE(pixels=field)
    monkeypatch.setitem(sys.modules, "ee", fake)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    return fake


@pytest.fixture
def key(tmp_path):
    path = tmp_path / "key.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "key-proj", "private_key_id": KEY_ID,
        "private_key": PRIVATE_KEY, "client_email": "mapgen@key-proj.iam.gserviceaccount.com",
    }))
    return path


def source(**kwargs) -> EarthEngineSource:
    sleeps = kwargs.pop("sleeps", [])
    return EarthEngineSource(project=kwargs.pop("project", "my-proj"), sleep=sleeps.append, **kwargs)


# --- the QA60 mask -----------------------------------------------------------------------------------------

class Bits:
    """NumPy values with the three image methods `qa60_clear` may use."""

    def __init__(self, values) -> None:
        self.values = np.asarray(values, dtype=np.int64)

    def bitwiseAnd(self, k: int) -> Bits:  # noqa: N802
        return Bits(self.values & k)

    def eq(self, k: int) -> Bits:
        return Bits(self.values == k)

    def And(self, other: Bits) -> Bits:  # noqa: N802
        return Bits((self.values != 0) & (other.values != 0))


def assert_masks_clouds(mask_fn, qa: np.ndarray) -> None:
    """The mask keeps exactly the QA60 values with neither opaque cloud (bit 10) nor cirrus (bit 11)."""
    qa = np.asarray(qa, dtype=np.int64)
    kept = mask_fn(Bits(qa)).values != 0
    clear = ((qa >> 10) & 1 == 0) & ((qa >> 11) & 1 == 0)
    wrong = qa[kept != clear]
    assert wrong.size == 0, f"the mask is wrong for QA60 = {wrong[:8].tolist()}"


def authors_mask(qa):
    """The published code's mask: the cirrus bit is tested on the 0/1 opaque-cloud mask, not on QA60, so it
    is always 0 there and the mask keeps everything."""
    clear = qa.bitwiseAnd(1 << 10).eq(0)
    return clear.bitwiseAnd(1 << 11).eq(0)


def test_qa60_clear_keeps_exactly_the_clear_values_of_all_12_bit_qa60():
    assert_masks_clouds(qa60_clear, np.arange(4096))


@given(st.integers(0, 2**16 - 1))
def test_qa60_clear_on_any_uint16(value):
    assert_masks_clouds(qa60_clear, np.array([value], dtype=np.uint16))


def test_the_authors_mask_fails_the_same_check():
    assert (authors_mask(Bits(np.arange(4096))).values == 1).all()  # it keeps every pixel
    with pytest.raises(AssertionError):
        assert_masks_clouds(authors_mask, np.arange(4096))


def evaluate_mask(node, qa: np.ndarray) -> np.ndarray:
    """The mask graph that the fake recorded, evaluated over QA60 values."""
    op, args = node.op, node.args
    if op == "scene":
        raise AssertionError("the mask must be computed from QA60, not from the whole scene")
    if op == "select":
        assert node.parent.op == "scene" and args == ("QA60",), (op, args)
        return qa
    value = evaluate_mask(node.parent, qa)
    if op == "bitwiseAnd":
        return value & args[0]
    if op == "eq":
        return (value == args[0]).astype(np.int64)
    if op == "And":
        return ((value != 0) & (evaluate_mask(args[0], qa) != 0)).astype(np.int64)
    raise AssertionError(f"unexpected {op} in the mask")


def test_mask_clouds_sends_the_qa60_mask_to_earth_engine(fake):
    source().read(S2, 2017, GRID, BOX)
    [(fn, traced)] = fake.traced
    assert fn is mask_clouds
    assert traced.op == "updateMask" and traced.parent.op == "scene"
    mask = traced.args[0]
    qa = np.arange(4096)

    class Graph:  # the recorded graph as a mask function of QA60, for the same check as above
        def __init__(self, values) -> None:
            self.values = values

    assert_masks_clouds(lambda bits: Graph(evaluate_mask(mask, bits.values)), qa)


# --- what is asked of Earth Engine -------------------------------------------------------------------------

def composite_of(request, bands):
    """The request's expression is If(scenes > 0, composite, no data), unmasked: check the frame, give the
    composite."""
    image = request["expression"]
    assert image.ops() == ["Image", "unmask"]
    assert image.args_of("unmask") == [(eem.NODATA_SENTINEL, False)]  # also outside the scenes' footprint
    [(choice,)] = image.args_of("Image")
    assert choice.op == "If"
    count, median, empty = choice.args
    assert count.op == "gt" and count.args == (0,) and count.parent.op == "size"
    scenes = median
    while scenes.op not in ("filter", "filterDate"):
        scenes = scenes.parent
    assert count.parent.parent is scenes  # the scenes counted are those of the composite
    assert empty.ops() == ["constant", "rename", "toFloat", "updateMask"]
    assert empty.args_of("rename") == [(list(bands),)] and empty.args_of("updateMask") == [(0,)]
    return median


def test_s2_composite_recipe(fake):
    source().read(S2, 2017, GRID, BOX)
    [request] = fake.requests
    image = composite_of(request, S2.bands)
    assert image.ops() == ["ImageCollection", "filterBounds", "filterDate", "filter", "map", "median", "select",
                           "toFloat", "divide"]
    assert image.args_of("ImageCollection") == [("COPERNICUS/S2_HARMONIZED",)]
    assert image.args_of("filterDate") == [("2017-01-01", "2018-01-01")]  # the whole year, end exclusive
    [(flt,)] = image.args_of("filter")
    assert (flt.op, flt.args) == ("Filter.lt", ("CLOUDY_PIXEL_PERCENTAGE", 20.0))
    assert image.args_of("map") == [(mask_clouds,)]
    assert image.args_of("select") == [(["B2", "B3", "B4", "B8"],)]
    assert image.args_of("divide") == [(10000,)]
    [(rect,)] = image.args_of("filterBounds")
    assert rect.op == "Rectangle" and rect.args == (list(GRID.bounds(BOX)), "EPSG:4326", False)


def test_the_request_is_the_lattice_of_the_box(fake):
    source().read(S2, 2017, GRID, BOX)
    [request] = fake.requests
    assert request["fileFormat"] == "NUMPY_NDARRAY"
    grid = request["grid"]
    assert grid["crsCode"] == "EPSG:4326"
    assert grid["dimensions"] == {"width": BOX.width, "height": BOX.height}
    t = GRID.transform(BOX)
    res = float(Fraction(1, 11130))
    assert grid["affineTransform"] == {"scaleX": res, "shearX": 0.0, "translateX": t.c,
                                       "shearY": 0.0, "scaleY": -res, "translateY": t.f}
    assert (t.c, t.f) == (float(-180 + BOX.col * GRID.res), float(90 - BOX.row * GRID.res))
    assert (t.c, t.f + BOX.height * t.e) == pytest.approx((116.3, 39.5))  # the box's south-west corner


def test_a_custom_cloud_limit_is_sent(fake):
    parse_ee_spec("ee://my-proj?cloud=10").read(S2, 2017, GRID, BOX)
    [(flt,)] = composite_of(fake.requests[0], S2.bands).args_of("filter")
    assert flt.args == ("CLOUDY_PIXEL_PERCENTAGE", 10.0)


def test_dynamic_world_recipe(fake):
    source().read(BUILT, 2019, GRID, BOX)
    image = composite_of(fake.requests[0], BUILT.bands)
    assert image.ops() == ["ImageCollection", "filterBounds", "filterDate", "select", "median", "toFloat"]
    assert image.args_of("ImageCollection") == [("GOOGLE/DYNAMICWORLD/V1",)]
    assert image.args_of("filterDate") == [("2019-01-01", "2020-01-01")]
    assert image.args_of("select") == [(["built"],)]
    assert not fake.traced  # no QA60 mask, no cloud filter, no scaling


# --- the pixels that come back -----------------------------------------------------------------------------

def test_s2_pixels_are_reflectance_on_the_lattice_with_nan_where_masked(fake):
    data = source().read(S2, 2017, GRID, BOX)
    assert data.shape == (4, BOX.height, BOX.width) and data.dtype == np.float32
    want = expected(S2, BOX, 10000)
    np.testing.assert_allclose(data, want, rtol=1e-6, atol=0)  # also the NaN: same places
    assert np.isnan(data).any() and not np.isnan(data[:, -1, 0]).any()  # masked north-east corner only
    assert not (data == eem.NODATA_SENTINEL).any() and np.nanmax(data) < 1  # DN / 10000, once
    # Bands in the spec's order, whatever order is asked.
    swapped = InputSpec("s2", "image", ("B8", "B2"))
    np.testing.assert_allclose(source().read(swapped, 2017, GRID, BOX), want[[3, 0]], rtol=1e-6)


@pytest.mark.parametrize("spec", [S2, BUILT])
def test_a_block_without_scenes_is_no_data_not_an_error(fake, spec):
    # The region has scenes (check passed) but this block's year has none: the median would have no bands.
    fake.scenes[("COPERNICUS/S2_HARMONIZED", 2017)] = fake.scenes[("GOOGLE/DYNAMICWORLD/V1", 2017)] = 0
    data = source().read(spec, 2017, GRID, BOX)
    assert data.shape == (len(spec.bands), *BOX.shape) and np.isnan(data).all()
    assert len(fake.requests) == 1


def test_dynamic_world_pixels_are_probabilities_unscaled(fake):
    data = source().read(BUILT, 2018, GRID, BOX)
    np.testing.assert_allclose(data, expected(BUILT, BOX, 1), rtol=1e-6, atol=1e-7)
    assert 0 <= np.nanmin(data) and np.nanmax(data) <= 1


@pytest.mark.parametrize("limits", [dict(MAX_REQUEST_SIDE=40), dict(MAX_REQUEST_BYTES=4 * 4 * 112 * 10)])
def test_large_boxes_are_split_and_put_together_in_place(fake, monkeypatch, limits):
    for name, value in limits.items():
        monkeypatch.setattr(eem, name, value)
    data = source().read(S2, 2017, GRID, BOX)
    assert len(fake.requests) > 1
    for request in fake.requests:
        dims = request["grid"]["dimensions"]
        assert max(dims.values()) <= eem.MAX_REQUEST_SIDE
        assert dims["width"] * dims["height"] * 16 <= eem.MAX_REQUEST_BYTES
    np.testing.assert_allclose(data, expected(S2, BOX, 10000), rtol=1e-6, atol=0)


@given(st.integers(-10**6, 10**6), st.integers(-10**6, 10**6), st.integers(1, 120), st.integers(1, 120),
       st.integers(1, 6), st.integers(1, 50), st.integers(1, 4000))
def test_split_box_tiles_the_box_within_the_limits(row, col, height, width, bands, max_side, max_bytes):
    box = Box(row, col, height, width)
    count = np.zeros(box.shape, dtype=int)
    for part in split_box(box, bands, max_side, max_bytes):
        assert part.height <= max_side and part.width <= max_side
        assert part.height * part.width * bands * 4 <= max_bytes or part.shape == (1, 1)
        rows, cols = part.slices_in(box)
        count[rows, cols] += 1
    assert (count == 1).all()


def test_split_box_with_earth_engine_limits():
    box = Box(0, 0, 100_000, 40_000)
    parts = split_box(box, 4)
    assert all(p.height <= 32768 and p.width <= 32768 and p.height * p.width * 16 <= 48 * 2**20 for p in parts)
    assert sum(p.height * p.width for p in parts) == box.height * box.width
    assert split_box(Box(5, 5, 1335, 1335), 4) == [Box(5, 5, 1335, 1335)]  # a 0.1° block + halo: one request


def test_a_result_without_the_asked_bands_is_refused():
    pixels = np.zeros((2, 2), dtype=[("B2", "f4")])
    with pytest.raises(SourceError, match="returned bands B2 of shape"):
        eem.stack_bands(pixels, ("B2", "B3"), (2, 2))


# --- retries -----------------------------------------------------------------------------------------------

def test_transient_errors_are_retried_with_growing_backoff(fake, caplog):
    sleeps: list[float] = []
    fake.compute_errors = [fake.EEException("Too Many Requests: quota exceeded (429)"),
                           fake.EEException("Computation timed out."), TimeoutError("read timed out")]
    data = source(sleeps=sleeps, backoff_s=2.0).read(S2, 2017, GRID, BOX)
    assert sleeps == [2.0, 4.0, 8.0] and len(fake.requests) == 4
    np.testing.assert_allclose(data, expected(S2, BOX, 10000), rtol=1e-6, atol=0)
    assert "retry 1 of 5" in caplog.text


@pytest.mark.parametrize("error", ["Image.select: Pattern 'B2' did not match any bands.\nsecond line",
                                   "Permission denied: the caller does not have permission (403)",
                                   "Quota exceeded, and permission denied"])
def test_a_permanent_error_is_refused_at_once_in_one_line(fake, error):
    sleeps: list[float] = []
    fake.compute_errors = [fake.EEException(error)]
    with pytest.raises(SourceError) as info:
        source(sleeps=sleeps).read(S2, 2017, GRID, BOX)
    message = str(info.value)
    assert sleeps == [] and len(fake.requests) == 1
    assert "\n" not in message and "'s2'" in message and "2017" in message
    assert WHERE in message and error.splitlines()[0] in message


def test_exhausted_retries_are_refused_in_one_line(fake):
    sleeps: list[float] = []
    fake.compute_errors = [fake.EEException("503 Service Unavailable\ntry later")] * 3
    with pytest.raises(SourceError) as info:
        source(sleeps=sleeps, retries=2, backoff_s=0.5).read(S2, 2017, GRID, BOX)
    assert str(info.value) == (f"Earth Engine: reading 's2' for 2017 over {WHERE} failed after 3 attempts "
                               "(503 Service Unavailable)")
    assert sleeps == [0.5, 1.0]


@pytest.mark.parametrize("message, transient", [
    ("Too Many Requests", True), ("Quota exceeded for quota metric", True), ("HTTP 502 Bad Gateway", True),
    ("Earth Engine service temporarily unavailable", True), ("Deadline exceeded", True),
    ("User memory limit exceeded.", False), ("Collection.first: Empty collection", False),
    ("Permission denied (403)", False), ("Image too large: 5000 x 5000", False)])
def test_which_errors_are_transient(message, transient):
    assert eem.is_transient(RuntimeError(message)) is transient


# --- authentication ----------------------------------------------------------------------------------------

def test_a_service_account_key_is_used(fake, key):
    src = parse_ee_spec(f"ee://my-proj?key={key}")
    src.read(BUILT, 2018, GRID, BOX)
    [((email, path), _)] = fake.called("ServiceAccountCredentials")
    assert (email, path) == ("mapgen@key-proj.iam.gserviceaccount.com", str(key))
    [((credentials,), kwargs)] = fake.called("Initialize")
    assert credentials.key_file == str(key) and kwargs == {"project": "my-proj"}


def test_default_credentials_and_one_initialisation_per_process(fake):
    src = source()
    src.read(BUILT, 2018, GRID, BOX)
    src.read(S2, 2017, GRID, BOX)
    pickle.loads(pickle.dumps(src)).read(BUILT, 2016, GRID, BOX)
    assert fake.called("Initialize") == [(("persistent",), {"project": "my-proj"})]
    assert not fake.called("ServiceAccountCredentials")


def test_google_application_credentials_names_the_key(fake, key, monkeypatch):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    source(project=None).check(BUILT, [2018], BOUNDS)
    [((_, path), _)] = fake.called("ServiceAccountCredentials")
    [(_, kwargs)] = fake.called("Initialize")
    assert path == str(key) and kwargs == {"project": "key-proj"}  # the key's project when none is given


def test_an_auth_failure_is_one_line_and_never_shows_the_key(fake, key, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    # A leaky library error that quotes the key: the message must still not carry it.
    fake.initialize_error = fake.EEException(f"invalid_grant: Invalid JWT Signature for {PRIVATE_KEY!r} "
                                             f"(key {KEY_ID}) {SECRET}")
    src = parse_ee_spec(f"ee://my-proj?key={key}")
    with pytest.raises(SourceError) as info:
        src.check(S2, [2017], BOUNDS)
    message = str(info.value)
    assert message.startswith("Earth Engine: authentication failed (invalid_grant: Invalid JWT Signature")
    assert message.endswith("or run `earthengine authenticate`") and "\n" not in message
    assert "ee://PROJECT?key=KEY.json" in message
    shown = "".join(traceback.format_exception(info.value))
    out = capsys.readouterr()
    for text in (message, shown, caplog.text, out.out, out.err, src.description, repr(src)):
        assert SECRET not in text and KEY_ID not in text and "PRIVATE KEY" not in text
    assert not fake.counted  # refused before any work


def test_a_missing_key_is_refused(fake, tmp_path):
    with pytest.raises(SourceError, match=r"^Earth Engine: authentication failed \(no key file .*nokey.json\);"):
        parse_ee_spec(f"ee://p?key={tmp_path / 'nokey.json'}").read(S2, 2017, GRID, BOX)
    (tmp_path / "bad.json").write_text('{"private_key": "' + SECRET + '"')
    with pytest.raises(SourceError, match="is not JSON") as info:
        parse_ee_spec(f"ee://p?key={tmp_path / 'bad.json'}").read(S2, 2017, GRID, BOX)
    assert SECRET not in str(info.value)
    assert not fake.requests


def test_default_credentials_failure(fake):
    fake.initialize_error = fake.EEException("Please authorize access to your Earth Engine account by running\n\n"
                                             "earthengine authenticate")
    with pytest.raises(SourceError, match=r"authentication failed \(Please authorize access .*\); give a "
                                          r"service-account key"):
        source().check(BUILT, [2018], BOUNDS)


def test_without_earthengine_api(monkeypatch):
    monkeypatch.setitem(sys.modules, "ee", None)  # `import ee` fails
    with pytest.raises(SourceError, match=r'pip install "mapgen\[ee\]"'):
        source().check(S2, [2017], BOUNDS)


# --- check -------------------------------------------------------------------------------------------------

def test_check_counts_scenes_per_year(fake):
    assert source().check(S2, [2018, 2016, 2017], BOUNDS) == {2016: 1.0, 2017: 1.0, 2018: 1.0}
    assert [c.args_of("filterDate") for c in fake.counted] == [[(f"{y}-01-01", f"{y + 1}-01-01")]
                                                               for y in (2016, 2017, 2018)]
    for counted in fake.counted:
        assert counted.ops() == ["ImageCollection", "filterBounds", "filterDate", "filter"]
        [(rect,)] = counted.args_of("filterBounds")
        assert rect.args == (list(BOUNDS), "EPSG:4326", False)
        [(flt,)] = counted.args_of("filter")
        assert flt.args == ("CLOUDY_PIXEL_PERCENTAGE", 20.0)


def test_check_refuses_a_year_without_scenes(fake):
    fake.scenes[("COPERNICUS/S2_HARMONIZED", 2017)] = 0
    with pytest.raises(SourceError) as info:
        source().check(S2, [2016, 2017, 2018], BOUNDS)
    assert str(info.value) == ("Earth Engine: no COPERNICUS/S2_HARMONIZED scene with cloud < 20 % over "
                               "(116.3, 39.5, 116.4, 39.6) in 2017")
    fake.scenes[("GOOGLE/DYNAMICWORLD/V1", 2018)] = 0
    with pytest.raises(SourceError, match=r"^Earth Engine: no GOOGLE/DYNAMICWORLD/V1 scene over .* in 2018$"):
        source().check(BUILT, [2018], BOUNDS)


@pytest.mark.parametrize("bands", [("NDVI",), ("B2", "built"), ("QA60",), ("label",), ()])
def test_bands_of_neither_collection_are_refused_before_any_work(fake, bands):
    spec = InputSpec("x", "image", bands)
    with pytest.raises(SourceError, match=r"^Earth Engine: input 'x' asks for bands .*that neither "
                                          r"COPERNICUS/S2_HARMONIZED nor GOOGLE/DYNAMICWORLD/V1 has$"):
        source().check(spec, [2017], BOUNDS)
    with pytest.raises(SourceError, match="neither"):
        source().read(spec, 2017, GRID, BOX)
    assert not fake.calls and not fake.requests


# --- --source strings, description, pickling ---------------------------------------------------------------

@pytest.mark.parametrize("text, project, cloud, key", [
    ("ee", None, 20.0, None), ("ee://", None, 20.0, None), (" ee://my-proj ", "my-proj", 20.0, None),
    ("ee://my-proj?cloud=10", "my-proj", 10.0, None), ("ee://123456789012?cloud=12.5", "123456789012", 12.5, None),
    ("ee://my-proj?cloud=10&key=/k/key.json", "my-proj", 10.0, "/k/key.json"),
    ("ee://my-proj?key=/k/key.json&cloud=100", "my-proj", 100.0, "/k/key.json"),
])
def test_parse_ee_spec_accepts(text, project, cloud, key):
    src = parse_ee_spec(text)
    assert (src.project, src.cloud_pct, src.key_file) == (project, cloud, key)


def test_a_relative_key_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_ee_spec("ee://p?key=keys/k.json").key_file == str(tmp_path / "keys" / "k.json")


@pytest.mark.parametrize("text", [
    "ee://p?clouds=10", "ee://p?cloud=abc", "ee://p?cloud=0", "ee://p?cloud=101", "ee://p?cloud=nan",
    "ee://p?cloud=-5", "ee://p?cloud=10&cloud=20", "ee://p?key=", "ee://p?cloud", "ee://p/extra", "ee:p",
    "ee://bad project", "gee://p", "ee://p#x",
])
def test_parse_ee_spec_refuses(text):
    with pytest.raises(SourceError) as info:
        parse_ee_spec(text)
    assert "\n" not in str(info.value)


def test_description_names_the_project_and_cloud_limit_only(key):
    assert parse_ee_spec("ee://my-proj").description == "Earth Engine (project my-proj, S2 cloud < 20 %)"
    with_key = parse_ee_spec(f"ee://my-proj?cloud=10&key={key}").description
    assert with_key == "Earth Engine (project my-proj, S2 cloud < 10 %, service-account key)"
    assert parse_ee_spec("ee").description == "Earth Engine (project default, S2 cloud < 20 %)"


def test_the_source_pickles_without_importing_ee(monkeypatch, key):
    monkeypatch.setitem(sys.modules, "ee", None)  # any `import ee` would fail
    src = parse_ee_spec(f"ee://my-proj?cloud=15&key={key}")
    copy = pickle.loads(pickle.dumps(src))
    assert copy == src and copy.description == src.description
    assert SECRET not in pickle.dumps(src).decode("latin-1")


def test_dates_that_are_not_years_are_refused_before_any_request(fake):
    from mapgen.pipeline.sources import Inputs, check_inputs
    from mapgen.workflows import load_product

    product = load_product("cbra")
    inputs = Inputs({spec.name: source() for spec in product.inputs})
    with pytest.raises(SourceError, match=r"^input 's2': .* makes annual composites only, not 2018-08, 2020-08; "):
        check_inputs(inputs, product, ["2018-08", "2020-08"], BOUNDS)
    assert not fake.counted  # nothing was asked of Earth Engine
