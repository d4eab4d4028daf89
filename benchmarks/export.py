"""COG export of one tile: `write_tile` against GDAL's COG driver on the same pixels, same options.

    python benchmarks/export.py [--size 13356] [--block 4452] [--repeat 3] [--tmp DIR]

A CBRA-like tile (a sparse binary map: mostly background, towns of small rooftops, a margin without input
data; NumPy, fixed seed) is cut into blocks of `--block` px (3 × 3 for a CBRA tile) stored as .npy files,
and written as one GTiff (tiled 512, uncompressed: GDAL's cheapest source). Each variant runs in its own
process, `--repeat` times, and prints its best time and its peak resident memory (ru_maxrss of that
process, from wait4):

- ours: `write_tile` from the blocks, each block loaded from its file as the run store serves them;
- gdal_translate -of COG from the GTiff (if the binary is on PATH: its own GDAL, maybe another version);
- rasterio.shutil.copy(driver="COG") from the GTiff: GDAL's COG driver through the same library as ours.

Same creation options everywhere: DEFLATE, 512 blocks, BIGTIFF=IF_SAFER, nearest overviews, one thread.
The ratio printed is GDAL's time over ours (the goal: ≥ 0.9).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CODES = "block_{r}_{c}.npy"
OPTIONS = {"COMPRESS": "DEFLATE", "BLOCKSIZE": "512", "BIGTIFF": "IF_SAFER", "OVERVIEW_RESAMPLING": "NEAREST",
           "NUM_THREADS": "1"}


def tile_codes(size: int, seed: int = 0) -> np.ndarray:
    """Class codes of a size² tile: 0 background, 1 rooftop (rectangles of 2–6 px in 6 px cells, dense in a
    few towns of 64 cells), 255 no input data (a western strip and the south-eastern corner)."""
    rng = np.random.default_rng(seed)
    cell = 6
    n = -(-size // cell)
    towns = rng.random((n // 64 + 2, n // 64 + 2)) ** 4
    density = np.kron(towns, np.ones((64, 64)))[:n, :n]
    height = np.where(rng.random((n, n)) < 0.5 * density, rng.integers(2, cell + 1, (n, n)), 0).astype(np.uint8)
    width = rng.integers(2, cell + 1, (n, n)).astype(np.uint8)
    within = (np.arange(size) % cell).astype(np.uint8)
    cols = np.arange(size)
    codes = np.empty((size, size), np.uint8)
    for r0 in range(0, size, 1024):  # by bands of rows, to keep the per-pixel temporaries small
        rows = np.arange(r0, min(r0 + 1024, size))
        h = np.repeat(height[rows // cell], cell, axis=1)[:, :size]
        w = np.repeat(width[rows // cell], cell, axis=1)[:, :size]
        band = ((within[rows, None] < h) & (within[None, :] < w)).astype(np.uint8)
        band[:, : size // 14] = 255
        band[rows[:, None] + cols[None, :] > 1.7 * size] = 255
        codes[rows] = band
    return codes


def prepare(folder: Path, size: int, block: int) -> dict:
    """Write the blocks' codes and the plain GTiff of the same pixels; return what the children need."""
    import rasterio

    from mapgen.pipeline.classes import lookup_table
    from mapgen.pipeline.context import tile_scheme
    from mapgen.pipeline.export import colormap
    from mapgen.tiles import Box
    from mapgen.workflows import load_product

    product = load_product("cbra")
    spec, grid = product.output, tile_scheme(product).output_grid
    extent = Box(50 * 13356, 295 * 13356, size, size)
    codes = tile_codes(size)
    for r in range(0, size, block):
        for c in range(0, size, block):
            np.save(folder / CODES.format(r=r, c=c), codes[r:r + block, c:c + block])
    pixels = lookup_table(spec.values, spec.nodata)[codes]
    shares = {name: float((pixels == v).mean()) for name, v in (("background", 0), ("rooftop", 255),
                                                                 ("nodata", spec.nodata))}
    with rasterio.open(folder / "plain.tif", "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8",
                       crs=grid.crs, transform=grid.transform(extent), nodata=spec.nodata, tiled=True,
                       blockxsize=512, blockysize=512) as dst:
        dst.write(pixels, 1)
        dst.write_colormap(1, colormap(spec))
        dst.set_band_description(1, spec.band_description)
    return {"folder": str(folder), "size": size, "block": block, "extent": [extent.row, extent.col],
            "shares": shares}


