"""UGSNet's training and adaptation (training/ugs.py): crops inside the urban boundary, the paper's linear
decay, resumable and seeded runs, and the adversarial adaptation writing a city's checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
import torch
from conftest import invoke
from hypothesis import given, settings
from hypothesis import strategies as st

from mapgen.models import UGSNetConfig, load_checkpoint
from mapgen.training.ugs import (
    AdaptConfig,
    CropConfig,
    UGSTrainConfig,
    adapt_ugs,
    crop_origins,
    linear_decay,
    train_ugs,
)

TINY = UGSNetConfig(width=4, blocks=(1, 1, 1, 1), reduce_channels=8, head_channels=8, points=64)
BOUNDS = (113.3702, 23.0505, 113.3745, 23.0545)
CROPS = CropConfig(size=64, min_urban=0.5)


@pytest.fixture(scope="module")
def cities(tmp_path_factory):
    from mapgen.synthetic.ugs import generate_ugs_scene

    root = tmp_path_factory.mktemp("cities")
    generate_ugs_scene(BOUNDS, "2021", root / "a", seed=8, margin_px=64)
    generate_ugs_scene(BOUNDS, "2021", root / "far", seed=9, style="far", margin_px=64)
    return root


@settings(max_examples=40, deadline=None)
@given(st.integers(8, 40), st.integers(8, 40), st.integers(2, 8), st.sampled_from([0.0, 0.5, 0.75, 1.0]),
       st.integers(1, 4), st.integers(0, 2**31))
def test_crop_origins_are_the_crops_with_enough_of_the_city(h, w, size, share, stride, seed):
    urban = np.random.default_rng(seed).random((h, w)) < 0.6
    got = {tuple(o) for o in crop_origins(urban, size, share, stride)}
    expected = {(r, c) for r in range(0, h - size + 1, stride) for c in range(0, w - size + 1, stride)
                if urban[r:r + size, c:c + size].sum() >= share * size * size}
    assert got == expected


def test_the_rate_is_constant_then_falls_linearly_to_zero():
    rates = [linear_decay(s, 200, 1e-4, 0.5) for s in range(200)]
    assert rates[:100] == [1e-4] * 100
    assert rates[100] == pytest.approx(1e-4) and rates[150] == pytest.approx(5e-5)
    assert rates[199] == pytest.approx(1e-6) and all(a >= b for a, b in zip(rates, rates[1:], strict=False))


def test_training_resumes_to_the_weights_of_an_uninterrupted_run(cities, tmp_path):
    config = UGSTrainConfig(steps=4, batch=2, crops=CROPS, checkpoint_every=2, log_every=2)
    whole = train_ugs([cities / "a"], tmp_path / "whole.safetensors", model_config=TINY, config=config,
                      log=lambda _m: None)
    assert train_ugs([cities / "a"], tmp_path / "cut.safetensors", model_config=TINY, config=config,
                     stop_after=2, log=lambda _m: None) == {"step": 2}
    cut = train_ugs([cities / "a"], tmp_path / "cut.safetensors", model_config=TINY, config=config,
                    eval_scene_dir=cities / "a", log=lambda _m: None)
    assert whole["sha256"] == cut["sha256"]
    model, info = load_checkpoint(tmp_path / "cut.safetensors", architecture="ugsnet")
    assert info["metrics"]["product"]["pixels"] > 0
    assert info["training"]["config"]["crops"]["size"] == 64
    assert not list(tmp_path.glob("*.train-state*"))


def test_adaptation_trains_generator_and_discriminator_and_writes_the_citys_checkpoint(cities, tmp_path):
    base = tmp_path / "base.safetensors"
    train_ugs([cities / "a"], base, model_config=TINY, config=UGSTrainConfig(steps=1, batch=2, crops=CROPS),
              log=lambda _m: None)
    region = shapely.box(*BOUNDS)
    out = tmp_path / "ugsnet-far.safetensors"
    logs = []
    meta = adapt_ugs(base, [cities / "a"], str(cities / "far" / "catalog.json"), "2021", region, "far", out,
                     config=AdaptConfig(steps=3, batch=2, crops=CropConfig(size=128, min_urban=0.3), log_every=1),
                     log=logs.append)
    assert out.is_file() and meta["adaptation"]["region_name"] == "far"
    curve = meta["adaptation"]["loss_curve"]
    assert len(curve) == 3 and all(np.isfinite([c["ugs"], c["adv"], c["d"]]).all() for c in curve)
    before = load_checkpoint(base, architecture="ugsnet")[0].state_dict()
    after = load_checkpoint(out, architecture="ugsnet")[0].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert meta["adaptation"]["base_sha256"] == load_checkpoint(base)[1]["sha256"]


def test_the_command_line_refuses_options_of_another_model(tmp_path):
    code, lines = invoke(["train", "--product", "ugs", "--out", str(tmp_path / "m.safetensors"), "--scenes-dir",
                          str(tmp_path / "s"), "--batch-hr", "4"])
    assert code == 2 and len(lines) == 1 and "--batch-hr" in lines[0] and "--crop" in lines[0]
    region = tmp_path / "r.geojson"
    region.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry":
                                  shapely.geometry.mapping(shapely.box(*BOUNDS))}))
    code, lines = invoke(["adapt", "--product", "cbra", "--region", str(region), "--source", str(tmp_path),
                          "--years", "2021", "--scenes-dir", str(tmp_path / "s")])
    assert code == 2 and len(lines) == 1 and "no checkpoints per region" in lines[0]
