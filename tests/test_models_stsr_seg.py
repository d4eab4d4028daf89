"""STSR-Seg: parameter count of the authors' configuration, output shapes, determinism, cost."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mapgen.models import STSROutput, STSRSeg, STSRSegConfig

AUTHORS_SEGMENTATION_PARAMETERS = 92_381_127  # tests/data/stsr-seg-inference-state-dict.json


def meta_model(config: STSRSegConfig) -> STSRSeg:
    with torch.device("meta"):  # shapes only: no memory, no init cost
        return STSRSeg(config)


def test_full_config_has_the_authors_parameter_count():
    model = meta_model(STSRSegConfig.full())
    assert model.segmentation_parameters() == AUTHORS_SEGMENTATION_PARAMETERS
    # The temporal head is the authors' TP_embedding: FC 2048→128, ReLU, FC 128→128.
    assert model.temporal.fc1.weight.shape == (128, 2048)
    assert model.temporal.fc2.weight.shape == (128, 128)


def test_full_config_costs_the_documented_flops():
    model = meta_model(STSRSegConfig.full())
    with FlopCounterMode(display=False) as counter:
        model.predict(torch.empty(1, 4, 64, 64, device="meta"))
    assert counter.get_total_flops() / 1e9 == pytest.approx(175.4, abs=0.1)  # DESIGN.md: EDSR 64.5 + 110.9


def test_small_config_is_cheap():
    model = meta_model(STSRSegConfig.small())
    with FlopCounterMode(display=False) as counter:
        model.predict(torch.empty(1, 4, 64, 64, device="meta"))
    assert counter.get_total_flops() < 0.65e9  # 1/270 of the paper's network


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_forward_shapes_for_every_encoder_depth(depth):
    config = STSRSegConfig(sr_features=4, sr_blocks=1, encoder_depth=depth, encoder_width=2, temporal_dim=8)
    model = STSRSeg(config).eval()
    out = model(torch.randn(2, 4, 64, 64))
    assert isinstance(out, STSROutput)
    assert out.logits.shape == (2, 1, 256, 256)
    assert out.prob_low.shape == (2, 1, 64, 64)
    assert out.z.shape == (2, 8)
    assert model.predict(torch.randn(3, 4, 32, 48)).shape == (3, 1, 128, 192)


def test_prob_low_is_the_average_of_the_high_resolution_confidence():
    model = STSRSeg(STSRSegConfig.small()).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 4, 16, 16))
    expected = torch.sigmoid(out.logits).reshape(1, 1, 16, 4, 16, 4).mean(dim=(3, 5))
    torch.testing.assert_close(out.prob_low, expected)


def test_full_model_forward_on_one_window():
    torch.manual_seed(0)
    model = STSRSeg(STSRSegConfig.full()).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 4, 64, 64))
    assert out.logits.shape == (1, 1, 256, 256)
    assert out.prob_low.shape == (1, 1, 64, 64)
    assert out.z.shape == (1, 128)
    assert torch.isfinite(out.logits).all()


def test_predict_is_the_sigmoid_of_the_logits():
    model = STSRSeg(STSRSegConfig.small()).eval()
    x = torch.randn(2, 4, 64, 64)
    with torch.no_grad():
        logits = model(x).logits
    torch.testing.assert_close(model.predict(x), torch.sigmoid(logits), rtol=0, atol=0)


def _two_batches() -> tuple[STSRSeg, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = STSRSeg(STSRSegConfig.small()).eval()
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(8, 4, 64, 64, generator=generator)
    b = torch.randn(8, 4, 64, 64, generator=generator)
    b[5] = a[3]
    return model, a, b


def test_predict_does_not_depend_on_the_position_in_a_batch():
    model, a, b = _two_batches()
    for threads in (1, 2):
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            pa, pb = model.predict(a), model.predict(b)
        finally:
            torch.set_num_threads(previous)
        assert pa[3].std() > 0  # a non-trivial output, so that equality means something
        assert torch.equal(pa[3], pb[5])


def test_fixed_batch_size_makes_predict_independent_of_the_callers_batching():
    model, a, _ = _two_batches()
    whole = model.predict(a, batch_size=8)
    assert torch.equal(whole, model.predict(a))
    alone = model.predict(a[3:4], batch_size=8)  # padded to 8 windows inside
    assert torch.equal(alone[0], whole[3])
    assert torch.equal(model.predict(a[:5], batch_size=8), whole[:5])


@pytest.mark.parametrize(
    ("shape", "message"),
    [((1, 3, 64, 64), "B×4×H×W"), ((4, 64, 64), "B×4×H×W"), ((1, 4, 60, 64), "not a multiple of 8")],
)
def test_refuses_an_input_it_cannot_take(shape, message):
    model = STSRSeg(STSRSegConfig.small()).eval()
    with pytest.raises(ValueError, match=message):
        model.predict(torch.zeros(shape))


def test_config_json_round_trip_and_refusals():
    for config in (STSRSegConfig.full(), STSRSegConfig.small()):
        assert STSRSegConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown field"):
        STSRSegConfig.from_dict({**STSRSegConfig.small().to_dict(), "dropout": 0.1})
    with pytest.raises(ValueError, match="encoder_depth"):
        STSRSegConfig(encoder_depth=101)
    with pytest.raises(ValueError, match="scale"):
        STSRSegConfig(scale=5)
