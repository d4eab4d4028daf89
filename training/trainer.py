"""The training loop of STSR-Seg: Adam on L = α·HR + φ·TC + ω·SG (CBRA Eq. 7), seeded, resumable.

Every `checkpoint_every` steps the whole training state (weights, optimiser, memory bank, random streams,
loss log) is written beside the output, hash-checked; the same command after an interruption goes on from
there and ends with the weights an uninterrupted run would have had. On CUDA the forward pass runs in
bf16 autocast; on CPU in float32.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mapgen.files import atomic
from mapgen.models import STSRSeg, STSRSegConfig, save_checkpoint
from mapgen.models.losses import LossConfig, TemporalContrast, hr_loss, sg_loss, total_loss

from .sampling import HRBatch, LRBatch, PatchSampler, SamplingConfig
from .scenes import Normalisation, load_scene, scene_record
from .scoring import EvalConfig, evaluate_held_out

Log = Callable[[str], None]


class TrainingError(ValueError):
    """A training run that cannot start or go on; the message is one line."""


@dataclass(frozen=True)
class TrainConfig:
    """Defaults are the paper's (Table B3) where it gives one; batches are per step and per stream."""

    steps: int = 3000
    batch_hr: int = 32
    batch_lr: int = 48
    lr: float = 1.5e-4
    schedule: str = "constant"  # the paper's; or "cosine" (to 0 over the steps)
    warmup: int = 0  # steps of linear warm-up
    seed: int = 0  # the weights and the window sampler
    loss: LossConfig = field(default_factory=LossConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    log_every: int = 100
    checkpoint_every: int = 250
    device: str = "cpu"
    threads: int = 2

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise TrainingError(f"steps must be positive, got {self.steps}")
        if self.schedule not in ("constant", "cosine"):
            raise TrainingError(f"unknown schedule {self.schedule!r} (constant, cosine)")
        loss = self.loss
        if (loss.hr_weight > 0) and self.batch_hr < 1:
            raise TrainingError("the HR loss has a weight but the high-resolution batch is empty")
        if (loss.tc_weight > 0) and self.batch_lr < 1:
            raise TrainingError("the TC loss has a weight but the low-resolution batch is empty")


def learning_rate(step: int, config: TrainConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    if config.schedule == "constant":
        return config.lr
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * progress))


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op thread count for a block; restored after, so a caller's setting is not lost."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Trainer:
    """One model, its optimiser and its temporal-contrast memory bank; `fit` makes one update."""

    def __init__(self, model: STSRSeg, config: TrainConfig) -> None:
        self.config = config
        self.device = torch.device(config.device)
        self.model = model.to(self.device)
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.tc = TemporalContrast(model.config.temporal_dim, config.loss.bank_size, config.loss.temperature,
                                   self.device)
        self.step = 0

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def losses(self, hr: HRBatch | None, lr: LRBatch | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 7 on one high-resolution and one low-resolution batch (either may be None).

        The SG loss sees the built labels of both batches (collaborative training, Table B4). The TC
        positive (the same place in another year) goes through the network without gradient, as MoCo's
        key encoder does; the anchors carry the gradient.
        """
        w, dev = self.config.loss, self.device
        terms: dict[str, torch.Tensor] = {}
        l_hr = l_tc = l_sg = None
        pooled, built = [], []
        with self._autocast():
            if hr is not None:
                out = self.model(hr.x.to(dev))
                if w.hr_weight:
                    l_hr, parts = hr_loss(out.logits.float(), hr.y.to(dev), w)
                    terms.update(hr=l_hr, **parts)
                pooled.append(out.prob_low.float())
                built.append(hr.built.to(dev))
            if lr is not None:
                out = self.model(lr.x.to(dev))
                pooled.append(out.prob_low.float())
                built.append(lr.built.to(dev))
                if w.tc_weight:
                    with torch.no_grad():
                        positive = self.model.represent(lr.x_other_year.to(dev))
                    l_tc = self.tc(out.z.float(), positive.float())
                    terms["tc"] = l_tc
            if w.sg_weight and pooled:
                l_sg, parts = sg_loss(torch.cat(pooled), torch.cat(built), w)
                terms.update(sg=l_sg, **parts)
        total = total_loss(l_hr, l_tc, l_sg, w)
        terms["total"] = total
        return total, terms

    def fit(self, hr: HRBatch | None, lr: LRBatch | None) -> dict[str, float]:
        """One Adam step on the given batches; the loss terms, as floats."""
        self.model.train()
        for group in self.optimiser.param_groups:
            group["lr"] = learning_rate(self.step, self.config)
        total, terms = self.losses(hr, lr)
        if not torch.isfinite(total):
            raise TrainingError(f"step {self.step + 1}: the loss is {float(total)}; lower the learning rate")
        self.optimiser.zero_grad(set_to_none=True)
        total.backward()
        self.optimiser.step()
        self.step += 1
        return {k: float(v.detach()) for k, v in terms.items()}

    def fit_sampled(self, sampler: PatchSampler) -> dict[str, float]:
        c = self.config
        hr = sampler.hr_batch(c.batch_hr) if c.batch_hr else None
        lr = sampler.lr_batch(c.batch_lr) if c.batch_lr and (c.loss.tc_weight or c.loss.sg_weight) else None
        return self.fit(hr, lr)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "model": self.model.state_dict(), "optimiser": self.optimiser.state_dict(),
                "bank": self.tc.bank.state_dict(), "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.tc.bank.load_state_dict(state["bank"])
        torch.set_rng_state(state["torch_rng"])
        self.step = int(state["step"])


# --------------------------------------------------------------------------------------------------
# The resumable state beside the output


def state_path(out_path: Path) -> Path:
    return out_path.with_name(out_path.name + ".train-state.pt")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_state(path: Path, state: dict[str, Any], fingerprint: str) -> None:
    """Write the state under a scratch name, then rename; its sha256 and run fingerprint go in a sidecar."""
    side = path.with_name(path.name + ".json")
    # both are written before either is renamed; the state is renamed first (the inner block ends first),
    # then its sidecar, as load_state refuses a state its sidecar does not vouch for
    with atomic.replacing(side) as side_tmp, atomic.replacing(path) as tmp:
        torch.save(state, tmp)
        meta = {"sha256": _sha256(tmp), "fingerprint": fingerprint, "step": state["trainer"]["step"]}
        side_tmp.write_text(json.dumps(meta))


def load_state(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The saved state of this very run, or None if there is none; a state of another run is refused."""
    side = path.with_name(path.name + ".json")
    if not path.is_file() or not side.is_file():
        return None
    meta = json.loads(side.read_text())
    if meta.get("fingerprint") != fingerprint:
        raise TrainingError(f"{path} belongs to a training run with other settings; remove it to start afresh")
    if _sha256(path) != meta.get("sha256"):
        raise TrainingError(f"{path} does not match its recorded sha256; remove it to start afresh")
    return torch.load(path, weights_only=True)


# --------------------------------------------------------------------------------------------------
# train()


def _fingerprint(config: STSRSegConfig, train: TrainConfig, scene_dirs: Sequence[Path]) -> str:
    settings = {"model": config.to_dict(), "train": asdict(train), "scenes": [scene_record(d) for d in scene_dirs]}
    for volatile in ("log_every", "checkpoint_every", "threads", "evaluation"):
        settings["train"].pop(volatile)
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def tc_collapsed(records: list[dict[str, float]], bank_size: int, tol: float = 1e-4) -> bool:
    """Whether every step's TC loss sat at log(1 + N): what InfoNCE gives when all representations are
    the same vector (e.g. every ReLU of the temporal head dead after too large a learning rate), so that
    the loss, and its gradient, no longer depend on the input."""
    chance = math.log(1 + bank_size)
    values = [r["tc"] for r in records if "tc" in r]
    return bool(values) and all(abs(v - chance) < tol for v in values)


def _mean_terms(records: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in records[0] if k != "step"]
    return {k: round(float(np.mean([r[k] for r in records])), 5) for k in keys}


def train(scene_dirs: Sequence[str | Path], out_path: str | Path, *, model_config: STSRSegConfig | None = None,
          config: TrainConfig = TrainConfig(), eval_scene_dir: str | Path | None = None, product: str = "cbra",
          command: str | None = None, stop_after: int | None = None, log: Log = print) -> dict[str, Any]:
    """Train STSR-Seg on the scenes, evaluate on a held-out scene, write safetensors + JSON sidecar.

    Returns the checkpoint's metadata plus "sha256". With the same arguments, scenes and thread count the
    weights repeat exactly. `stop_after` ends the run after that many steps with its state saved (what an
    interruption leaves behind); the same call without it then finishes the run.
    """
    model_config = model_config if model_config is not None else STSRSegConfig.small()
    with torch_threads(config.threads):
        return _train([Path(d) for d in scene_dirs], Path(out_path), model_config, config,
                      Path(eval_scene_dir) if eval_scene_dir is not None else None, product, command, stop_after,
                      log)


def _train(scene_dirs: list[Path], out_path: Path, model_config: STSRSegConfig, config: TrainConfig,
           eval_scene_dir: Path | None, product: str, command: str | None, stop_after: int | None,
           log: Log) -> dict[str, Any]:
    torch.manual_seed(config.seed)
    norm = Normalisation.from_product(product)
    scenes = [year for d in scene_dirs for year in load_scene(d)]
    sampler = PatchSampler(scenes, norm, seed=config.seed, config=config.sampling)
    log(f"training on {len(scenes)} scene-years: {sampler.count('positive')} windows with ≥ "
        f"{config.sampling.min_built_fraction:.0%} built, {sampler.count('background')} others")
    trainer = Trainer(STSRSeg(model_config), config)

    fingerprint = _fingerprint(model_config, config, scene_dirs)
    state_file = state_path(out_path)
    records: list[dict[str, float]] = []
    state = load_state(state_file, fingerprint)
    if state is not None:
        trainer.load_state_dict(state["trainer"])
        sampler.load_state_dict(state["sampler"])
        records = list(state["records"])
        log(f"resuming from step {trainer.step} ({state_file})")
    losses_log = out_path.with_name(out_path.name + ".losses.jsonl")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    losses_log.write_text("".join(json.dumps(r) + "\n" for r in records))  # drop steps after the state

    def save() -> None:
        save_state(state_file, {"trainer": trainer.state_dict(), "sampler": sampler.state_dict(),
                                "records": records}, fingerprint)

    started = time.perf_counter()
    last = min(config.steps, stop_after) if stop_after is not None else config.steps
    with open(losses_log, "a") as per_step:
        while trainer.step < last:
            terms = trainer.fit_sampled(sampler)
            record = {"step": trainer.step, **{k: round(v, 6) for k, v in terms.items()},
                      "lr": learning_rate(trainer.step - 1, config)}
            records.append(record)
            per_step.write(json.dumps(record) + "\n")
            if trainer.step % config.log_every == 0 or trainer.step == config.steps:
                recent = records[-config.log_every:]
                log(f"step {trainer.step}/{config.steps} " + " ".join(f"{k} {v}" for k, v in
                                                                     _mean_terms(recent).items())
                    + f" ({time.perf_counter() - started:.0f} s)")
                if tc_collapsed(recent, config.loss.bank_size):
                    log(f"warning: the TC loss has sat at log(1 + {config.loss.bank_size}) for {len(recent)} steps: "
                        "the temporal representations have collapsed to one vector; try a lower --lr")
            if trainer.step % config.checkpoint_every == 0 or trainer.step == last:
                per_step.flush()
                save()
    if trainer.step < config.steps:
        log(f"stopped at step {trainer.step}; the same command goes on from there")
        return {"step": trainer.step}
    train_seconds = time.perf_counter() - started

    metrics: dict[str, Any] = {}
    if eval_scene_dir is not None:
        held_out = load_scene(eval_scene_dir)
        metrics = evaluate_held_out(trainer.model.cpu(), held_out, norm, seed=config.seed,
                                    sampling=config.sampling, config=config.evaluation)
        metrics["scene_seed"] = scene_record(eval_scene_dir)["seed"]
        log(f"held-out windows: {json.dumps(metrics['windows'])}")
        if "scene" in metrics:
            log(f"held-out scene: model {json.dumps(metrics['scene']['model'])}")

    curve = [{"step": records[i - 1]["step"], **_mean_terms(records[max(0, i - config.log_every):i])}
             for i in range(config.log_every, len(records) + 1, config.log_every)]
    meta = {
        "weights": "trained on synthetic scenes (mapgen train)",
        "normalisation": norm.to_dict(),
        "training": {
            "command": command,
            "product": product,
            "scene_seeds": [scene_record(d)["seed"] for d in scene_dirs],
            "scenes": [scene_record(d) for d in scene_dirs],
            "eval_scene": scene_record(eval_scene_dir) if eval_scene_dir is not None else None,
            "optimizer": "Adam", "torch": torch.__version__, "device": config.device,
            "config": asdict(config), "seconds_this_session": round(train_seconds, 1),
            "loss_curve": curve,
        },
        "metrics": metrics,
    }
    digest = save_checkpoint(trainer.model.cpu(), model_config, out_path, meta=meta)
    for leftover in (state_file, state_file.with_name(state_file.name + ".json")):
        leftover.unlink(missing_ok=True)
    log(f"wrote {out_path} (sha256 {digest})")
    return {**meta, "sha256": digest}
