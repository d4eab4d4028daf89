"""Training: the two sample streams, every loss falling on a fixed batch, resume, the written checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG

from mapgen import training
from mapgen.models import LossConfig, STSRSeg, STSRSegConfig, load_checkpoint
from mapgen.models.losses import hr_loss, info_nce, sg_loss
from mapgen.training import (
    EvalConfig,
    Normalisation,
    PatchSampler,
    SamplingConfig,
    TrainConfig,
    Trainer,
    TrainingError,
    load_scene,
    window_fraction,
)

TINY_BOUNDS = (110.0, 30.0, 110.02, 30.02)  # 0.02° × 0.02°, away from the demo region
TINY_YEARS = [2016, 2017]


@pytest.fixture(scope="module")
def scene_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train-scenes")
    training.ensure_scene(root / "train-5", TINY_BOUNDS, TINY_YEARS, 5, 32, lambda msg: None)
    training.ensure_scene(root / "eval-6", TINY_BOUNDS, TINY_YEARS, 6, 32, lambda msg: None)
    return root


@pytest.fixture(scope="module")
def scenes(scene_root):
    return load_scene(scene_root / "train-5")


# ---- normalisation and patch sampling --------------------------------------------------------------


def test_normalisation_matches_the_product_and_zeroes_missing_pixels():
    norm = Normalisation.from_product()
    assert norm.mean == pytest.approx((0.14172366, 0.12568618, 0.12004076, 0.1804051))
    pixels = np.array(norm.mean, dtype=np.float32)[:, None, None] + np.zeros((4, 2, 2), np.float32)
    pixels[:, 0, 0] += np.array(norm.std, dtype=np.float32)
    pixels[2, 1, 1] = np.nan  # one band missing: the whole pixel is no data
    out = norm.apply(pixels)
    assert out[:, 0, 0] == pytest.approx([1, 1, 1, 1], rel=1e-5)
    assert (out[:, 1, 1] == 0).all() and (out[:, 0, 1] == 0).all()


def test_window_fraction():
    mask = np.zeros((5, 6), dtype=bool)
    mask[1:3, 1:3] = True
    frac = window_fraction(mask, 2)
    assert frac.shape == (4, 5)
    assert frac[1, 1] == 1.0 and frac[0, 0] == 0.25 and frac[3, 4] == 0.0


def test_sampler_is_deterministic_for_a_seed(scenes):
    norm = Normalisation.from_product()
    first = PatchSampler(scenes, norm, seed=3).hr_batch(6)
    again = PatchSampler(scenes, norm, seed=3).hr_batch(6)
    other = PatchSampler(scenes, norm, seed=4).hr_batch(6)
    assert torch.equal(first.x, again.x) and torch.equal(first.y, again.y)
    assert not torch.equal(first.x, other.x)
    assert first.x.shape == (6, 4, 64, 64) and first.y.shape == (6, 1, 256, 256)
    assert set(torch.unique(first.y).tolist()) <= {0.0, 1.0}


def test_sampler_respects_the_built_rule_and_matches_labels(scenes):
    config = SamplingConfig(augment=False, background_share=0.25)
    sampler = PatchSampler(scenes, Normalisation.from_product(), seed=0, config=config)
    assert sampler.count("positive") > 0 and sampler.count("background") > 0
    kinds = []
    for _ in range(200):
        index, row, col, positive = sampler.draw()
        scene = scenes[index]
        built = (scene.built[row:row + 64, col:col + 64] >= 0.5).mean()
        assert (built >= 0.10) == positive
        kinds.append(positive)
        x, y, _ = sampler.window(index, row, col)
        assert np.array_equal(x, scene.s2[:, row:row + 64, col:col + 64])
        assert np.array_equal(y, scene.rooftops[4 * row:4 * row + 256, 4 * col:4 * col + 256])
    assert 0.1 < 1 - np.mean(kinds) < 0.4  # about the background share


def test_augmentation_moves_image_and_label_together(scenes):
    sampler = PatchSampler(scenes, Normalisation.from_product(), seed=1,
                           config=SamplingConfig(brightness=0.0, channel_gain=0.0))
    index, row, col, _ = sampler.draw()
    x, y, _ = sampler.window(index, row, col)
    for _ in range(8):
        ax, ay = sampler.augment(x, y)
        # The label's 4×4 block sums follow the image pixels wherever the flip/rotation put them.
        blocks = y.reshape(64, 4, 64, 4).sum(axis=(1, 3))
        ablocks = ay.reshape(64, 4, 64, 4).sum(axis=(1, 3))
        matches = [k for k in range(4) for f in (False, True)
                   if np.array_equal(_turn(x, k, f), ax) and np.array_equal(_turn(blocks[None], k, f)[0], ablocks)]
        assert matches


def _turn(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    a = np.rot90(a, k, axes=(1, 2))
    return a[:, :, ::-1] if flip else a


def test_colour_jitter_is_mild_and_spares_nir(scenes):
    sampler = PatchSampler(scenes, Normalisation.from_product(), seed=2)
    index, row, col, _ = sampler.draw()
    x, y, _ = sampler.window(index, row, col)
    sampler.rng = np.random.default_rng(0)
    ax, _ = sampler.augment(x, y)
    sampler.rng = np.random.default_rng(0)
    k, flip = int(sampler.rng.integers(4)), bool(sampler.rng.random() < 0.5)
    turned = _turn(x, k, flip)
    ratio = ax[:3].mean(axis=(1, 2)) / turned[:3].mean(axis=(1, 2))
    assert np.all(np.abs(ratio - 1) <= 0.16)
    assert np.array_equal(ax[3], turned[3])


# ---- optimisation, resume and the written checkpoint ------------------------------------------


def test_low_resolution_stream_pairs_a_window_with_another_year(scenes):
    config = SamplingConfig(augment=False)
    sampler = PatchSampler(scenes, Normalisation.from_product(), seed=4, config=config)
    batch = sampler.lr_batch(5)
    assert batch.x.shape == batch.x_other_year.shape == (5, 4, 64, 64)
    assert batch.built.shape == (5, 1, 64, 64) and set(torch.unique(batch.built).tolist()) <= {0.0, 1.0}
    # Without augmentation, each pair is the same place in the two years of the scene.
    norm = Normalisation.from_product()
    sampler = PatchSampler(scenes, norm, seed=4, config=config)
    for i in range(5):
        index, row, col, _ = sampler.draw()
        other = 1 - index  # two years: the other one
        sampler.rng.integers(1)  # the choice among the other years, as lr_batch draws it
        assert torch.equal(batch.x[i], torch.from_numpy(norm.apply(scenes[index].s2[:, row:row + 64, col:col + 64])))
        assert torch.equal(batch.x_other_year[i],
                           torch.from_numpy(norm.apply(scenes[other].s2[:, row:row + 64, col:col + 64])))
        built = scenes[index].built[row:row + 64, col:col + 64] >= 0.5
        assert torch.equal(batch.built[i, 0], torch.from_numpy(built.astype(np.float32)))


def _probe(model: STSRSeg, hr, lr, negatives: torch.Tensor) -> dict[str, float]:
    """The three losses on fixed batches, the TC one against fixed negatives (the bank moves on its own)."""
    with torch.no_grad():
        out_hr, out_lr = model(hr.x), model(lr.x)
        positive = torch.nn.functional.normalize(model.represent(lr.x_other_year), dim=1)
        anchor = torch.nn.functional.normalize(out_lr.z, dim=1)
        return {"hr": hr_loss(out_hr.logits, hr.y)[0].item(),
                "tc": info_nce(anchor, positive, negatives, 0.75).item(),
                "sg": sg_loss(torch.cat([out_hr.prob_low, out_lr.prob_low]), torch.cat([hr.built, lr.built]))[0].item()}


def test_every_loss_falls_on_a_fixed_batch(scenes):
    torch.manual_seed(0)
    sampler = PatchSampler(scenes, Normalisation.from_product(), seed=0)
    hr, lr = sampler.hr_batch(2), sampler.lr_batch(2)
    others = sampler.lr_batch(4)  # other places: the fixed negatives of the probe
    model = STSRSeg(STSRSegConfig(**TINY_CONFIG))
    trainer = Trainer(model, TrainConfig(steps=20, batch_hr=2, batch_lr=2, lr=1e-2, threads=1))
    model.train()
    with torch.no_grad():
        negatives = torch.nn.functional.normalize(model.represent(others.x), dim=1)
    # One thread: on a busy 2-core machine two threads spin against each other and run ~10× slower.
    with training.torch_threads(1):
        before = _probe(model, hr, lr, negatives)
        steps = [trainer.fit(hr, lr) for _ in range(20)]
        after = _probe(model, hr, lr, negatives)
    assert set(steps[0]) >= {"hr", "bce", "ftl", "tc", "sg", "sg_ce", "sg_kl", "total"}
    assert steps[-1]["total"] < steps[0]["total"]
    for name in ("hr", "tc", "sg"):
        assert after[name] < before[name], (name, before, after)


def test_each_loss_alone_can_drive_training(scenes):
    sampler = PatchSampler(scenes, Normalisation.from_product(), seed=1)
    hr, lr, others = sampler.hr_batch(2), sampler.lr_batch(2), sampler.lr_batch(4)
    with training.torch_threads(1):
        for weights, name in (((1, 0, 0), "hr"), ((0, 1, 0), "tc"), ((0, 0, 1), "sg")):
            torch.manual_seed(0)
            loss = LossConfig(hr_weight=weights[0], tc_weight=weights[1], sg_weight=weights[2])
            model = STSRSeg(STSRSegConfig(**TINY_CONFIG))
            trainer = Trainer(model, TrainConfig(batch_hr=2, batch_lr=2, lr=1e-2, loss=loss))
            model.train()
            with torch.no_grad():
                negatives = torch.nn.functional.normalize(model.represent(others.x), dim=1)
            before = _probe(model, hr, lr, negatives)[name]
            for _ in range(12):
                trainer.fit(hr if weights[0] or weights[2] else None, lr)
            assert _probe(model, hr, lr, negatives)[name] < before, name


def test_a_collapsed_temporal_head_is_recognised(scenes):
    sampler = PatchSampler(scenes, Normalisation.from_product(), seed=2)
    lr = sampler.lr_batch(4)
    loss = LossConfig(hr_weight=0, tc_weight=1, sg_weight=0)
    with training.torch_threads(1):
        healthy, dead = (Trainer(STSRSeg(STSRSegConfig(**TINY_CONFIG)), TrainConfig(batch_hr=0, batch_lr=4, loss=loss))
                         for _ in range(2))
        with torch.no_grad():  # every ReLU of the head dead: z = fc2's bias, whatever the input
            dead.model.temporal.fc1.weight.zero_()
            dead.model.temporal.fc1.bias.fill_(-1.0)
        runs = [[{"tc": t.fit(None, lr)["tc"]} for _ in range(8)][4:] for t in (healthy, dead)]  # bank full
    assert training.tc_collapsed(runs[1], 16)
    assert runs[1][-1]["tc"] == pytest.approx(np.log(17), abs=1e-5)
    assert not training.tc_collapsed(runs[0], 16)
    assert not training.tc_collapsed([], 16) and not training.tc_collapsed([{"hr": 1.0}], 16)


def test_train_config_refuses_an_empty_stream_with_a_weight():
    with pytest.raises(TrainingError, match="TC loss"):
        TrainConfig(batch_lr=0)
    with pytest.raises(TrainingError, match="HR loss"):
        TrainConfig(batch_hr=0)
    TrainConfig(batch_lr=0, loss=LossConfig(tc_weight=0))  # HR and SG only: fine


def test_train_restores_the_thread_count():
    before = torch.get_num_threads()
    with training.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


TINY_TRAIN = dict(steps=4, batch_hr=2, batch_lr=2, lr=1e-3, seed=7, log_every=2, checkpoint_every=2, threads=1,
                  warmup=1, schedule="cosine", evaluation=EvalConfig(windows=8, batch=8))


def test_train_writes_a_loadable_checkpoint_with_its_record(scene_root, tmp_path):
    out = tmp_path / "ckpt" / "tiny.safetensors"
    logged: list[str] = []
    result = training.train([scene_root / "train-5"], out, config=TrainConfig(**TINY_TRAIN),
                            eval_scene_dir=scene_root / "eval-6", command="mapgen train (test)", log=logged.append)
    text = "\n".join(logged)
    assert "step 2/4 " in text and "step 4/4 " in text and "held-out" in text
    model, info = load_checkpoint(out, sha256=result["sha256"], architecture="stsr-seg")
    assert STSRSegConfig.from_dict(info["config"]) == STSRSegConfig.small()
    assert info["normalisation"]["mean"] == list(Normalisation.from_product().mean)
    record = info["training"]
    assert record["command"] == "mapgen train (test)" and record["scene_seeds"] == [5]
    assert record["config"]["steps"] == 4 and record["config"]["loss"]["hr_weight"] == 200.0
    assert [e["step"] for e in record["loss_curve"]] == [2, 4]
    assert {"hr", "tc", "sg", "total"} <= set(record["loss_curve"][0])
    per_step = [json.loads(line) for line in out.with_name("tiny.safetensors.losses.jsonl").read_text().splitlines()]
    assert [r["step"] for r in per_step] == [1, 2, 3, 4]
    metrics = info["metrics"]
    assert metrics["scene_seed"] == 6 and metrics["windows"]["windows"] == 8
    for part in (metrics["windows"], metrics["scene"]["model"], metrics["scene"]["product"]):
        assert set(part) >= {"f1", "iou", "oa", "recall", "precision"} and 0 <= part["f1"] <= 1
    assert json.loads(out.with_suffix(".json").read_text())["sha256"] == result["sha256"]
    assert not list(out.parent.glob("*.train-state.pt*"))  # the resumable state goes once the run ends


def test_an_interrupted_run_resumes_to_the_same_weights(scene_root, tmp_path):
    config = TrainConfig(**TINY_TRAIN)
    straight = training.train([scene_root / "train-5"], tmp_path / "a.safetensors", config=config, log=lambda m: None)
    out = tmp_path / "b.safetensors"
    partial = training.train([scene_root / "train-5"], out, config=config, stop_after=2, log=lambda m: None)
    assert partial == {"step": 2} and not out.exists()
    assert (tmp_path / "b.safetensors.train-state.pt").is_file()
    logged: list[str] = []
    resumed = training.train([scene_root / "train-5"], out, config=config, log=logged.append)
    assert any("resuming from step 2" in line for line in logged)
    assert resumed["sha256"] == straight["sha256"]
    lines = out.with_name("b.safetensors.losses.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]


def test_a_state_of_other_settings_or_bytes_is_refused(scene_root, tmp_path):
    out = tmp_path / "c.safetensors"
    training.train([scene_root / "train-5"], out, config=TrainConfig(**TINY_TRAIN), stop_after=2, log=lambda m: None)
    other = TrainConfig(**{**TINY_TRAIN, "lr": 5e-3})
    with pytest.raises(TrainingError, match="other settings"):
        training.train([scene_root / "train-5"], out, config=other, log=lambda m: None)
    state = tmp_path / "c.safetensors.train-state.pt"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))
    with pytest.raises(TrainingError, match="sha256"):
        training.train([scene_root / "train-5"], out, config=TrainConfig(**TINY_TRAIN), log=lambda m: None)


def test_scenes_are_reused_and_another_is_refused(scene_root):
    assert training.ensure_scene(scene_root / "train-5", TINY_BOUNDS, TINY_YEARS, 5, 32, print) == scene_root / \
        "train-5"
    with pytest.raises(ValueError, match="another scene"):
        training.ensure_scene(scene_root / "train-5", TINY_BOUNDS, TINY_YEARS, 9, 32, print)


def test_sg_reference_from_scenes_is_the_rooftop_share_of_built_pixels(scene_root):
    dirs = [scene_root / "train-5", scene_root / "eval-6"]
    mean, std = training.rooftop_share_in_built(dirs)
    shares = []
    for year in (y for d in dirs for y in load_scene(d)):
        h, w = year.built.shape
        for r in range(h):  # pixel by pixel, the plain way
            for c in range(w):
                if np.nan_to_num(year.built[r, c]) >= 0.5:
                    shares.append(year.rooftops[4 * r:4 * r + 4, 4 * c:4 * c + 4].mean())
    assert len(shares) > 100
    assert mean == pytest.approx(np.mean(shares), abs=1e-9)
    assert std == pytest.approx(np.std(shares), abs=1e-9)
    assert 0.0 < mean < 1.0 and std > 0.05  # a spread far wider than the paper's σ = 0.01
