"""Training scenes in memory, and the normalisation the network sees (the product's, never a copy)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from mapgen.pipeline.normalise import normalise

Bounds = tuple[float, float, float, float]
Log = Callable[[str], None]


@dataclass(frozen=True)
class Normalisation:
    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_product(cls, name: str = "cbra") -> Normalisation:
        # Read from the product file, so that training and inference cannot drift apart.
        from mapgen.workflows import load_product

        image = load_product(name).image_input
        if image.mean is None or image.std is None:
            raise ValueError(f"product {name}: the image input has no mean/std to normalise with")
        return cls(tuple(image.bands), tuple(image.mean), tuple(image.std))

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """(C, H, W) or (N, C, H, W) reflectance → z-scores; a pixel with any band missing → 0 in all bands
        (the engine's `mapgen.pipeline.normalise.normalise`)."""
        return normalise(pixels, self.mean, self.std)

    def to_dict(self) -> dict[str, Any]:
        return {"bands": list(self.bands), "mean": list(self.mean), "std": list(self.std),
                "missing": "a pixel with any band missing is 0 in every band after normalising"}


@dataclass(frozen=True)
class SceneYear:
    """One year of a synthetic scene: the network's input and both references."""

    name: str
    year: int
    s2: np.ndarray  # (4, H, W) float32 reflectance, NaN where there is no data
    built: np.ndarray  # (H, W) float32 Dynamic-World-like built probability (the low-resolution reference)
    rooftops: np.ndarray  # (sH, sW) uint8, 1 = rooftop (the high-resolution reference)


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def scene_info(scene_dir: str | Path) -> dict[str, Any]:
    """The generator's record of a scene (synth.json): seed, bounds, years, version."""
    return json.loads((Path(scene_dir) / "synth.json").read_text())


def scene_record(scene_dir: str | Path) -> dict[str, Any]:
    """What a checkpoint records of a scene it was trained or evaluated on."""
    info = scene_info(scene_dir)
    return {"seed": info["seed"], "bounds": info["bounds"], "years": info["years"],
            "margin_px": info["margin_px"], "generator_version": info["version"]}


def load_scene(scene_dir: str | Path, years: Sequence[int] | None = None) -> list[SceneYear]:
    scene_dir = Path(scene_dir)
    info = scene_info(scene_dir)
    scale = int(info["scale"])
    out = []
    for year in years if years is not None else info["years"]:
        ydir = scene_dir / str(year)
        s2 = _read(ydir / "s2.tif").astype(np.float32, copy=False)
        built = _read(ydir / "built.tif")[0].astype(np.float32, copy=False)
        rooftops = (_read(ydir / "rooftops.tif")[0] > 0).astype(np.uint8)
        if rooftops.shape != (s2.shape[1] * scale, s2.shape[2] * scale):
            raise ValueError(f"scene {scene_dir} {year}: rooftops {rooftops.shape} are not {scale}× s2 "
                             f"{s2.shape[1:]}")
        out.append(SceneYear(scene_dir.name, int(year), s2, built, rooftops))
    return out


def rooftop_share_in_built(scene_dirs: Sequence[str | Path], *, built_threshold: float = 0.5
                           ) -> tuple[float, float]:
    """μ and σ of the rooftop share of built 10 m pixels, pooled over every year of the scenes.

    This is the SG loss's reference Gaussian "statistically obtained from our training set where both
    the high-resolution and low-resolution references are available" (CBRA §4.3, Fig. A3): per 10 m
    pixel whose built probability is ≥ built_threshold, the share of its s×s pixels that are rooftop.
    """
    n, total, squares = 0, 0.0, 0.0
    for scene_dir in scene_dirs:
        info = scene_info(scene_dir)
        s = int(info["scale"])
        for year in info["years"]:
            ydir = Path(scene_dir) / str(year)
            built = np.nan_to_num(_read(ydir / "built.tif")[0], nan=0.0) >= built_threshold
            h, w = built.shape
            roofs = _read(ydir / "rooftops.tif")[0] > 0
            share = roofs.reshape(h, s, w, s).mean(axis=(1, 3))[built]
            n += share.size
            total += float(share.sum())
            squares += float(np.square(share).sum())
    if n == 0:
        raise ValueError("no built pixels in the training scenes: cannot measure the SG reference")
    mean = total / n
    return mean, float(np.sqrt(max(squares / n - mean * mean, 0.0)))


def ensure_scene(out_dir: Path, bounds: Bounds, years: Sequence[int], seed: int, margin_px: int,
                 log: Log = print) -> Path:
    """Generate a scene unless the directory already holds this very one; refuse a different one."""
    from mapgen.synthetic import generate_scene

    if (out_dir / "synth.json").is_file():
        info = scene_info(out_dir)
        same = (info["seed"] == seed and info["years"] == list(years) and info["margin_px"] == margin_px
                and np.allclose(info["bounds"], bounds, atol=1e-9))
        if not same:
            raise ValueError(f"{out_dir} holds another scene (seed {info['seed']}, bounds {info['bounds']}); "
                             "remove it or choose another scenes folder")
        log(f"scene {out_dir}: present (seed {seed})")
        return out_dir
    started = time.perf_counter()
    generate_scene(bounds, years, out_dir, seed=seed, margin_px=margin_px)
    log(f"scene {out_dir}: generated (seed {seed}, {bounds}) in {time.perf_counter() - started:.0f} s")
    return out_dir


# Training regions away from the demo (examples/demo.geojson, 116.3–116.5 E, 39.9–40.1 N) and from each
# other, at several latitudes so that the metric size of a pixel varies between scenes; cycled over seeds.
DEFAULT_TRAIN_BOUNDS: tuple[Bounds, ...] = (
    (110.0, 30.0, 110.1, 30.1),
    (113.0, 35.0, 113.1, 35.1),
    (120.0, 44.0, 120.1, 44.1),
    (104.0, 26.0, 104.1, 26.1),
)
DEFAULT_EVAL_BOUNDS: Bounds = (118.0, 37.0, 118.1, 37.1)


def scenes_from_seeds(root: Path, seeds: Sequence[int], years: Sequence[int], *, bounds: Sequence[Bounds] = (),
                      prefix: str = "train", margin_px: int = 128, log: Log = print) -> list[Path]:
    """root/{prefix}-{seed} for every seed, generated unless already there; regions cycle over `bounds`."""
    bounds = list(bounds) or list(DEFAULT_TRAIN_BOUNDS)
    return [ensure_scene(root / f"{prefix}-{seed}", bounds[i % len(bounds)], years, seed, margin_px, log)
            for i, seed in enumerate(seeds)]
