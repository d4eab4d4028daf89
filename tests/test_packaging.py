"""Every code folder is shipped: an editable install would hide a subpackage missing from the wheel."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = {"files": "mapgen.files", "tiles": "mapgen.tiles", "models": "mapgen.models", "workflows": "mapgen.workflows",
        "pipeline": "mapgen.pipeline", "synthetic": "mapgen.synthetic", "training": "mapgen.training",
        "cli": "mapgen.cli"}


def test_every_package_is_listed_for_the_wheel():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for folder, name in CODE.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *parts)))
    assert found == listed


def test_product_files_and_checkpoints_are_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "*.toml" in config["mapgen.workflows.products"]
    assert any(p.endswith(".safetensors") for p in config["mapgen.models"])
    assert list((ROOT / "models" / "checkpoints").glob("*.safetensors")), "no bundled checkpoint"
