"""The three losses of the paper's spatio-temporal aware learning, each against a value worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from mapgen.models.losses import (
    LossConfig,
    MemoryBank,
    TemporalContrast,
    bce_loss,
    focal_tversky_loss,
    gaussian_kl,
    hr_loss,
    info_nce,
    sg_loss,
    total_loss,
)

# ---- HR loss (Eq. 1–3) -----------------------------------------------------------------------------


def test_bce_by_hand():
    # sigmoid(0) = 1/2 for a rooftop, sigmoid(ln 3) = 3/4 for background: −(ln 1/2 + ln 1/4) / 2 = 1.5 ln 2.
    logits = torch.tensor([0.0, math.log(3.0)])
    target = torch.tensor([1.0, 0.0])
    assert bce_loss(logits, target).item() == pytest.approx(1.5 * math.log(2.0), rel=1e-6)


def test_focal_tversky_by_hand():
    # P̂ = (.5, .75, .25, 0), P = (1, 0, 1, 0): TP = .75, FN = .5 + .75 = 1.25, FP = .75.
    # Denominator TP + 0.6·FN + 0.4·FP = .75 + .75 + .3 = 1.8; FTL = (1 − .750001 / 1.800001)^0.5.
    prob = torch.tensor([[0.5, 0.75], [0.25, 0.0]], dtype=torch.float64)
    target = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    expected = (1 - 0.750001 / 1.800001) ** 0.5
    assert expected == pytest.approx(0.7637626, abs=1e-6)
    assert focal_tversky_loss(prob, target).item() == pytest.approx(expected, rel=1e-12)


def test_focal_tversky_beta_favours_recall():
    # β = 0.6 weighs false negatives (the paper's text, the authors' code): one missed rooftop pixel
    # costs more than one false alarm. FP: TP 2, FP 1 → (1 − 2/2.4)^½; FN: TP 1, FN 1 → (1 − 1/1.6)^½.
    target = torch.tensor([1.0, 1.0, 0.0, 0.0])
    false_positive = focal_tversky_loss(torch.tensor([1.0, 1.0, 1.0, 0.0]), target)
    false_negative = focal_tversky_loss(torch.tensor([1.0, 0.0, 0.0, 0.0]), target)
    assert false_positive.item() == pytest.approx((1 - (2 + 1e-6) / (2.4 + 1e-6)) ** 0.5, rel=1e-6)
    assert false_negative.item() == pytest.approx((1 - (1 + 1e-6) / (1.6 + 1e-6)) ** 0.5, rel=1e-6)
    assert false_negative > false_positive


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
    assert terms["ftl"].item() == pytest.approx(focal_tversky_loss(torch.sigmoid(logits), target).item())


# ---- TC loss (Eq. 4) -------------------------------------------------------------------------------


def test_info_nce_by_hand():
    # τ = 0.5: positive logit 1/0.5 = 2, negatives 0 and −2 → −log(e² / (e² + 1 + e⁻²)) = log(1 + e⁻² + e⁻⁴).
    z = torch.tensor([[1.0, 0.0]])
    negatives = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    loss = info_nce(z, z.clone(), negatives, temperature=0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2) + math.exp(-4)), rel=1e-6)


def test_memory_bank_is_a_zero_initialised_fifo():
    bank = MemoryBank(3, 2)
    assert torch.equal(bank.keys, torch.zeros(3, 2))
    bank.push(torch.tensor([[1.0, 1.0], [2.0, 2.0]]))
    assert bank.keys[:, 0].tolist() == [0.0, 1.0, 2.0]
    bank.push(torch.tensor([[3.0, 3.0], [4.0, 4.0]]))
    assert bank.keys[:, 0].tolist() == [2.0, 3.0, 4.0]  # the oldest two left first
    bank.push(torch.arange(10.0).reshape(5, 2))
    assert bank.keys[:, 0].tolist() == [4.0, 6.0, 8.0]  # a batch larger than the bank keeps its newest
    assert not bank.keys.requires_grad


def test_temporal_contrast_starts_from_the_empty_bank_and_then_remembers():
    # First step: 16 zero negatives, so −log(e^{1/τ} / (e^{1/τ} + 16)) = log(1 + 16·e^{−1/0.75}) for z = ẑ.
    tc = TemporalContrast(dim=4, size=16, temperature=0.75)
    z = torch.tensor([[3.0, 0.0, 0.0, 0.0]])  # normalised to a unit vector inside
    assert tc(z, z.clone()).item() == pytest.approx(math.log(1 + 16 * math.exp(-1 / 0.75)), rel=1e-6)
    assert torch.equal(tc.bank.keys[-1], torch.tensor([1.0, 0.0, 0.0, 0.0]))
    # Second step: the remembered anchor is now one negative, with the same similarity as the positive.
    expected = math.log(1 + (15 + math.exp(1 / 0.75)) * math.exp(-1 / 0.75))
    assert tc(z, z.clone()).item() == pytest.approx(expected, rel=1e-6)


# ---- SG loss (Eq. 5–6) -----------------------------------------------------------------------------


def test_gaussian_kl_by_hand():
    # KL(N(.44, .01²) ‖ N(.5, .02²)) = ln 2 + (1e-4 + 3.6e-3) / 8e-4 − ½.
    value = gaussian_kl(0.44, 0.01, torch.tensor(0.5, dtype=torch.float64), torch.tensor(0.02, dtype=torch.float64))
    assert value.item() == pytest.approx(math.log(2) + 4.625 - 0.5, rel=1e-12)
    same = gaussian_kl(0.44, 0.01, torch.tensor(0.44, dtype=torch.float64), torch.tensor(0.01, dtype=torch.float64))
    assert same.item() == pytest.approx(0.0, abs=1e-12)


def test_sg_loss_by_hand():
    # Built pixels P̂ = .4 and .48: μ̂ = .44, σ̂ = .04·√2 (n − 1 in the denominator);
    # KL = ln(σ̂/.01) + .01² / (2σ̂²) − ½. CE over all four pixels.
    prob_low = torch.tensor([[[[0.4, 0.48], [0.1, 0.2]]]], dtype=torch.float64)
    built = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]], dtype=torch.float64)
    total, terms = sg_loss(prob_low, built)
    ce = -(math.log(0.4) + math.log(0.48) + math.log(0.9) + math.log(0.8)) / 4
    sigma_hat = 0.04 * math.sqrt(2)
    kl = math.log(sigma_hat / 0.01) + 0.01 ** 2 / (2 * sigma_hat ** 2) - 0.5
    assert terms["sg_ce"].item() == pytest.approx(ce, rel=1e-9)
    assert terms["sg_kl"].item() == pytest.approx(kl, rel=1e-9)
    assert total.item() == pytest.approx(ce + kl, rel=1e-9)


def test_sg_loss_without_built_pixels_is_cross_entropy_alone():
    prob_low = torch.full((1, 1, 2, 2), 0.25, requires_grad=True)
    total, terms = sg_loss(prob_low, torch.zeros(1, 1, 2, 2))
    assert terms["sg_kl"].item() == 0.0
    assert total.item() == pytest.approx(-math.log(0.75), rel=1e-6)
    total.backward()
    assert torch.isfinite(prob_low.grad).all()


# ---- Eq. 7 -----------------------------------------------------------------------------------------


def test_total_loss_weighs_the_terms_as_the_paper():
    config = LossConfig()
    assert (config.hr_weight, config.tc_weight, config.sg_weight) == (200.0, 1.0, 5.0)
    hr, tc, sg = torch.tensor(0.5), torch.tensor(2.0), torch.tensor(0.25)
    assert total_loss(hr, tc, sg).item() == pytest.approx(200 * 0.5 + 2.0 + 5 * 0.25)
    assert total_loss(hr, None, None).item() == pytest.approx(100.0)
    authors = LossConfig(hr_weight=1.0, tc_weight=0.005, sg_weight=0.025)
    assert total_loss(hr, tc, sg, authors).item() == pytest.approx(0.5 + 0.01 + 0.025 * 0.25)
    with pytest.raises(ValueError, match="no term"):
        total_loss(None, None, None)


@pytest.mark.parametrize("text", ["200:1", "a:b:c", "1:-1:1", "0:0:0", "inf:1:1"])
def test_loss_weights_are_refused_in_one_line(text):
    with pytest.raises(ValueError, match="HR:TC:SG"):
        LossConfig.parse_weights(text)


def test_loss_weights_parse():
    assert LossConfig.parse_weights("200:1:5") == (200.0, 1.0, 5.0)
    assert LossConfig.parse_weights("1:0.005:0.025") == (1.0, 0.005, 0.025)
