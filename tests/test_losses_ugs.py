"""UGSNet's losses (specs/ugs.md §4): Dice + point CE (Eq. 1–3) and the adaptation losses (Eq. 4–6), each against
a value worked out by hand on a tiny tensor."""

from __future__ import annotations

import math

import pytest
import torch

from mapgen.models.losses import (
    SOURCE_LABEL,
    TARGET_LABEL,
    adversarial_loss,
    dice_loss,
    discriminator_loss,
    point_labels,
    point_loss,
    ugs_loss,
)
from mapgen.models.ugsnet import UGSNet, UGSNetConfig

LN3 = math.log(3.0)  # softmax of logits (0, ln 3) is (1/4, 3/4); sigmoid(ln 3) = 3/4


def test_dice_by_hand_at_the_labels_resolution():
    # p(UGS) = (1/2, 3/4, 1/4, 1/2) against Y = (1, 0, 1, 0): Σ X·Y = 3/4, Σ X = 2, Σ Y = 2.
    # Dice = 1 − (1.5 + ε) / (4 + ε).
    logits = torch.tensor([[[[0.0, 0.0], [LN3, 0.0]], [[0.0, LN3], [0.0, 0.0]]]], dtype=torch.float64)
    target = torch.tensor([[[1, 0], [1, 0]]])
    assert dice_loss(logits, target).item() == pytest.approx(1 - (1.5 + 1e-6) / (4 + 1e-6), rel=1e-12)


def test_dice_upsamples_the_coarse_probabilities_to_the_label():
    # A 1×1 coarse map of p = 3/4 covers the 4×4 label, 4 pixels of which are UGS:
    # Σ X·Y = 3, Σ X = 12, Σ Y = 4 → 1 − 6/16 = 0.625 (ε aside).
    logits = torch.tensor([0.0, LN3], dtype=torch.float64).reshape(1, 2, 1, 1)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 0] = 1
    assert dice_loss(logits, target).item() == pytest.approx(1 - (6 + 1e-6) / (16 + 1e-6), rel=1e-12)


def test_dice_counts_the_whole_batch_and_is_zero_for_a_perfect_or_empty_match():
    sure = torch.tensor([-20.0, 20.0]).reshape(1, 2, 1, 1).expand(2, 2, 2, 2)
    target = torch.ones(2, 2, 2)
    assert dice_loss(sure, target).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_loss(-sure, torch.zeros(2, 2, 2)).item() == pytest.approx(0.0, abs=1e-6)  # no UGS anywhere


def test_point_labels_are_the_nearest_pixel():
    target = torch.tensor([[[0, 1, 1], [1, 0, 0]]])  # 2×3
    points = torch.tensor([[[0.1, 0.2], [0.5, 0.2], [0.9, 0.8], [0.1, 0.9], [0.0, 0.0], [0.999, 0.999]]])
    # pixel (col, row): (0, 0), (1, 0), (2, 1), (0, 1), the corner (0, 0) and the far corner (2, 1)
    assert point_labels(points, target).tolist() == [[0, 1, 0, 1, 0, 0]]


def test_point_loss_by_hand():
    # Point 1 reads label 0 with logits (0, ln 3): −ln(1/4); point 2 reads label 1 with logits (0, 0): −ln(1/2).
    target = torch.tensor([[[0, 1], [1, 0]]])
    points = torch.tensor([[[0.25, 0.25], [0.75, 0.25]]])
    rend = torch.tensor([[[0.0, 0.0], [LN3, 0.0]]])  # B×2×N
    assert point_loss(rend, points, target).item() == pytest.approx(1.5 * math.log(2.0), rel=1e-6)


def test_ugs_loss_is_dice_plus_point_ce_one_to_one():
    target = torch.tensor([[[0, 1], [1, 0]]])
    output = {
        "coarse": torch.tensor([0.0, LN3]).reshape(1, 2, 1, 1),
        "rend": torch.tensor([[[0.0, 0.0], [LN3, 0.0]]]),
        "points": torch.tensor([[[0.25, 0.25], [0.75, 0.25]]]),
    }
    total, terms = ugs_loss(output, target)
    assert set(terms) == {"dice", "points"}
    # Dice: X = 3/4 everywhere, Σ X·Y = 3/2, Σ X = 3, Σ Y = 2 → 1 − 3/5.
    assert terms["dice"].item() == pytest.approx(1 - (3 + 1e-6) / (5 + 1e-6), rel=1e-6)
    assert terms["points"].item() == pytest.approx(1.5 * math.log(2.0), rel=1e-6)
    assert total.item() == pytest.approx(terms["dice"].item() + terms["points"].item(), rel=1e-7)


def test_ugs_loss_trains_the_network():
    torch.manual_seed(0)
    model = UGSNet(UGSNetConfig(width=4, blocks=(1, 1, 1, 1), reduce_channels=4, head_channels=8,
                                attention_min=2)).train()
    target = (torch.rand(2, 32, 32) > 0.5).long()
    total, _ = ugs_loss(model(torch.randn(2, 3, 32, 32)), target)
    total.backward()
    assert torch.isfinite(total)
    assert model.pointhead.mlp.weight.grad.abs().sum() > 0  # the point CE reaches the point head
    assert model.decoder.last_conv[4].weight.grad.abs().sum() > 0


def test_discriminator_loss_by_hand():
    # D(P_s) = 0 against "source" (1): ln 2. D(P_t) = ln 3, i.e. 3/4 "source", against "target" (0): ln 4.
    assert (SOURCE_LABEL, TARGET_LABEL) == (1.0, 0.0)  # the paper's y: 1 = from I_s, 0 = from I_t
    d_source = torch.zeros(1, 1, 2, 2)
    d_target = torch.full((1, 1, 2, 2), LN3)
    assert discriminator_loss(d_source, d_target).item() == pytest.approx((math.log(2) + math.log(4)) / 2, rel=1e-6)


def test_adversarial_loss_by_hand_and_direction():
    # D(P_t) = ln 3 against "source": −ln(3/4). Its gradient pushes D(P_t) towards "source" (up).
    d_target = torch.full((1, 1, 2, 2), LN3, requires_grad=True)
    loss = adversarial_loss(d_target)
    assert loss.item() == pytest.approx(-math.log(0.75), rel=1e-6)
    loss.backward()
    assert (d_target.grad < 0).all()
    # The discriminator's own loss pushes D(P_t) the other way (towards "target").
    d_t = torch.full((1, 1, 2, 2), LN3, requires_grad=True)
    discriminator_loss(torch.zeros(1, 1, 2, 2), d_t).backward()
    assert (d_t.grad > 0).all()
