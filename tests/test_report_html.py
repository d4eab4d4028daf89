"""report.html: a self-contained page of a run's report with a quick-look of each map (issue 16)."""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import TEST_BLOCK, WEST, YEARS, region_box
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.transform import from_origin

from mapgen.files.cog import write_cog
from mapgen.pipeline import run as run_module
from mapgen.pipeline.export import colormap
from mapgen.pipeline.report_html import QuickLook, encode_png, quicklook_rgba, render
from mapgen.pipeline.run import RUN_DIR, RunReport, RunTasks, execute, prepare
from mapgen.pipeline.tasks import export_tile
from mapgen.workflows import load_product

PRODUCT = load_product("cbra")
SPEC = PRODUCT.output
# two blocks, the western one mostly west of the scene: its no data must show as transparent
REGION = region_box(2, 1, west=WEST - 1 / 30)
BROKEN = 'disk <b>full</b> & "gone" \'now\''
# the tags a report may hold: none that loads, runs or embeds anything but its own data: images
ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "span", "code", "b",
                "table", "tr", "th", "td", "ul", "li", "pre", "div", "figure", "figcaption", "img"}


class Page(HTMLParser):
    """A parsed page: its start tags with their attributes, and its text (character references decoded)."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.data: list[str] = []
        self.styles: list[str] = []  # the style sheet and every style attribute
        self._open = ""
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self.styles += [v or "" for k, v in attrs if k == "style"]
        self._open = tag

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        self._open = ""

    def handle_endtag(self, tag):
        self._open = ""

    def handle_data(self, data):
        (self.styles if self._open == "style" else self.data).append(data)

    @property
    def text(self) -> str:
        return "".join(self.data)

    def images(self) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.tags if tag == "img"]


def assert_self_contained(html: str) -> Page:
    """The page parses, holds only harmless tags, and refers to nothing but its own data: URIs and anchors."""
    page = Page(html)
    assert {tag for tag, _ in page.tags} <= ALLOWED_TAGS
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)  # no event handlers
            if name in ("src", "href", "srcset", "action", "data", "poster", "background", "formaction"):
                assert value and value.startswith(("data:", "#")), (tag, name, value)
    styles = "".join(page.styles)
    assert styles and "url(" not in styles and "@import" not in styles  # no fonts or images from elsewhere
    return page


def decode(uri: str) -> np.ndarray:
    """The (H, W, 4) RGBA of a data:image/png URI, decoded by GDAL."""
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    png = base64.b64decode(uri[len(prefix):], validate=True)
    with MemoryFile(png) as mem, mem.open() as src:
        assert src.driver == "PNG" and src.count == 4
        return np.moveaxis(src.read(), 0, -1)


def palette_of(src) -> np.ndarray:
    """The file's own colour table as a 256 × 4 lookup (what QGIS shows), no data transparent."""
    table = np.array([src.colormap(1)[i] for i in range(256)], np.uint8)
    table[int(src.nodata)] = 0
    return table


# --- quick-looks on COGs written here ---

def _cog(path: Path, values: np.ndarray, west: float = 116.0, north: float = 40.0, res: float = 1 / 44520) -> Path:
    write_cog(path, values, crs="EPSG:4326", transform=from_origin(west, north, res, res), nodata=SPEC.nodata,
              compress="deflate", overview_resampling="nearest", colormap=colormap(SPEC))
    return path


_values = st.sampled_from([0, 255, SPEC.nodata])


@settings(max_examples=25, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 70), st.integers(2, 90)), elements=_values),
       st.integers(1, 89))
def test_a_full_resolution_quicklook_is_the_map_in_its_colours(values, cut):
    """Read at full size, a quick-look is each pixel's class colour, transparent where no data; two tiles side
    by side make one picture, as the map they mosaic."""
    cut = min(cut, values.shape[1] - 1)
    res = 1 / 44520
    with tempfile.TemporaryDirectory() as folder:
        left = _cog(Path(folder) / "a.tif", values[:, :cut], res=res)
        right = _cog(Path(folder) / "b.tif", values[:, cut:], west=116.0 + cut * res, res=res)
        for sources, expect in (([left], values[:, :cut]), ([left, right], values)):
            rgba = quicklook_rgba(sources, SPEC, max_px=max(values.shape))
            assert rgba.shape == (*expect.shape, 4)
            want = np.zeros((*expect.shape, 4), np.uint8)
            for value, colour in colormap(SPEC).items():
                want[expect == value] = colour
            np.testing.assert_array_equal(rgba, want)
            assert (rgba[..., 3] == 0).sum() == (expect == SPEC.nodata).sum()


