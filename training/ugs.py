"""Training UGSNet on synthetic cities (UGS-1m §4.1) and adapting it to one city (§4.2).

- `train_ugs`: L = Dice(coarse) + CE(points) (Eq. 1–3, 1:1), Adam at 1e-4, constant for the first half of
  the steps and then falling linearly to 0 (the paper: 200 epochs, "decline linearly in the last 100"),
  random crops inside the urban boundary (UGSet was cut from the GUB-2018 urban areas), flips and
  rotations by quarter turns.
- `adapt_ugs`: the adversarial adaptation of Eq. 4–6 with AdaptSegNet's semantics: the discriminator learns
  to tell the softmax of the coarse map of source scenes (labelled) from that of the city's own imagery
  (unlabelled); the generator keeps L_ugs on the source and learns to make the city's maps look like the
  source's (L_adv, weight 1 as the paper writes it).

Both are seeded and resumable like STSR-Seg's trainer (the state beside the output, hash-checked) and write
safetensors with a JSON sidecar.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from shapely.geometry.base import BaseGeometry

from mapgen.models import save_checkpoint
from mapgen.models.losses import adversarial_loss, discriminator_loss, ugs_loss
from mapgen.models.ugsnet import FCDiscriminator, UGSNet, UGSNetConfig
from mapgen.pipeline import classes
from mapgen.pipeline.metrics import Confusion
from mapgen.pipeline.normalise import normalise
from mapgen.pipeline.scoring import product_codes, stitched_confidence
from mapgen.pipeline.sources import open_inputs
from mapgen.pipeline.windows import WindowLattice
from mapgen.tiles import Box, Grid
from mapgen.workflows import Product, load_product
from mapgen.workflows.dates import source_date

from .trainer import TrainingError, load_state, save_state, state_path, torch_threads

Log = Callable[[str], None]
PRODUCT = "ugs"


# --------------------------------------------------------------------------------------------------
# Scenes and crops

# Synthetic cities to train on (cycled over the seeds) and the held-out one: places far apart and far from
# the README's demo city, each about 3.3 × 3.3 km (3,000² px at the product's lattice).
DEFAULT_TRAIN_BOUNDS: tuple[tuple[float, float, float, float], ...] = (
    (114.05, 22.55, 114.08, 22.58), (120.10, 30.25, 120.13, 30.28), (104.05, 30.63, 104.08, 30.66),
    (117.18, 39.10, 117.21, 39.13), (108.93, 34.25, 108.96, 34.28), (126.60, 45.74, 126.63, 45.77))
DEFAULT_EVAL_BOUNDS = (112.95, 28.18, 112.98, 28.21)
DEFAULT_DATE = "2021"


def ensure_ugs_scene(out_dir: Path, bounds: tuple[float, float, float, float], date: str, seed: int,
                     style: str = "auto", log: Log = print) -> Path:
    """The synthetic city of these arguments in `out_dir`, generated unless it is there already (the
    generator is deterministic: the same arguments give the same files)."""
    from mapgen.synthetic.ugs import generate_ugs_scene

    info = out_dir / "synth.json"
    if info.is_file():
        found = json.loads(info.read_text())
        if (found.get("seed"), [round(v, 9) for v in found.get("bounds", [])], found.get("dates"),
                found.get("style", {}).get("requested", style)) == (seed, [round(v, 9) for v in bounds], [date],
                                                                    style):
            return out_dir
        raise TrainingError(f"{out_dir} holds another scene (seed {found.get('seed')}, bounds {found.get('bounds')}); "
                            "give another --scenes-dir or remove it")
    log(f"generating city seed {seed} over {bounds} ({style} style) in {out_dir}")
    generate_ugs_scene(bounds, date, out_dir, seed=seed, style=style)
    return out_dir


def ugs_scenes_from_seeds(root: Path, seeds: Sequence[int], *, bounds: Sequence[tuple[float, float, float, float]]
                          = (), date: str = DEFAULT_DATE, log: Log = print) -> list[Path]:
    """One synthetic city per seed under `root` (made if missing), the bounds cycled over the seeds."""
    places = list(bounds) or list(DEFAULT_TRAIN_BOUNDS)
    return [ensure_ugs_scene(root / f"ugs-{seed}", places[i % len(places)], date, seed, log=log)
            for i, seed in enumerate(seeds)]


@dataclass(frozen=True)
class UrbanScene:
    """One synthetic city at one date: RGB (3, H, W) uint8, UGS truth and urban boundary (H, W) bool."""

    path: Path
    rgb: np.ndarray
    truth: np.ndarray
    urban: np.ndarray
    record: dict[str, Any]


def _read(path: Path) -> tuple[np.ndarray, Any]:
    with rasterio.open(path) as src:
        return src.read(), (src.transform, src.crs, src.width, src.height)


def load_ugs_scene(scene_dir: str | Path) -> UrbanScene:
    """A scene made by `mapgen synth --product ugs`: its RGB, truth and boundary rasters on one lattice."""
    root = Path(scene_dir)
    info_path = root / "synth.json"
    if not info_path.is_file():
        raise TrainingError(f"{root}: not a UGS scene (no synth.json); make one with mapgen synth --product ugs")
    info = json.loads(info_path.read_text())
    if info.get("product") != PRODUCT:
        raise TrainingError(f"{root}: a scene of product {info.get('product', 'cbra')!r}, not ugs")
    (date,) = info["dates"]
    rgb, where = _read(root / str(date) / "rgb.tif")
    truth, where_truth = _read(root / info["truth"]["ugs"][str(date)])
    urban, where_urban = _read(root / info["boundary"]["raster"])
    if not where == where_truth == where_urban:
        raise TrainingError(f"{root}: the RGB, truth and boundary rasters are not on one grid")
    record = {"path": str(root.resolve()), "seed": info.get("seed"), "style": info.get("style", {}).get("name"),
              "bounds": info.get("bounds"), "generator": info.get("generator")}
    return UrbanScene(root, rgb, truth[0] > 0, urban[0] > 0, record)


@dataclass(frozen=True)
class CropConfig:
    size: int = 256  # the paper's GF-2 patches are 512²; 256² keeps a CPU step short
    min_urban: float = 0.75  # share of a crop inside the urban boundary (UGSet was cut from urban areas)
    stride: int = 16  # crop origins are drawn from this lattice
    augment: bool = True  # flips and quarter turns ("random crop, flip and rotation")


def crop_origins(urban: np.ndarray, size: int, min_share: float, stride: int) -> np.ndarray:
    """(N, 2) top-left corners (row, col) on a `stride` lattice of the `size`² crops with at least
    `min_share` of their pixels inside the boundary."""
    h, w = urban.shape
    if h < size or w < size:
        return np.zeros((0, 2), dtype=np.int64)
    integral = np.pad(urban.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    rows = np.arange(0, h - size + 1, stride)
    cols = np.arange(0, w - size + 1, stride)
    r, c = np.meshgrid(rows, cols, indexing="ij")
    inside = integral[r + size, c + size] - integral[r, c + size] - integral[r + size, c] + integral[r, c]
    keep = inside >= min_share * size * size
    return np.stack([r[keep], c[keep]], axis=1)


class CropSampler:
    """Seeded random crops of the scenes (every origin of every scene equally likely), normalised as the run
    normalises the product's RGB, with the truth as 0/1 classes."""

    def __init__(self, scenes: Sequence[UrbanScene], product: Product, *, seed: int, config: CropConfig,
                 labelled: bool = True) -> None:
        self.scenes, self.config, self.labelled = list(scenes), config, labelled
        self.image = product.image_input
        self.origins = [crop_origins(s.urban, config.size, config.min_urban, config.stride) for s in self.scenes]
        self.index = np.concatenate([np.stack([np.full(len(o), i), np.arange(len(o))], 1)
                                     for i, o in enumerate(self.origins)]) if self.scenes else np.zeros((0, 2))
        if not len(self.index):
            raise TrainingError(f"no {config.size}² crop with {config.min_urban:.0%} of its pixels inside the urban "
                                "boundary in the scenes; give larger cities or a smaller --crop")
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.index)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x: n×3×S×S float32, y: n×S×S int64)."""
        s = self.config.size
        picks = self.index[self.rng.integers(0, len(self.index), n)]
        xs, ys = [], []
        for scene_i, origin_i in picks:
            scene = self.scenes[scene_i]
            r, c = self.origins[scene_i][origin_i]
            x = scene.rgb[:, r:r + s, c:c + s].astype(np.float32)
            y = scene.truth[r:r + s, c:c + s].astype(np.int64)
            if self.config.augment:
                turns, flip = int(self.rng.integers(4)), bool(self.rng.integers(2))
                x, y = np.rot90(x, turns, axes=(1, 2)), np.rot90(y, turns)
                if flip:
                    x, y = x[:, :, ::-1], y[:, ::-1]
            xs.append(normalise(np.ascontiguousarray(x), self.image.mean, self.image.std))
            ys.append(np.ascontiguousarray(y))
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))

    def state_dict(self) -> dict[str, Any]:
        return {"rng": json.dumps(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = json.loads(state["rng"])


class ImageryCrops:
    """Random crops of a city's own imagery for adaptation (no labels), read through the run's sources at the
    product's lattice, inside the region: only the crops are read, so the city may be any size."""

    def __init__(self, product: Product, source: str, date: str, region: BaseGeometry, *, size: int,
                 seed: int) -> None:
        from mapgen.pipeline.context import tile_scheme

        self.product, self.date, self.size = product, date, size
        self.image = product.image_input
        self.inputs = open_inputs(product, source, [date], mask="none")
        self.grid: Grid = tile_scheme(product).input_grid
        self.area = self.grid.box(region.bounds)
        if self.area.height < size or self.area.width < size:
            raise TrainingError(f"the region is {self.area.height} × {self.area.width} px at the product's lattice, "
                                f"smaller than one {size}² crop")
        self.region = region
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> torch.Tensor:
        import shapely

        xs = []
        tries = 0
        while len(xs) < n:
            tries += 1
            if tries > 100 * n:
                raise TrainingError(f"{self.inputs.source(self.image.name).description}: too few crops with data "
                                    "inside the region")
            r = self.area.row + int(self.rng.integers(0, self.area.height - self.size + 1))
            c = self.area.col + int(self.rng.integers(0, self.area.width - self.size + 1))
            box = Box(r, c, self.size, self.size)
            if not shapely.intersects(self.region, shapely.box(*self.grid.bounds(box))):
                continue
            pixels = self.inputs.read(self.image, source_date(self.date), self.grid, box)
            valid = np.isfinite(pixels).all(axis=0)
            if valid.mean() < 0.9:
                continue
            xs.append(normalise(pixels, self.image.mean, self.image.std, valid=valid))
        return torch.from_numpy(np.stack(xs))

    def state_dict(self) -> dict[str, Any]:
        return {"rng": json.dumps(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = json.loads(state["rng"])


# --------------------------------------------------------------------------------------------------
# Held-out scores through the engine's path


@torch.no_grad()
def score_scene(model: UGSNet, scene: UrbanScene, product: Product, *, batch: int = 4) -> dict[str, Any]:
    """Pixel metrics of the model (p(UGS) > 0.5 alone) and of the product's chain (then the urban mask) over a
    whole scene, windowed, stitched and post-processed by the engine's functions."""
    window = product.window
    lattice = WindowLattice(window.size, window.stride)
    box = Box(0, 0, *scene.rgb.shape[1:])
    read, origins = lattice.covering(box)
    x = np.zeros((3, read.height, read.width), dtype=np.float32)
    rows, cols = box.slices_in(read)
    x[:, rows, cols] = normalise(scene.rgb.astype(np.float32), product.image_input.mean, product.image_input.std)
    conf = stitched_confidence(model, x, read, origins, lattice, batch, product.stitch.border,
                               activation=product.model.output, channel=None)[:, rows, cols]
    valid = np.ones(box.shape, dtype=bool)
    layer = np.pad(scene.urban.astype(np.float32), 1, constant_values=np.nan)  # the mask's halo of 1 px
    raw = product_codes(product, conf, valid, lambda _name: layer, 1, steps=1) == classes.FOREGROUND
    mapped = product_codes(product, conf, valid, lambda _name: layer, 1) == classes.FOREGROUND
    inside = scene.urban
    return {"model_in_boundary": Confusion().add(raw[inside], scene.truth[inside]).to_dict(),
            "product": Confusion().add(mapped, scene.truth).to_dict(), "scene": scene.record}


# --------------------------------------------------------------------------------------------------
# Training


@dataclass(frozen=True)
class UGSTrainConfig:
    steps: int = 2000
    batch: int = 8  # the paper's
    lr: float = 1e-4  # the paper's
    decay_start: float = 0.5  # share of the steps after which the rate falls linearly to 0 (the paper's half)
    seed: int = 0
    crops: CropConfig = CropConfig()
    log_every: int = 50
    checkpoint_every: int = 100
    device: str = "cpu"
    threads: int = 2

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch < 1:
            raise TrainingError(f"steps and batch must be positive, got {self.steps} and {self.batch}")
        if not 0 <= self.decay_start <= 1:
            raise TrainingError(f"decay_start must be within 0 and 1, got {self.decay_start}")


def linear_decay(step: int, steps: int, lr: float, decay_start: float) -> float:
    """The paper's schedule: `lr` until `decay_start`·steps, then linearly down to 0 at the last step."""
    start = round(decay_start * steps)
    if step < start:
        return lr
    return lr * (steps - step) / max(1, steps - start)


def _fingerprint(kind: str, settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps({"kind": kind, **settings}, sort_keys=True, default=str).encode()).hexdigest()


def _settings(config: Any) -> dict[str, Any]:
    data = asdict(config)
    for volatile in ("log_every", "checkpoint_every", "threads"):
        data.pop(volatile, None)
    return data


class Resumable:
    """The state of a training run beside its output: the `parts` (anything with state_dict and
    load_state_dict: networks, optimisers, samplers), torch's random stream, the step and the loss records;
    saved hash-checked, and restored only into the run of the same fingerprint."""

    def __init__(self, out_path: Path, fingerprint: str, parts: dict[str, Any]) -> None:
        self.file, self.fingerprint, self.parts = state_path(out_path), fingerprint, parts

    def restore(self, log: Log) -> tuple[int, list[dict[str, float]]]:
        state = load_state(self.file, self.fingerprint)
        if state is None:
            return 0, []
        for name, part in self.parts.items():
            part.load_state_dict(state[name])
        torch.set_rng_state(state["torch_rng"])
        log(f"resuming from step {state['step']} ({self.file})")
        return int(state["step"]), list(state["records"])

    def save(self, step: int, records: list[dict[str, float]]) -> None:
        save_state(self.file, {"trainer": {"step": step}, "step": step, "torch_rng": torch.get_rng_state(),
                               "records": records, **{n: p.state_dict() for n, p in self.parts.items()}},
                   self.fingerprint)


def train_ugs(scene_dirs: Sequence[str | Path], out_path: str | Path, *, model_config: UGSNetConfig | None = None,
              config: UGSTrainConfig = UGSTrainConfig(), eval_scene_dir: str | Path | None = None,
              command: str | None = None, stop_after: int | None = None, log: Log = print) -> dict[str, Any]:
    """Train UGSNet on synthetic cities, score a held-out city, write safetensors + sidecar. Interrupted
    (`stop_after`, or killed), the same call goes on from the last saved state to the same weights."""
    model_config = model_config or UGSNetConfig.small()
    with torch_threads(config.threads):
        return _train(list(map(Path, scene_dirs)), Path(out_path), model_config, config,
                      Path(eval_scene_dir) if eval_scene_dir else None, command, stop_after, log)


def _train(scene_dirs: list[Path], out_path: Path, model_config: UGSNetConfig, config: UGSTrainConfig,
           eval_dir: Path | None, command: str | None, stop_after: int | None, log: Log) -> dict[str, Any]:
    product = load_product(PRODUCT)
    scenes = [load_ugs_scene(d) for d in scene_dirs]
    sampler = CropSampler(scenes, product, seed=config.seed, config=config.crops)
    log(f"training on {len(scenes)} cities: {len(sampler)} crops of {config.crops.size}² inside the boundary")
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    model = UGSNet(model_config).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    fingerprint = _fingerprint("ugs-train", {"model": model_config.to_dict(), "train": _settings(config),
                                             "scenes": [s.record for s in scenes]})
    resumable = Resumable(out_path, fingerprint, {"model": model, "optimiser": optimiser, "sampler": sampler})
    step, records = resumable.restore(log)
    out_path.parent.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    last = min(config.steps, stop_after) if stop_after is not None else config.steps
    model.train()
    while step < last:
        for group in optimiser.param_groups:
            group["lr"] = linear_decay(step, config.steps, config.lr, config.decay_start)
        x, y = sampler.batch(config.batch)
        total, parts = ugs_loss(model(x.to(device)), y.to(device))
        if not torch.isfinite(total):
            raise TrainingError(f"step {step + 1}: the loss is {float(total)}; lower the learning rate")
        optimiser.zero_grad(set_to_none=True)
        total.backward()
        optimiser.step()
        step += 1
        records.append({"step": step, "total": round(total.item(), 6),
                        **{k: round(v.item(), 6) for k, v in parts.items()}})
        if step % config.log_every == 0 or step == config.steps:
            recent = records[-config.log_every:]
            log(f"step {step}/{config.steps} " + " ".join(
                f"{k} {np.mean([r[k] for r in recent]):.4f}" for k in recent[0] if k != "step")
                + f" ({time.perf_counter() - started:.0f} s)")
        if step % config.checkpoint_every == 0 or step == last:
            resumable.save(step, records)
    if step < config.steps:
        log(f"stopped at step {step}; the same command goes on from there")
        return {"step": step}
    seconds = time.perf_counter() - started
    model = model.cpu().eval()
    metrics = {}
    if eval_dir is not None:
        metrics = score_scene(model, load_ugs_scene(eval_dir), product)
        log(f"held-out city: product F1 {metrics['product']['f1']:.4f}, IoU {metrics['product']['iou']:.4f}")
    meta = {
        "weights": "trained on synthetic cities (mapgen train --product ugs)",
        "normalisation": {"bands": list(product.image_input.bands), "mean": list(product.image_input.mean),
                          "std": list(product.image_input.std)},
        "training": {"command": command, "product": PRODUCT, "scenes": [s.record for s in scenes],
                     "eval_scene": metrics.get("scene"), "optimizer": "Adam", "torch": torch.__version__,
                     "device": config.device, "config": asdict(config), "seconds_this_session": round(seconds, 1),
                     "loss_curve": _curve(records, config.log_every)},
        "metrics": {k: v for k, v in metrics.items() if k != "scene"},
    }
    return _finish(model, model_config, out_path, meta, resumable.file, log)


def _curve(records: list[dict[str, float]], every: int) -> list[dict[str, float]]:
    return [{"step": records[i - 1]["step"], **{k: round(float(np.mean([r[k] for r in records[i - every:i]])), 5)
                                               for k in records[0] if k != "step"}}
            for i in range(every, len(records) + 1, every)]


def _finish(model: UGSNet, model_config: UGSNetConfig, out_path: Path, meta: dict[str, Any], state_file: Path,
            log: Log) -> dict[str, Any]:
    digest = save_checkpoint(model, model_config, out_path, meta=meta)
    for leftover in (state_file, state_file.with_name(state_file.name + ".json")):
        leftover.unlink(missing_ok=True)
    log(f"wrote {out_path} (sha256 {digest})")
    return {**meta, "sha256": digest}


# --------------------------------------------------------------------------------------------------
# Adaptation


@dataclass(frozen=True)
class AdaptConfig:
    steps: int = 500  # the paper's "10000 epochs" (iterations, surely) at batch 2; fewer on a CPU
    batch: int = 2  # the paper's
    lr: float = 1e-4  # the paper's, for G and D
    adv_weight: float = 1.0  # the paper's L_G = L_ugs + L_adv; AdaptSegNet used 0.001
    seed: int = 0
    crops: CropConfig = CropConfig()
    log_every: int = 50
    checkpoint_every: int = 100
    device: str = "cpu"
    threads: int = 2

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch < 1:
            raise TrainingError(f"steps and batch must be positive, got {self.steps} and {self.batch}")
        if self.adv_weight < 0:
            raise TrainingError(f"the adversarial weight must be ≥ 0, got {self.adv_weight}")
        if self.crops.size < 128:
            raise TrainingError(f"crops of {self.crops.size} px are too small for adaptation: the discriminator "
                                "halves the 1/4 coarse map five times, so give at least 128")


def adapt_ugs(checkpoint: str | Path, scene_dirs: Sequence[str | Path], source: str, date: str,
              region: BaseGeometry, region_name: str, out_path: str | Path, *, config: AdaptConfig = AdaptConfig(),
              command: str | None = None, stop_after: int | None = None, log: Log = print) -> dict[str, Any]:
    """Adapt a UGSNet checkpoint to a city: source = the labelled synthetic scenes, target = the city's imagery
    (`source`, any `--source` of `mapgen run`, at `date`) inside `region`. Writes the city's checkpoint."""
    with torch_threads(config.threads):
        return _adapt(Path(checkpoint), list(map(Path, scene_dirs)), source, str(date), region, region_name,
                      Path(out_path), config, command, stop_after, log)


def _adapt(checkpoint: Path, scene_dirs: list[Path], source: str, date: str, region: BaseGeometry,
           region_name: str, out_path: Path, config: AdaptConfig, command: str | None, stop_after: int | None,
           log: Log) -> dict[str, Any]:
    from mapgen.models import load_checkpoint

    product = load_product(PRODUCT)
    model, info = load_checkpoint(checkpoint, architecture=product.model.architecture)
    model_config = model.config
    scenes = [load_ugs_scene(d) for d in scene_dirs]
    labelled = CropSampler(scenes, product, seed=config.seed, config=config.crops)
    target = ImageryCrops(product, source, date, region, size=config.crops.size, seed=config.seed + 1)
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    model = model.to(device)
    critic = FCDiscriminator(model_config.num_classes).to(device)
    opt_g = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.99))
    opt_d = torch.optim.Adam(critic.parameters(), lr=config.lr, betas=(0.9, 0.99))
    fingerprint = _fingerprint("ugs-adapt", {"base": info["sha256"], "adapt": _settings(config),
                                             "scenes": [s.record for s in scenes],
                                             "target": target.inputs.identity([date]), "region": region.wkt,
                                             "date": date})
    resumable = Resumable(out_path, fingerprint, {"model": model, "critic": critic, "opt_g": opt_g, "opt_d": opt_d,
                                                  "labelled": labelled, "target": target})
    step, records = resumable.restore(log)
    out_path.parent.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    last = min(config.steps, stop_after) if stop_after is not None else config.steps
    model.train()
    critic.train()
    while step < last:
        x_s, y_s = labelled.batch(config.batch)
        x_t = target.batch(config.batch)
        # G: segment the source, and make the city's maps look like the source's to D (D frozen)
        for p in critic.parameters():
            p.requires_grad_(False)
        out_s = model(x_s.to(device))
        l_ugs, _ = ugs_loss(out_s, y_s.to(device))
        p_t = torch.softmax(model(x_t.to(device))["coarse"], dim=1)
        l_adv = adversarial_loss(critic(p_t))
        opt_g.zero_grad(set_to_none=True)
        (l_ugs + config.adv_weight * l_adv).backward()
        opt_g.step()
        # D: tell the source's maps from the city's
        for p in critic.parameters():
            p.requires_grad_(True)
        p_s = torch.softmax(out_s["coarse"].detach(), dim=1)
        l_d = discriminator_loss(critic(p_s), critic(p_t.detach()))
        opt_d.zero_grad(set_to_none=True)
        l_d.backward()
        opt_d.step()
        step += 1
        records.append({"step": step, "ugs": round(l_ugs.item(), 6), "adv": round(l_adv.item(), 6),
                        "d": round(l_d.item(), 6)})
        if not all(np.isfinite(v) for v in records[-1].values()):
            raise TrainingError(f"step {step}: a loss is not finite ({records[-1]}); lower the learning rate")
        if step % config.log_every == 0 or step == config.steps:
            recent = records[-config.log_every:]
            log(f"step {step}/{config.steps} " + " ".join(
                f"{k} {np.mean([r[k] for r in recent]):.4f}" for k in ("ugs", "adv", "d"))
                + f" ({time.perf_counter() - started:.0f} s)")
        if step % config.checkpoint_every == 0 or step == last:
            resumable.save(step, records)
    if step < config.steps:
        log(f"stopped at step {step}; the same command goes on from there")
        return {"step": step}
    meta = {
        "weights": f"{checkpoint.name} adapted to {region_name} (mapgen adapt)",
        "normalisation": {"bands": list(product.image_input.bands), "mean": list(product.image_input.mean),
                          "std": list(product.image_input.std)},
        "adaptation": {"command": command, "region_name": region_name, "date": date, "base_sha256": info["sha256"],
                       "target": target.inputs.describe(), "scenes": [s.record for s in scenes],
                       "config": asdict(config), "seconds_this_session": round(time.perf_counter() - started, 1),
                       "loss_curve": _curve(records, config.log_every)},
    }
    return _finish(model.cpu().eval(), model_config, out_path, meta, resumable.file, log)
