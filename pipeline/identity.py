"""What a run is, by content: the product's resolved definition, the checkpoint, the region, the years,
the block size and the resolved identity of every source. A run folder keeps it in its manifest, and a
resume whose identity differs is refused, naming what changed, whatever the working directory or the
names typed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry

from mapgen.workflows import (
    GridSpec,
    InputSpec,
    ModelSpec,
    OutputClass,
    OutputSpec,
    Product,
    StepSpec,
    StitchSpec,
    TaskSpec,
    WindowSpec,
)
from mapgen.workflows.dates import is_year, source_date

from .context import uses_region_name
from .sources import Inputs

FORMAT = 3  # of the manifest; a run folder of another format is refused like any other difference


def product_definition(product: Product) -> dict[str, Any]:
    """The product as the engine interprets it (where it was loaded from is no part of it)."""
    data = asdict(product)
    data.pop("source_file", None)
    if len(product.outputs) == 1 and not product.output.name:  # one map, as the file says it: [output], [[post]]
        (output,) = data.pop("outputs")
        data["post"], data["temporal"], data["output"] = output.pop("post"), output.pop("temporal"), output
    return json.loads(json.dumps(data))  # tuples → lists: what the manifest reads back


def definition_product(definition: dict[str, Any]) -> Product:
    """The Product whose `product_definition` is `definition`: a run's product read back from its manifest,
    whatever the product files say today."""
    raw = definition["outputs"] if "outputs" in definition else [
        {**definition["output"], "post": definition["post"], "temporal": definition["temporal"]}]
    outputs = tuple(OutputSpec(**{**o, "classes": tuple(OutputClass(**c) for c in o["classes"]),
                                  "post": tuple(StepSpec(**s) for s in o["post"]),
                                  "temporal": tuple(StepSpec(**s) for s in o["temporal"])}) for o in raw)
    return Product(name=definition["name"], title=definition["title"], grid=GridSpec(**definition["grid"]),
                   inputs=tuple(InputSpec(**i) for i in definition["inputs"]), model=ModelSpec(**definition["model"]),
                   window=WindowSpec(**definition["window"]), stitch=StitchSpec(**definition["stitch"]),
                   outputs=outputs, task=TaskSpec(**definition["task"]) if definition.get("task") else None,
                   reference=definition.get("reference", ""))


def definition_digest(definition: dict[str, Any]) -> str:
    """The sha256 a manifest records of its product definition."""
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()


def region_digest(region: BaseGeometry) -> str:
    return hashlib.sha256(shapely.normalize(region).wkb).hexdigest()


def run_identity(product: Product, region: BaseGeometry, dates: Sequence[str], block_size: str,
                 checkpoint_sha256: str, inputs: Inputs, region_name: str = "") -> dict[str, Any]:
    definition = product_definition(product)
    dates = [str(d) for d in dates]
    # every date some input is read at (a fixed epoch, a series) identifies the run's data
    read = {source_date(d) for spec in product.inputs for d in spec.read_dates(tuple(dates))}
    annual = all(is_year(d) for d in dates)
    return {
        "format": FORMAT,
        "product": {"name": product.name,
                    "sha256": definition_digest(definition),
                    "definition": definition},
        "checkpoint_sha256": checkpoint_sha256,
        "region_sha256": region_digest(region),
        # the region's name, where it names the mosaics or chooses the checkpoint (UGS)
        **({"region_name": region_name} if uses_region_name(product) else {}),
        **({"years": [int(d) for d in dates]} if annual else {}),
        "dates": dates,
        "block_size": block_size,
        "inputs": json.loads(json.dumps(inputs.identity(sorted(read, key=str)))),
    }


def changes(old: Any, new: Any, where: str = "") -> list[str]:
    """Readable paths where two identities differ, e.g. 'product definition post 0 threshold (0.5 → 0.9)'."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new), key=str):
            if key == "sha256" and "definition" in old and "definition" in new:
                continue  # the definition itself says what changed
            found += changes(old.get(key), new.get(key), f"{where} {key}".strip())
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        found = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            found += changes(a, b, f"{where} {i}")
        return found
    if old != new:
        return [f"{where} ({_short(old)} → {_short(new)})"]
    return []


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:30] + "…" + text[-45:]
