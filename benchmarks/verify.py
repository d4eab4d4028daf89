"""What a resume pays to trust a finished block: reading one 0.1° CBRA block's voted maps (4452² px, six
years) back from a run store and checking them against their markers' sha256, beside the read alone.

    python benchmarks/verify.py
"""

from __future__ import annotations

import tempfile
import time

import numpy as np

from mapgen.pipeline.context import tile_scheme
from mapgen.pipeline.store import RunStore, digest
from mapgen.tiles import Box
from mapgen.workflows import load_product


def main() -> None:
    scheme = tile_scheme(load_product("cbra"))
    n = scheme.block_px * scheme.scale
    years = tuple(range(2016, 2022))
    box = Box(0, 0, n, n)
    rng = np.random.default_rng(0)
    # a sparse map of 2.5 m rooftops (~7 % foreground in 10 m cells), compressed like a real one
    cells = rng.random((-(-n // scheme.scale),) * 2) < 0.07
    codes = cells.repeat(scheme.scale, 0).repeat(scheme.scale, 1)[:n, :n].astype(np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        store = RunStore.open(f"{folder}/store.zarr", box, years, n)
        sha = {}
        for year in years:
            store.write("final", year, box, codes)
            sha[year] = digest(codes)
        started = time.perf_counter()
        assert all(store.matches("final", box, year, sha[year]) for year in years)
        verify = time.perf_counter() - started
        started = time.perf_counter()
        for year in years:
            store.read("final", box, year)
        read = time.perf_counter() - started
    blocks = 97_226  # China, from `mapgen plan --product cbra --years 2016-2021 --region examples/china.geojson`
    print(f"one block, {len(years)} years of {n}² px: verify {verify:.3f} s (read and decode {read:.3f} s, "
          f"sha256 {verify - read:.3f} s)")
    print(f"all of China ({blocks:,} blocks): {blocks * verify / 3600:.1f} worker-hours")


if __name__ == "__main__":
    main()