@settings(max_examples=10, deadline=None)
@given(st.integers(600, 1500), st.integers(20, 1500), st.integers(16, 512))
def test_a_quicklook_fits_its_size_and_only_holds_class_colours(width, height, max_px):
    rng = np.random.default_rng(width * height)
    values = rng.choice(np.array([0, 255, SPEC.nodata], np.uint8), size=(height, width))
    with tempfile.TemporaryDirectory() as folder:
        rgba = quicklook_rgba([_cog(Path(folder) / "t.tif", values)], SPEC, max_px=max_px)
    assert max(rgba.shape[:2]) <= max_px
    assert max(rgba.shape[:2]) >= max_px - 1  # not needlessly small
    assert abs(rgba.shape[1] / rgba.shape[0] - width / height) <= 2 * width / height / min(rgba.shape[:2])
    allowed = {tuple(c) for c in colormap(SPEC).values()}
    assert {tuple(p) for p in rgba.reshape(-1, 4)} <= allowed


def test_png_round_trip():
    rgba = np.random.default_rng(0).integers(0, 256, (7, 11, 4), dtype=np.uint8)
    uri = "data:image/png;base64," + base64.b64encode(encode_png(rgba)).decode()
    np.testing.assert_array_equal(decode(uri), rgba)


# --- the page, from a report made here ---

def _report(**fields) -> RunReport:
    base = dict(product="cbra", years=[2016, 2017], tiles=1, blocks=2, status="failed",
                failed=[f"predict r1c2-2017: ValueError: <script>alert('x')</script> & {BROKEN}"],
                blocks_failed=["r1c2"], tiles_failed=["CBRA_2017_E115N40.tif"],
                warnings=['s2 2017: the source covers 50.0 % of <the box>; "the rest" is no data'],
                coverage={"s2": {2016: 1.0, 2017: 0.5}, "built": {2016: 1.0, 2017: 1.0}},
                stage_seconds={"read": 1.5, "model": 6.0, "vote": 0.25}, seconds=9.0, windows=500,
                throughput={"windows_per_s": 55.5, "block_years_per_hour": 800.0, "km2_years_per_s": 1.25},
                retried={"block": 1}, verified={"tiles": 2}, recomputed=["tile CBRA_2016_E115N40.tif"],
                inputs={"s2": 'files /data/<s2>/"{year}".tif', "built": "none"},
                checkpoint="/models/tiny&small.safetensors", checkpoint_sha256="ab" * 32,
                versions={"mapgen": "0.1", "rasterio": "1.4"}, cluster={"workers": 2, "scheduler": "tcp://x:1"},
                worker_threads={"tcp://127.0.0.1:1": {"torch": 1, "numba": 1}}, device="cpu", precision="fp32",
                batch=64)
    return RunReport(**{**base, **fields})


def test_the_page_shows_the_report_and_escapes_what_it_quotes():
    report = _report()
    png = encode_png(np.full((4, 6, 4), (228, 38, 44, 255), np.uint8))
    looks = [QuickLook("", "2016", png, "CBRA_2016.vrt"), QuickLook("", "2017", None, "no map: <none> written")]
    html = render(report, looks, PRODUCT.outputs)
    page = assert_self_contained(html)
    text = page.text
    # every quoted string is shown as it is, and none of it became markup
    for quoted in (*report.failed, *report.warnings, *report.inputs.values(), report.checkpoint,
                   "no map: <none> written", report.checkpoint_sha256):
        assert quoted in text
    assert "<script>" not in html and "<b>full</b>" not in html and "<the box>" not in html
    assert [tag for tag, _ in page.tags].count("li") == len(report.failed) + len(report.warnings) + 1
    (img,) = page.images()
    assert img["alt"] == "2016"
    np.testing.assert_array_equal(decode(img["src"]), np.full((4, 6, 4), (228, 38, 44, 255), np.uint8))
    for shown in ("failed", "building rooftop", "background", "no data", "55.5 windows/s", "800.0 block-years/hour",
                  "1.25 km²·year/s", "50.0 %", "100.0 %", "cpu, fp32, batch 64", "tcp://x:1", "read", "model"):
        assert shown in text, shown
    # the bars of the stage chart are in proportion to the stages' times (model longest: 300 px)
    assert 'style="width:300px"' in html and 'style="width:75px"' in html


