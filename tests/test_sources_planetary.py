"""Planetary Computer: a static catalog on disk in its layout (assets B02…B08/SCL in Azure Blob Storage,
ESA's DN with the BOA offset), signed with the real `planetary-computer` package against a local SAS
endpoint, and read by pystac + odc-stac + GDAL from a local stand-in for blob storage that serves a blob
only to the token issued for its container (tests/fake_pc.py)."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import planetary_computer.sas
import pytest
from conftest import YEARS, assert_refused, region_box, run_args
from fake_pc import BLOB, BlobStorage, SasService
from planetary_computer.settings import Settings

from mapgen.pipeline.sources import FileSource, SourceError, StacScenes, WorldCoverSource, open_inputs
from mapgen.pipeline.sources import stac as stac_module
from mapgen.pipeline.sources.planetary import PC_STAC
from mapgen.synthetic.planetary import ACCOUNT, CONTAINER, write_planetary_catalog
from mapgen.synthetic.scenes import write_scene_catalog
from mapgen.synthetic.worldcover import BUILT_UP, NO_DATA, classes_at, write_worldcover_catalog
from mapgen.tiles import Grid
from mapgen.workflows import load_product

CBRA = load_product("cbra")
S2, BUILT = CBRA.input("s2"), CBRA.input("built")
GRID = Grid(Fraction(1, 11130))
BOUNDS = region_box(3, 3).bounds
TWO_YEARS = YEARS[:2]
DN_STEP = 1e-4


@pytest.fixture(scope="module")
def blob_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("blob")


@pytest.fixture(scope="module")
def pc_scenes(scene, blob_root, tmp_path_factory) -> Path:
    return write_planetary_catalog(scene, tmp_path_factory.mktemp("pc-scenes"), blob_root, TWO_YEARS, per_year=3,
                                   seed=5)


@pytest.fixture(scope="module")
def services(blob_root, tmp_path_factory):
    """The SAS endpoint and blob storage, with `planetary_computer` and GDAL pointed at them."""
    sas = SasService()
    blob = BlobStorage(blob_root, sas, tmp_path_factory.mktemp("tls"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Settings.get(), "sas_url", sas.url)
        for key, value in blob.env().items():
            mp.setenv(key, value)
        yield sas, blob
    sas.close()
    blob.close()


@pytest.fixture()
def pc(services, monkeypatch):
    """Each test starts with no token cached and nothing recorded."""
    sas, blob = services
    monkeypatch.setattr(planetary_computer.sas, "TOKEN_CACHE", {})
    sas.requests.clear()
    sas.tokens.clear()
    sas.refuse = False
    blob.served.clear()
    stac_module._static_items.cache_clear()
    return sas, blob


def _composite(scene: Path, year: int, box) -> np.ndarray:
    return FileSource("s2", {year: str(scene / str(year) / "s2.tif")}).read(S2, year, GRID, box)


def test_the_catalog_is_shaped_like_planetary_computers(pc_scenes):
    items = list(StacScenes(str(pc_scenes)).search(BOUNDS, TWO_YEARS[0]))
    assert len(items) == 3
    for item in items:
        assert item.collection_id == "sentinel-2-l2a" and item.properties["s2:processing_baseline"] == "05.10"
        assert {"B02", "B03", "B04", "B08", "SCL"} <= set(item.assets)
        for asset in item.assets.values():
            assert asset.href.startswith(f"https://{ACCOUNT}{BLOB}/{CONTAINER}/") and "?" not in asset.href
            assert "raster:bands" not in asset.extra_fields  # ESA's DN as they are: no scale, no offset


def test_signed_scenes_give_the_composite(pc, scene, pc_scenes):
    sas, blob = pc
    src = open_inputs(CBRA, str(pc_scenes), TWO_YEARS, mask="none").source("s2")
    assert isinstance(src, StacScenes) and src.signed  # assets in blob storage: signed without being asked
    coverage = src.check(S2, TWO_YEARS, BOUNDS)
    assert set(coverage) == set(TWO_YEARS) and all(v > 0.99 for v in coverage.values())
    box = GRID.box(region_box(2, 2).bounds)
    for year in TWO_YEARS:
        got = src.read(S2, year, GRID, box)
        assert np.isfinite(got).all()
        assert np.abs(got - _composite(scene, year, box)).max() <= DN_STEP / 2 + 1e-6
    assert set(sas.requests) == {(ACCOUNT, CONTAINER)}  # one container, one token: the cache is used
    assert len(sas.requests) == 1
    assert blob.served and {status for _, _, status in blob.served} == {200}
    assert {host for host, _, _ in blob.served} == {f"{ACCOUNT}{BLOB}"}


def test_without_the_boa_offset_the_composite_is_a_tenth_too_bright(pc, scene, pc_scenes, monkeypatch):
    monkeypatch.setattr(stac_module, "BOA_OFFSET", 0.0)
    box = GRID.box(region_box(1, 1).bounds)
    got = StacScenes(str(pc_scenes)).read(S2, TWO_YEARS[0], GRID, box)
    assert np.allclose(got - _composite(scene, TWO_YEARS[0], box), 0.1, atol=DN_STEP)


def test_an_unsigned_read_is_refused_in_one_line(pc, pc_scenes):
    sas, blob = pc
    src = StacScenes(str(pc_scenes), sign=False)
    with pytest.raises(SourceError) as info:
        src.check(S2, TWO_YEARS, BOUNDS)
    line = str(info.value)
    for phrase in (f"STAC {pc_scenes}: item S2X_SYN_", f"https://{ACCOUNT}{BLOB}/{CONTAINER}/", "B02.tif: HTTP 409",
                   "the asset needs signing with a Planetary Computer SAS token"):
        assert phrase in line, line
    assert "\n" not in line and not sas.requests
    with pytest.raises(OSError, match=r"\.tif \(or another of its \d+ assets read\): HTTP 409.*needs signing") as info:
        src.read(S2, TWO_YEARS[0], GRID, GRID.box(region_box(1, 1).bounds))
    assert "\n" not in str(info.value)


def test_a_refused_token_is_one_line_before_any_work(pc, scene, pc_scenes, region_file, checkpoint, out):
    sas, _ = pc
    sas.refuse = True
    args = run_args(region_file, pc_scenes, out, checkpoint, years="2016-2017") + ["--mask", "none"]
    line = assert_refused(args, out, f"STAC {pc_scenes}", "Planetary Computer refused a SAS token for "
                          f"{ACCOUNT}/{CONTAINER} (HTTP 403 from {sas.url})", "PC_SDK_SUBSCRIPTION_KEY")
    assert sas.requests == [(ACCOUNT, CONTAINER)]  # asked once, no retries on a refusal
    assert "sig=" not in line


def test_a_catalog_saved_with_expired_tokens_is_refused_without_showing_them(pc, pc_scenes, tmp_path):
    sas, _ = pc
    shutil.copytree(pc_scenes.parent, tmp_path / "saved")
    stale = "st=2023-01-01T00%3A00%3A00Z&se=2023-01-02T00%3A00%3A00Z&sp=rl&sv=2021-06-08&sr=c&sig=c3RhbGU%3D"
    for path in (tmp_path / "saved").rglob("S2X_*.json"):
        data = json.loads(path.read_text())
        for asset in data["assets"].values():
            asset["href"] += "?" + stale
        path.write_text(json.dumps(data))
    src = StacScenes(str(tmp_path / "saved" / "catalog.json"))
    with pytest.raises(SourceError, match="HTTP 403, the storage refused the SAS token") as info:
        src.check(S2, TWO_YEARS, BOUNDS)
    assert "sig=" not in str(info.value) and "\n" not in str(info.value)


def test_which_catalogs_are_signed(scene, tmp_path):
    assert StacScenes(PC_STAC).signed
    assert not StacScenes("https://earth-search.aws.element84.com/v1").signed
    assert not StacScenes(str(write_scene_catalog(scene, tmp_path, TWO_YEARS[:1], per_year=1))).signed
    assert WorldCoverSource().signed  # the default: Planetary Computer's esa-worldcover


def test_worldcover_from_blob_storage_is_signed_and_read(pc, blob_root, tmp_path):
    sas, blob = pc
    bounds = (116.985, 38.985, 117.015, 39.015)
    catalog = write_worldcover_catalog(tmp_path / "wc", bounds, blob_root=blob_root)
    src = WorldCoverSource.parse(f"worldcover:{catalog}")
    assert src.signed
    assert set(src.check(BUILT, [2020, 2021], bounds).values()) == {1.0}
    box = GRID.box((116.99, 38.99, 117.01, 39.01))
    got = src.read(BUILT, 2021, GRID, box)[0]
    t = GRID.transform(box)
    lon, lat = np.meshgrid(t.c + t.a * (np.arange(box.width) + 0.5), t.f + t.e * (np.arange(box.height) + 0.5))
    cls = classes_at(lon, lat, 2021)
    assert (np.nan_to_num(got, nan=-1) == np.where(cls == NO_DATA, -1, cls == BUILT_UP)).mean() > 0.99
    assert set(sas.requests) == {("ai4edataeuwest", "esa-worldcover")}
    assert {status for _, _, status in blob.served} == {200}
