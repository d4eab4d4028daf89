"""Files vs STAC scenes vs the input cache on one synthetic scene: time of each run and how many pixels of
the STAC run's tiles differ from the files' (the composite is rebuilt from uint16 DN, so a few may flip).

    python benchmarks/sources.py [WORK_DIR]

2 × 2 blocks of 1/30°, 2016–2018, the bundled checkpoint, a LocalCluster of 2 worker processes.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import rasterio
import shapely

from mapgen.pipeline.fetch import execute_fetch, prepare_fetch
from mapgen.pipeline.run import execute, local_client, prepare
from mapgen.pipeline.sources import open_inputs
from mapgen.synthetic import generate_scene
from mapgen.synthetic.scenes import write_scene_catalog
from mapgen.workflows import load_product

BLOCK, YEARS, WEST, SOUTH = "1/30", [2016, 2017, 2018], 116.3, 39.5


def region(blocks: int):
    eps = 1e-6
    return shapely.box(WEST + eps, SOUTH + eps, WEST + blocks / 30 - eps, SOUTH + blocks / 30 - eps)


def tiles(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for path in sorted(folder.glob("CBRA_*.tif")):
        with rasterio.open(path) as src:
            out[path.name] = (src.read(1), src.read_masks(1))
    return out


def main(work: Path) -> None:
    product = load_product("cbra")
    scene = work / "scene"
    if not (scene / "catalog.json").exists():
        generate_scene(region(3).bounds, YEARS, scene, seed=11, margin_px=80)
    catalog = write_scene_catalog(scene, work / "scenes", YEARS, per_year=3, seed=5)
    stac = open_inputs(product, str(catalog), YEARS, mask=f"{scene}/{{year}}/built.tif")
    seconds = {}
    with local_client(2) as client:
        for name, source in [("files", str(scene)), ("stac", stac)]:
            started = time.perf_counter()
            ctx, plan = prepare(product, region(2), YEARS, source, work / f"out-{name}", block_size=BLOCK)
            assert not execute(client, ctx, plan).failed
            seconds[f"run from {name}"] = time.perf_counter() - started
        started = time.perf_counter()
        job = prepare_fetch(product, region(2), YEARS, stac, work / "cache", block_size=BLOCK)
        fetched = execute_fetch(client, job)
        seconds[f"fetch from stac ({fetched.megabytes:.1f} MB)"] = time.perf_counter() - started
        started = time.perf_counter()
        ctx, plan = prepare(product, region(2), YEARS, str(work / "cache"), work / "out-cache", block_size=BLOCK)
        assert not execute(client, ctx, plan).failed
        seconds["run from the cache"] = time.perf_counter() - started
    for what, s in seconds.items():
        print(f"{what:34s} {s:7.1f} s")
    files, scenes, cached = tiles(work / "out-files"), tiles(work / "out-stac"), tiles(work / "out-cache")
    for name in files:
        differ = int(((files[name][0] != scenes[name][0]) | (files[name][1] != scenes[name][1])).sum())
        same_cache = bool((scenes[name][0] == cached[name][0]).all() and (scenes[name][1] == cached[name][1]).all())
        print(f"{name}: STAC vs files {differ} of {files[name][0].size} px differ "
              f"({100 * (1 - differ / files[name][0].size):.4f} % equal); cache identical to STAC: {same_cache}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "bench-sources").resolve())
