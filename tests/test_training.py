"""Training groundwork: the HR loss terms, the patch sampler, a few optimiser steps, a written checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mapgen.models import STSRSeg, STSRSegConfig, load_checkpoint
from mapgen.pipeline import training
from mapgen.pipeline.training import (
    Batch,
    EvalConfig,
    HRLossConfig,
    Normalisation,
    PatchSampler,
    SamplingConfig,
    TrainOptions,
    bce_loss,
    focal_tversky_loss,
    hr_loss,
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


# ---- HR loss, each term against a value worked out by hand ---------------------------------------


def test_bce_by_hand():
    # sigmoid(0) = 1/2 for a rooftop, sigmoid(ln 3) = 3/4 for background:
    # −(ln 1/2 + ln 1/4) / 2 = 1.5 ln 2.
    logits = torch.tensor([0.0, math.log(3.0)])
    target = torch.tensor([1.0, 0.0])
    assert bce_loss(logits, target).item() == pytest.approx(1.5 * math.log(2.0), rel=1e-6)


def test_focal_tversky_by_hand():
    # P̂ = (.5, .75, .25, 0), P = (1, 0, 1, 0): Σ P·P̂ = 0.75, Σ P = 2, Σ P̂ = 1.5;
    # denominator 0.4·2 + 0.6·1.5 = 1.7; FTL = (1 − 0.750001 / 1.700001)^0.5 = 0.7475448…
    prob = torch.tensor([[0.5, 0.75], [0.25, 0.0]], dtype=torch.float64)
    target = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    expected = (1 - 0.750001 / 1.700001) ** 0.5
    assert expected == pytest.approx(0.7475448, abs=1e-7)
    assert focal_tversky_loss(prob, target).item() == pytest.approx(expected, rel=1e-12)


def test_focal_tversky_weighs_as_printed():
    # Eq. 2's denominator is TP + (1−β)·FN + β·FP: with β = 0.6 one false positive costs more than one
    # false negative. The test pins the equation as printed (see the function's docstring).
    target = torch.tensor([1.0, 1.0, 0.0, 0.0])
    false_positive = focal_tversky_loss(torch.tensor([1.0, 1.0, 1.0, 0.0]), target)
    false_negative = focal_tversky_loss(torch.tensor([1.0, 0.0, 0.0, 0.0]), target)
    assert false_positive.item() == pytest.approx((1 - (2 + 1e-6) / (0.8 + 1.8 + 1e-6)) ** 0.5, rel=1e-6)
    assert false_negative.item() == pytest.approx((1 - (1 + 1e-6) / (0.8 + 0.6 + 1e-6)) ** 0.5, rel=1e-6)


def test_focal_tversky_perfect_prediction_has_finite_gradient():
    target = torch.tensor([1.0, 0.0, 1.0])
    prob = target.clone().requires_grad_(True)
    loss = focal_tversky_loss(prob, target)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    assert torch.isfinite(prob.grad).all()


def test_hr_loss_is_bce_plus_half_ftl():
    logits = torch.tensor([[0.0, math.log(3.0)], [-math.log(3.0), 2.0]])
    target = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    total, terms = hr_loss(logits, target)
    assert set(terms) == {"bce", "ftl"}
    assert total.item() == pytest.approx(terms["bce"].item() + 0.5 * terms["ftl"].item(), rel=1e-7)
    prob = torch.sigmoid(logits)
    assert terms["ftl"].item() == pytest.approx(focal_tversky_loss(prob, target).item())
    assert HRLossConfig() == HRLossConfig(ftl_weight=0.5, eps=1e-6, gamma=0.5, beta=0.6)


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
    first = PatchSampler(scenes, norm, seed=3).batch(6)
    again = PatchSampler(scenes, norm, seed=3).batch(6)
    other = PatchSampler(scenes, norm, seed=4).batch(6)
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
        x, y = sampler.patch(index, row, col)
        assert np.array_equal(x, scene.s2[:, row:row + 64, col:col + 64])
        assert np.array_equal(y, scene.rooftops[4 * row:4 * row + 256, 4 * col:4 * col + 256])
    assert 0.1 < 1 - np.mean(kinds) < 0.4  # about the background share


def test_augmentation_moves_image_and_label_together(scenes):
    sampler = PatchSampler(scenes, Normalisation.from_product(), seed=1,
                           config=SamplingConfig(brightness=0.0, channel_gain=0.0))
    index, row, col, _ = sampler.draw()
    x, y = sampler.patch(index, row, col)
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
    x, y = sampler.patch(index, row, col)
    sampler.rng = np.random.default_rng(0)
    ax, _ = sampler.augment(x, y)
    sampler.rng = np.random.default_rng(0)
    k, flip = int(sampler.rng.integers(4)), bool(sampler.rng.random() < 0.5)
    turned = _turn(x, k, flip)
    ratio = ax[:3].mean(axis=(1, 2)) / turned[:3].mean(axis=(1, 2))
    assert np.all(np.abs(ratio - 1) <= 0.16)
    assert np.array_equal(ax[3], turned[3])


# ---- optimisation and the written checkpoint -------------------------------------------------------


def test_a_few_steps_on_a_fixed_batch_lower_the_loss(scenes):
    torch.manual_seed(0)
    batch: Batch = PatchSampler(scenes, Normalisation.from_product(), seed=0).batch(2)
    model = STSRSeg(STSRSegConfig.small())
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    # One thread: on a busy 2-core machine two threads spin against each other and run ~10× slower.
    with training.torch_threads(1):
        for _ in range(10):
            loss, _ = training.training_loss(model, batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


def test_train_restores_the_thread_count():
    before = torch.get_num_threads()
    with training.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_train_writes_a_loadable_checkpoint_with_its_record(scene_root, tmp_path, capsys):
    out = tmp_path / "ckpt" / "tiny.safetensors"
    options = TrainOptions(evaluation=EvalConfig(windows=8, batch=8), warmup=1, command="python -m test")
    result = training.train([scene_root / "train-5"], out, config=STSRSegConfig.small(), steps=3, batch=2, lr=1e-3,
                            seed=7, log_every=2, threads=1, eval_scene_dir=scene_root / "eval-6", options=options)
    logged = capsys.readouterr().out
    assert "step 2 " in logged and "step 3 " in logged and "held-out" in logged
    model, info = load_checkpoint(out, sha256=result["sha256"], architecture="stsr-seg")
    assert STSRSegConfig.from_dict(info["config"]) == STSRSegConfig.small()
    assert info["normalisation"]["mean"] == list(Normalisation.from_product().mean)
    record = info["training"]
    assert record["command"] == "python -m test" and record["scene_seeds"] == [5]
    assert (record["steps"], record["batch"], record["lr"], record["seed"]) == (3, 2, 1e-3, 7)
    assert record["loss"] == "bce + 0.5*focal_tversky"
    assert [e["step"] for e in record["loss_curve"]] == [2, 3]
    metrics = info["metrics"]
    assert metrics["scene_seed"] == 6 and metrics["windows"]["windows"] == 8
    for part in (metrics["windows"], metrics["scene"]["model"], metrics["scene"]["product"]):
        assert set(part) >= {"f1", "iou", "precision", "recall"} and 0 <= part["f1"] <= 1
    assert json.loads(out.with_suffix(".json").read_text())["sha256"] == result["sha256"]
    # Same seed, same scenes, same threads: the same weights, byte for byte.
    again = training.train([scene_root / "train-5"], tmp_path / "again.safetensors", config=STSRSegConfig.small(),
                           steps=3, batch=2, lr=1e-3, seed=7, log_every=2, threads=1, options=options)
    assert again["sha256"] == result["sha256"]


def test_command_line_reuses_scenes_and_refuses_another(scene_root, tmp_path):
    parser = training.build_parser()
    args = parser.parse_args(["--scenes-dir", "x", "--out", "y.safetensors", "--years", "2016-2018",
                              "--train-bounds", "1,2,3,4", "--config", "custom", "--sr-features", "8"])
    assert args.years == [2016, 2017, 2018] and args.train_bounds == [(1.0, 2.0, 3.0, 4.0)]
    assert training.model_config(args) == STSRSegConfig(**{**STSRSegConfig.small().to_dict(), "sr_features": 8})
    assert training.ensure_scene(scene_root / "train-5", TINY_BOUNDS, TINY_YEARS, 5, 32, print) == scene_root / \
        "train-5"
    with pytest.raises(ValueError, match="another scene"):
        training.ensure_scene(scene_root / "train-5", TINY_BOUNDS, TINY_YEARS, 9, 32, print)
