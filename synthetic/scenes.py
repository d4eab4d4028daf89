"""Sentinel-2 L2A-like scenes behind each yearly composite, as a static STAC catalog in Earth Search's
layout (assets blue, green, red, nir, scl; uint16 DN with raster:bands scale; eo:cloud_cover).

Each year has `per_year` usable scenes whose clear pixels hold the composite's DN and whose clouds and
shadows are flagged in SCL, so the cloud-masked median of the year is the composite again (to the DN's
1e-4 rounding). One scene a year covers only part of the scene, and one more is a hazy scene above the
cloud limit whose haze SCL misses: only the eo:cloud_cover filter keeps it out.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pystac
import rasterio
from affine import Affine

from .cog import write_cog
from .fields import value_noise

BANDS = (("blue", "B02"), ("green", "B03"), ("red", "B04"), ("nir", "B08"))
SCL_CLEAR, SCL_SHADOW, SCL_CLOUD = 4, 3, 9
COLLECTION = "sentinel-2-l2a"


def _blobs(rng: np.random.Generator, shape: tuple[int, int], share: float) -> np.ndarray:
    """A boolean field of smooth blobs covering about `share` of the area."""
    field = value_noise(rng, shape, [max(shape) / 12, max(shape) / 30], [1.0, 0.5])
    return field > np.quantile(field, 1 - share)


def _write(path: Path, data: np.ndarray, transform: Affine, names: list[str], nodata: int) -> None:
    write_cog(path, data, transform, descriptions=names, nodata=nodata, resampling="nearest")


def write_scene_catalog(scene_dir: str | Path, out_dir: str | Path, years: list[int], *, per_year: int = 3,
                        seed: int = 0) -> Path:
    """Write scenes for `scene_dir/{year}/s2.tif` under `out_dir` with a static catalog; returns its path."""
    scene_dir, out_dir = Path(scene_dir), Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if per_year < 1:
        raise ValueError(f"per_year must be at least 1, got {per_year}")
    catalog = pystac.Catalog(id="mapgen-synthetic-scenes", title="Synthetic Sentinel-2 L2A-like scenes",
                             description="Cloudy scenes behind the synthetic composites (mapgen synth --scenes)")
    collection = pystac.Collection(
        id=COLLECTION, description="Synthetic Sentinel-2 L2A-like scenes", license="CC0-1.0",
        extent=pystac.Extent(pystac.SpatialExtent([[-180, -90, 180, 90]]),
                             pystac.TemporalExtent([[dt.datetime(min(years), 1, 1, tzinfo=dt.UTC), None]])))
    catalog.add_child(collection)
    for year in years:
        rng = np.random.default_rng([int(seed), int(year)])
        with rasterio.open(scene_dir / str(year) / "s2.tif") as src:
            refl, transform = src.read(), src.transform
            w, s, e, n = src.bounds
        valid = np.isfinite(refl).all(axis=0)
        dn = np.where(valid, np.clip(np.round(np.nan_to_num(refl) * 10000), 1, 65535), 0).astype(np.uint16)
        h, wd = valid.shape
        footprint = np.ones((h, wd), bool)
        footprint[:, int(wd * 0.6):] = False  # the last usable scene covers only the west 60 %
        scenes = []
        for k in range(per_year):
            cloud = _blobs(rng, (h, wd), rng.uniform(0.08, 0.18))
            shadow = np.roll(cloud, (h // 40, wd // 40), axis=(0, 1)) & ~cloud
            covered = footprint if k == per_year - 1 and per_year > 1 else np.ones_like(footprint)
            scenes.append([cloud & covered, shadow & covered, covered, np.zeros((h, wd), bool)])
        hidden = np.logical_and.reduce([cloud | shadow | ~covered for cloud, shadow, covered, _ in scenes])
        scenes[0][0] &= ~hidden  # every pixel is seen clear by at least one usable scene
        scenes[0][1] &= ~hidden
        haze = _blobs(rng, (h, wd), 0.6)
        scenes.append((np.zeros((h, wd), bool), np.zeros((h, wd), bool), np.ones((h, wd), bool), haze))
        for k, (cloud, shadow, covered, hazy) in enumerate(scenes):
            day = dt.datetime(year, 2 + 3 * k % 11, 10 + k, 2, 30, tzinfo=dt.UTC)
            item_id = f"S2X_SYN_{day:%Y%m%d}_{k}_L2A"
            item_dir = out_dir / str(year) / item_id
            item_dir.mkdir(parents=True, exist_ok=True)
            data = dn.astype(np.float32)
            bright = rng.uniform(5000, 9000, size=(1, h, wd)).astype(np.float32)
            data = np.where(cloud, bright, data)
            data = np.where(shadow, data * 0.35, data)
            data = np.where(hazy, data + 1800, data)
            data = np.where(covered & valid, np.clip(np.round(data), 1, 65535), 0).astype(np.uint16)
            scl = np.full((h, wd), SCL_CLEAR, np.uint8)
            scl[shadow] = SCL_SHADOW
            scl[cloud] = SCL_CLOUD
            scl[~(covered & valid)] = 0
            cloud_cover = float(100 * (cloud | hazy)[covered].mean())  # as S2: shadows are not counted
            cols = np.flatnonzero(covered.any(axis=0))
            east = w + (cols[-1] + 1) * transform.a
            item = pystac.Item(id=item_id, geometry={"type": "Polygon", "coordinates": [[
                [w, s], [east, s], [east, n], [w, n], [w, s]]]}, bbox=[w, s, east, n], datetime=day,
                properties={"eo:cloud_cover": round(cloud_cover, 2), "platform": "sentinel-2x",
                            "constellation": "sentinel-2", "mapgen:synthetic": True},
                collection=COLLECTION)
            for i, (key, name) in enumerate(BANDS):
                _write(item_dir / f"{name}.tif", data[i], transform, [name], 0)
                item.add_asset(key, pystac.Asset(
                    href=str(item_dir / f"{name}.tif"), media_type=pystac.MediaType.COG, roles=["data"],
                    extra_fields={"raster:bands": [{"nodata": 0, "data_type": "uint16", "scale": 0.0001,
                                                    "offset": 0.0}]}))
            _write(item_dir / "SCL.tif", scl, transform, ["SCL"], 0)
            item.add_asset("scl", pystac.Asset(
                href=str(item_dir / "SCL.tif"), media_type=pystac.MediaType.COG, roles=["data"],
                extra_fields={"raster:bands": [{"nodata": 0, "data_type": "uint8"}]}))
            collection.add_item(item)
    catalog.normalize_hrefs(str(out_dir))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return out_dir / "catalog.json"