def child(variant: str, job: dict, repeat: int) -> None:
    """Run one variant `repeat` times in this process; print its times as JSON."""
    import rasterio
    import rasterio.shutil

    from mapgen.pipeline.context import tile_scheme
    from mapgen.pipeline.export import write_tile
    from mapgen.tiles import Box
    from mapgen.workflows import load_product

    folder, size, block = Path(job["folder"]), job["size"], job["block"]
    times = []
    if variant == "prepare":
        print(json.dumps(prepare(folder, size, block)))
        return
    if variant == "ours":
        product = load_product("cbra")
        grid, row, col = tile_scheme(product).output_grid, *job["extent"]

        def parts():
            for r in range(0, size, block):
                for c in range(0, size, block):
                    codes = np.load(folder / CODES.format(r=r, c=c))
                    yield Box(row + r, col + c, *codes.shape), codes

        for _ in range(repeat):
            start = time.perf_counter()
            write_tile(folder / "ours.tif", grid, Box(row, col, size, size), parts(), product.output,
                       {"PRODUCT": "CBRA", "YEAR": "2016"}, scratch_dir=folder / "scratch")
            times.append(time.perf_counter() - start)
    elif variant == "rasterio":
        for _ in range(repeat):
            start = time.perf_counter()
            with rasterio.Env(GDAL_NUM_THREADS="1"):
                rasterio.shutil.copy(folder / "plain.tif", folder / "rasterio.tif", driver="COG", **OPTIONS)
            times.append(time.perf_counter() - start)
    elif variant != "baseline":  # the imports alone, for the memory
        raise ValueError(variant)
    print(json.dumps(times))


def measured(command: list[str]) -> tuple[float, int, str]:
    """Wall time, peak resident memory (bytes) and stdout of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE)
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{command[:3]} failed with exit code {proc.returncode}")
    return time.perf_counter() - start, usage.ru_maxrss * 1024, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=13356, help="tile side in px (CBRA: 13,356)")
    parser.add_argument("--block", type=int, default=None, help="block side in px (default: size / 3)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the files (default: the system's)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, json.loads(args.job), args.repeat)
        return

    block = args.block or -(-args.size // 3)
    folder = Path(tempfile.mkdtemp(prefix="mapgen-export-", dir=args.tmp))

    def step(name: str, job: dict) -> tuple[float, int, str]:
        return measured([sys.executable, __file__, "--repeat", str(args.repeat), "--child", name,
                         "--job", json.dumps(job)])

    try:
        # every step runs in a process of its own and this one stays small: a child's ru_maxrss counts
        # the memory of the process it was forked from
        job = json.loads(step("prepare", {"folder": str(folder), "size": args.size, "block": block})[2])
        print(f"tile {args.size:,}² px in blocks of {block:,} px; "
              + ", ".join(f"{k} {100 * v:.1f} %" for k, v in job["shares"].items()))
        base = step("baseline", job)[1]
        rows = []
        for name in ("ours", "rasterio"):
            _, peak, out = step(name, job)
            rows.append((name, min(json.loads(out)), peak))
        gdal = shutil.which("gdal_translate")
        if gdal:
            version = subprocess.run([gdal, "--version"], capture_output=True, text=True).stdout.strip()
            runs = [measured([gdal, "-q", "-of", "COG", *[a for k, v in OPTIONS.items() for a in ("-co", f"{k}={v}")],
                              "--config", "GDAL_NUM_THREADS", "1", str(folder / "plain.tif"), str(folder / "gdal.tif")])
                    for _ in range(args.repeat)]
            rows.append(("gdal_translate", min(t for t, _, _ in runs), max(p for _, p, _ in runs)))
        else:
            version = "not found"
        import rasterio

        labels = {"ours": "write_tile (blocks → COG)",
                  "rasterio": f"rasterio.shutil.copy COG (GDAL {rasterio.__gdal_version__})",
                  "gdal_translate": f"gdal_translate -of COG ({version})"}
        print(f"best of {args.repeat}; peak RSS of each process (Python with mapgen's imports alone: "
              f"{base / 1e6:.0f} MB)")
        ours = rows[0][1]
        for name, seconds, peak in rows:
            ratio = "" if name == "ours" else f"   GDAL/ours {seconds / ours:.2f}"
            extra = f" (+{(peak - base) / 1e6:.0f} over the imports)" if name != "gdal_translate" else ""
            print(f"  {labels[name]:<46} {seconds:6.2f} s   peak RSS {peak / 1e6:5.0f} MB{extra}{ratio}")
        with rasterio.open(folder / "ours.tif") as a, rasterio.open(folder / "plain.tif") as b:
            same = np.array_equal(a.read(1), b.read(1))
        sizes = ", ".join(f"{p.stem} {p.stat().st_size / 1e6:.2f} MB" for p in sorted(folder.glob("*.tif"))
                          if p.stem != "plain")
        print(f"same full-resolution pixels as the GTiff: {same}; files: {sizes}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
