"""Shared fixtures: a real two-process LocalCluster, a small synthetic scene, a tiny checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import shapely

# A run in the tests uses blocks of 1/30° (371 input px) instead of CBRA's 0.1°, so that a region of
# a few blocks stays small; everything else is the CBRA product as shipped.
TEST_BLOCK = "1/30"
WEST, SOUTH = 116.3, 39.5  # on the 0.1° block lattice, so 3 × 3 test blocks make one CBRA block
YEARS = [2016, 2017, 2018]
# Where a test needs STSR-Seg's code but not its accuracy: 1/8 of the bundled configuration's cost.
TINY_CONFIG = dict(sr_features=4, sr_blocks=2, encoder_depth=18, encoder_width=2, temporal_dim=16)


def region_box(cols: int = 2, rows: int = 2, west: float = WEST, south: float = SOUTH):
    """A region of exactly cols × rows test blocks (inset a hair so neighbours only touch it)."""
    eps = 1e-6
    return shapely.box(west + eps, south + eps, west + cols / 30 - eps, south + rows / 30 - eps)


def write_region(path: Path, geometry) -> Path:
    path.write_text(json.dumps({"type": "Feature", "properties": {},
                                "geometry": shapely.geometry.mapping(geometry)}))
    return path


@pytest.fixture(scope="session")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="session")
def scene(tmp_path_factory) -> Path:
    from mapgen.synthetic import generate_scene

    out = tmp_path_factory.mktemp("scene")
    generate_scene(region_box(3, 3).bounds, YEARS, out, seed=11, margin_px=80)
    return out


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    from mapgen.models import STSRSegConfig, init_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    init_checkpoint(STSRSegConfig(**TINY_CONFIG), path, seed=3)
    return path


@pytest.fixture(scope="session")
def region_file(tmp_path_factory) -> Path:
    return write_region(tmp_path_factory.mktemp("region") / "region.geojson", region_box())


# --- refusals (invariant 8), shared by every test file of bad input ---

GOOD_TILE = b"a tile from an earlier run"


@pytest.fixture()
def out(tmp_path) -> Path:
    """An output folder that already holds a finished tile, which a refusal must leave alone."""
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "CBRA_2015_E115N40.tif").write_bytes(GOOD_TILE)
    return folder


def invoke(args: list[str], env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Exit code and the non-blank lines on stderr of `mapgen ARGS`."""
    from click.testing import CliRunner

    from mapgen.cli import main

    result = CliRunner(env=env).invoke(main, args)
    return result.exit_code, [line for line in result.stderr.splitlines() if line.strip()]


def run_args(region, source, out, checkpoint, years="2016-2018", product="cbra") -> list[str]:
    return ["run", "--product", product, "--years", years, "--region", str(region), "--source", str(source),
            "--out", str(out), "--checkpoint", str(checkpoint), "--block-size", TEST_BLOCK, "--no-progress"]


def assert_refused(args: list[str], out: Path, *phrases: str, env: dict[str, str] | None = None) -> str:
    """`mapgen ARGS` exits 2 with one line holding every phrase, and `out` is as it was; returns the line."""
    before = sorted(p.name for p in out.rglob("*"))
    code, lines = invoke(args, env)
    assert code == 2, lines
    assert len(lines) == 1, lines
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    assert sorted(p.name for p in out.rglob("*")) == before  # nothing started, nothing lost
    assert (out / "CBRA_2015_E115N40.tif").read_bytes() == GOOD_TILE
    return lines[0]