@settings(max_examples=50, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
       st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_any_text_is_shown_as_text(error, name):
    report = _report(failed=[f"export {name}: {error}"], warnings=[error], inputs={name or "s2": error},
                     product=name or "cbra")
    page = assert_self_contained(render(report, [QuickLook("", "2016", None, error)], PRODUCT.outputs))
    # HTML folds CR LF and lone CR to LF in text
    def norm(s: str) -> str:
        return s.replace("\r\n", "\n").replace("\r", "\n")

    for quoted in (report.failed[0], error, name):
        assert norm(quoted) in norm(page.text)


# --- real runs ---

def _run(client, scene, checkpoint, out, **execute_options) -> RunReport:
    ctx, plan = prepare(PRODUCT, REGION, YEARS, str(scene), out, checkpoint=str(checkpoint), block_size=TEST_BLOCK)
    return execute(client, ctx, plan, **execute_options)


@pytest.fixture(scope="module")
def finished(client, scene, checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished")
    report = _run(client, scene, checkpoint, out)
    assert report.status == "finished", report.failed
    return out


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def test_a_finished_run_has_a_page_with_a_quicklook_per_date(finished):
    html_path = finished / RUN_DIR / "report.html"
    report = json.loads((finished / RUN_DIR / "report.json").read_text())
    page = assert_self_contained(html_path.read_text(encoding="utf-8"))
    assert "finished" in page.text and report["checkpoint_sha256"] in page.text
    images = page.images()
    assert [img["alt"] for img in images] == [str(y) for y in YEARS]
    for year, img in zip(YEARS, images, strict=True):
        rgba = decode(img["src"])
        height, width = rgba.shape[:2]
        with rasterio.open(finished / f"CBRA_{year}.vrt") as vrt:
            # one block tall, two wide, at most 512 px on the long side
            assert (height, width) == (256, 512) and vrt.shape == (371 * 4, 2 * 371 * 4)
            values = vrt.read(1, out_shape=(height, width), resampling=Resampling.nearest)
            mask = vrt.read_masks(1, out_shape=(height, width), resampling=Resampling.nearest)
            np.testing.assert_array_equal(rgba, palette_of(vrt)[values])
        # the part west of the scene is transparent, the rest opaque in a class colour
        np.testing.assert_array_equal(rgba[..., 3] == 0, mask == 0)
        assert 0 < (mask == 0).mean() < 0.75
        assert {tuple(p) for p in rgba[mask > 0].reshape(-1, 4)} <= {c.rgba for c in SPEC.classes}


def _export_all_but_2017(ctx, tile, output, label, *voted):
    if label == "2017":
        raise OSError(BROKEN)
    return export_tile(ctx, tile, output, label, *voted)


def test_a_failed_run_shows_the_maps_it_has_and_its_errors(client, scene, checkpoint, finished, tmp_path):
    out = _copy(finished, tmp_path / "out")
    (out / "CBRA_2017_E115N40.tif").unlink()  # verified as missing on resume, exported again, and failing
    report = _run(client, scene, checkpoint, out, tasks=RunTasks(export=_export_all_but_2017))
    assert report.status == "failed" and report.tiles_failed == ["CBRA_2017_E115N40.tif"]
    html = (out / RUN_DIR / "report.html").read_text(encoding="utf-8")
    page = assert_self_contained(html)
    assert [img["alt"] for img in page.images()] == ["2016", "2018"]
    assert "no map: none of its tiles was written" in page.text
    assert BROKEN in page.text and "<b>full</b>" not in html
    for year, img in zip((2016, 2018), page.images(), strict=True):
        rgba = decode(img["src"])
        with rasterio.open(out / f"CBRA_{year}_E115N40.tif") as tif:  # no VRT after a failed run: the tile
            np.testing.assert_array_equal(rgba, palette_of(tif)[tif.read(1, out_shape=rgba.shape[:2])])


class Stop(Exception):
    pass


def _stop(done, total, kind):
    raise Stop


def test_an_interrupted_run_has_a_page_that_says_which_map_it_cannot_read(client, scene, checkpoint, finished,
                                                                           tmp_path):
    out = _copy(finished, tmp_path / "out")
    (out / "CBRA_2016_E115N40.tif").write_bytes(b"not a tiff")
    with pytest.raises(Stop):
        _run(client, scene, checkpoint, out, progress=_stop)
    page = assert_self_contained((out / RUN_DIR / "report.html").read_text(encoding="utf-8"))
    assert "interrupted" in page.text
    assert [img["alt"] for img in page.images()] == ["2017", "2018"]
    assert "quick-look unreadable (1 of 1 tile(s)): RasterioIOError" in page.text
    assert "CBRA_2016_E115N40.tif" in page.text


def test_a_page_that_cannot_be_written_is_a_warning_not_a_lost_report(client, scene, checkpoint, finished,
                                                                        tmp_path, monkeypatch):
    out = _copy(finished, tmp_path / "out")
    (out / RUN_DIR / "report.html").unlink()

    def broken(*_args):
        raise RuntimeError("no room <here>")

    monkeypatch.setattr(run_module, "write_report_html", broken)
    report = _run(client, scene, checkpoint, out)
    assert report.status == "finished"
    note = "report.html: not written (RuntimeError: no room <here>)"
    assert note in report.warnings and f"warning: {note}" in report.summary()
    assert note in json.loads((out / RUN_DIR / "report.json").read_text())["warnings"]
    assert not (out / RUN_DIR / "report.html").exists()
    assert not list((out / RUN_DIR).rglob(".report.html*"))  # nor a temporary of it
