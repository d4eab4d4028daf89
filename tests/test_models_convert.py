"""The authors' checkpoint layouts (their state-dict listings, tests/data/) convert and load into STSRSeg."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mapgen.models import STSRSeg, STSRSegConfig, convert_authors_state_dict, load_authors_state_dict
from mapgen.models.convert import rename_authors_key

SPECS = Path(__file__).resolve().parent / "data"  # copies of the project's shared/specs listings
INFERENCE = SPECS / "stsr-seg-inference-state-dict.json"
TRAINING = SPECS / "stsr-seg-training-state-dict.json"
UGSNET = SPECS / "ugsnet-state-dict.json"

# Keys filled with random values, so that the value check follows real data through the renaming.
SAMPLED = (
    "module.sr.body.16.weight",
    "module.sr.tail.0.2.bias",
    "module.ss.firstbn.running_var",
    "module.ss.encoder3.0.downsample.0.weight",
    "module.ss.Up_conv2.conv.3.weight",
    "module.ss.bn5.bias",
    "module.ss.Conv.weight",
    "module.ss.TP_embedding.2.weight",
)


def fake_state_dict(spec: Path) -> dict[str, torch.Tensor]:
    """Tensors with the spec's names and shapes; most are one stored value broadcast (no memory)."""
    shapes: dict[str, list[int]] = json.loads(spec.read_text())
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in shapes.items():
        if key in SAMPLED:
            state[key] = torch.randn(shape, generator=generator)
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        else:
            state[key] = torch.ones(()).expand(shape)
    return state


@pytest.fixture(scope="module")
def full_model() -> STSRSeg:
    return STSRSeg(STSRSegConfig.full())


def test_inference_checkpoint_loads_strictly_except_the_temporal_head(full_model):
    state = fake_state_dict(INFERENCE)
    converted = convert_authors_state_dict(state)
    assert not any(k.startswith("temporal.") for k in converted)
    assert not any("Conv1" in k or k.startswith("module.") for k in converted)
    absent = load_authors_state_dict(full_model, state)
    assert absent == sorted(k for k in full_model.state_dict() if k.startswith("temporal."))
    expected = set(full_model.state_dict()) - set(absent)
    assert set(converted) == expected


def test_training_checkpoint_loads_everything_and_drops_moco(full_model):
    state = fake_state_dict(TRAINING)
    converted = convert_authors_state_dict(state)
    assert set(converted) == set(full_model.state_dict())
    full_model.load_state_dict(converted, strict=True)
    assert load_authors_state_dict(full_model, state) == []


def test_converted_values_are_the_source_values(full_model):
    state = fake_state_dict(TRAINING)
    load_authors_state_dict(full_model, state)
    ours = full_model.state_dict()
    pairs = {
        "module.sr.body.16.weight": "edsr.body_conv.weight",
        "module.sr.tail.0.2.bias": "edsr.upsampler.1.conv.bias",
        "module.ss.firstbn.running_var": "unet.encoder.stem.bn3.running_var",
        "module.ss.encoder3.0.downsample.0.weight": "unet.encoder.layer3.0.shortcut.conv.weight",
        "module.ss.Up_conv2.conv.3.weight": "unet.decoder.3.fuse.conv2.weight",
        "module.ss.bn5.bias": "unet.decoder.0.post_bn.bias",
        "module.ss.Conv.weight": "unet.head.conv.weight",
        "module.ss.TP_embedding.2.weight": "temporal.fc1.weight",
    }
    for theirs, mine in pairs.items():
        assert rename_authors_key(theirs) == mine
        assert torch.equal(ours[mine], state[theirs]), theirs
    assert int(ours["unet.encoder.layer1.0.bn1.num_batches_tracked"]) == 7


def test_without_the_data_parallel_prefix_too():
    state = {k.removeprefix("module."): v for k, v in fake_state_dict(INFERENCE).items()}
    assert "edsr.head.weight" in convert_authors_state_dict(state)


def test_refuses_a_wrong_shape_naming_the_key():
    state = fake_state_dict(INFERENCE)
    state["module.ss.encoder2.1.conv2.weight"] = torch.zeros(128, 128, 1, 1)
    with pytest.raises(ValueError, match=r"'module\.ss\.encoder2\.1\.conv2\.weight' has shape") as info:
        convert_authors_state_dict(state)
    assert "\n" not in str(info.value)


def test_refuses_a_ugsnet_checkpoint():
    state = {k: torch.zeros(()).expand(s) for k, s in json.loads(UGSNET.read_text()).items()}
    with pytest.raises(ValueError, match="not an STSR-Seg checkpoint") as info:
        convert_authors_state_dict(state)
    assert "backbone.conv1.weight" in str(info.value) and "\n" not in str(info.value)


def test_refuses_unknown_and_missing_keys():
    state = fake_state_dict(INFERENCE)
    with pytest.raises(ValueError, match="unknown key 'module.ss.attention.weight'"):
        convert_authors_state_dict({**state, "module.ss.attention.weight": torch.zeros(1)})
    del state["module.ss.Up4.up.1.bias"]
    with pytest.raises(ValueError, match=r"missing keys 1 \(unet\.decoder\.1\.up\.conv\.bias\)"):
        convert_authors_state_dict(state)


def test_refuses_a_checkpoint_for_another_config():
    with pytest.raises(ValueError, match="has shape"):
        convert_authors_state_dict(fake_state_dict(INFERENCE), STSRSegConfig.small())
