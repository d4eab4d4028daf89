"""UGSNet (specs/ugs.md §2–§3): shapes, the PointRend subdivision against a plain reference, training points,
the ECA gates by hand, refusals, the discriminator, determinism, and the authors' checkpoint layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mapgen.models import get_architecture
from mapgen.models.cost import window_flop
from mapgen.models.ugsnet import (
    CoordAtt,
    FCDiscriminator,
    UGSNet,
    UGSNetConfig,
    most_uncertain,
    point_sample,
)
from mapgen.models.ugsnet_convert import UNUSED_DECODER_MODULES, convert_authors_state_dict, is_authors_layout

DATA = Path(__file__).resolve().parent / "data"
AUTHORS = DATA / "ugsnet-state-dict.json"
STSR_SEG = DATA / "stsr-seg-inference-state-dict.json"
# The authors' listing: its parameters (weights and biases, unused decoder modules included) and all its
# elements (also the BN running statistics and the 69 scalar num_batches_tracked).
AUTHORS_PARAMETERS = 32_361_946
AUTHORS_ELEMENTS = 32_417_535
UNUSED_PARAMETERS = 273_396  # of the 12 decoder modules their forward never runs

# A network of the same code, as small as it gets: 32×32 inputs run in milliseconds.
TINY = UGSNetConfig(width=4, blocks=(1, 1, 1, 1), reduce_channels=4, head_channels=8, points=50,
                    attention_min=2)


def meta_model(config: UGSNetConfig) -> UGSNet:
    with torch.device("meta"):  # shapes only: no memory, no init cost
        return UGSNet(config)


def randomise_batch_norm(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and affine parameters, so that eval-mode BN is not the identity."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
            module.weight.data.copy_(1 + 0.2 * torch.randn(n, generator=generator))
            module.bias.data.copy_(0.1 * torch.randn(n, generator=generator))


# ---- configuration ---------------------------------------------------------------------------------


def test_config_json_round_trip_and_refusals():
    for config in (UGSNetConfig.full(), UGSNetConfig.small(), TINY):
        assert UGSNetConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown field"):
        UGSNetConfig.from_dict({**UGSNetConfig.small().to_dict(), "depth": 101})
    with pytest.raises(ValueError, match="multi-grid"):
        UGSNetConfig(blocks=(3, 4, 6, 4))
    with pytest.raises(ValueError, match="blocks"):
        UGSNetConfig(blocks=(3, 4, 6))
    with pytest.raises(ValueError, match="num_classes"):
        UGSNetConfig(num_classes=1)
    with pytest.raises(ValueError, match="importance"):
        UGSNetConfig(importance=1.5)


# ---- shapes and layout -----------------------------------------------------------------------------


def test_full_config_is_the_authors_network():
    model = meta_model(UGSNetConfig.full())
    parameters = sum(p.numel() for p in model.parameters())
    elements = sum(t.numel() for t in model.state_dict().values())
    listing = json.loads(AUTHORS.read_text())
    unused = {k: s for k, s in listing.items() if k.split(".")[1] in UNUSED_DECODER_MODULES}
    assert sum(math.prod(s) for k, s in unused.items() if k.endswith((".weight", ".bias"))) == UNUSED_PARAMETERS
    assert parameters + UNUSED_PARAMETERS == AUTHORS_PARAMETERS
    assert elements + sum(math.prod(s) for s in unused.values()) == AUTHORS_ELEMENTS
    b = model.backbone
    assert (b.conv1.kernel_size, b.conv1.stride, b.conv1.padding) == ((7, 7), (1, 1), (3, 3))  # stride-1 stem
    assert [len(b.layer1), len(b.layer2), len(b.layer3), len(b.layer4)] == [3, 4, 6, 3]
    assert [blk.conv2.dilation[0] for blk in b.layer4] == [1, 2, 4]
    assert b.layer4[0].conv2.stride == (2, 2) and b.layer4[0].downsample is not None
    assert b.coord4.conv_h.weight.shape == (2048, 128, 3, 3)
    assert model.pointhead.mlp.weight.shape == (2, 514, 1)


def test_full_config_shapes_on_the_meta_device():
    model = meta_model(UGSNetConfig.full()).eval()
    out = model(torch.empty(1, 3, 512, 512, device="meta"))
    assert out["coarse"].shape == (1, 2, 128, 128)
    assert out["res2"].shape == (1, 512, 128, 128)
    assert out["fine"].shape == (1, 2, 512, 512)


def test_plan_prices_the_full_network():
    arch = get_architecture("ugsnet")
    assert arch.model_cls is UGSNet and arch.paper_config() == UGSNetConfig.full()
    assert window_flop("ugsnet", {"image": (3, 512, 512)}) / 1e9 == pytest.approx(206.5, abs=0.1)


def test_small_config_shapes_in_eval_and_training():
    torch.manual_seed(0)
    model = UGSNet(UGSNetConfig.small())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model.eval()(x)
        assert set(out) == {"coarse", "res2", "fine"}
        assert out["coarse"].shape == (2, 2, 16, 16)  # 1/4: the stride-1 stem
        assert out["res2"].shape == (2, 64, 16, 16)
        assert out["fine"].shape == (2, 2, 64, 64)
        assert torch.equal(model.forward_heads({"rgb": x}, None)["fine"], out["fine"])
        train = model.train()(x)
    assert set(train) == {"coarse", "res2", "rend", "points"}
    assert train["rend"].shape == (2, 2, 4 * 64)  # N = 4·W
    assert train["points"].shape == (2, 4 * 64, 2)


# ---- point head ------------------------------------------------------------------------------------


def bilinear(image: np.ndarray, x: float, y: float) -> np.ndarray:
    """C×H×W at pixel coordinates (x, y), zero outside (grid_sample's zero padding)."""
    _, h, w = image.shape
    x0, y0 = math.floor(x), math.floor(y)
    value = np.zeros(image.shape[0])
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                value += wy * wx * image[:, yy, xx]
    return value


def upsample2(image: np.ndarray) -> np.ndarray:
    """×2 bilinear with align_corners=True: output pixel i reads input i·(n − 1)/(2n − 1)."""
    c, h, w = image.shape
    out = np.empty((c, 2 * h, 2 * w))
    for i in range(2 * h):
        for j in range(2 * w):
            out[:, i, j] = bilinear(image, j * (w - 1) / (2 * w - 1), i * (h - 1) / (2 * h - 1))
    return out


def subdivide(coarse: np.ndarray, res2: np.ndarray, weight: np.ndarray, bias: np.ndarray, points: int,
              width: int) -> tuple[np.ndarray, list[int]]:
    """The spec's §2.4 inference for one window, written out: upsample, the most uncertain cells, their features
    at the cell centres (a point p reads pixel p·n − 0.5), the linear layer, replacement. Returns the fine map
    and how many cells each step changed."""
    out, changed = coarse, []
    while out.shape[-1] != width:
        out = upsample2(out)
        _, h, w = out.shape
        ranked = np.sort(out, axis=0)[::-1]
        uncertainty = -(ranked[0] - ranked[1]).reshape(-1)
        cells = np.argsort(-uncertainty, kind="stable")[: min(points, h * w)]
        new = out.copy()
        for cell in cells:
            y, x = divmod(int(cell), w)
            px, py = (x + 0.5) / w, (y + 0.5) / h
            feature = np.concatenate([bilinear(out, px * w - 0.5, py * h - 0.5),
                                      bilinear(res2, px * res2.shape[2] - 0.5, py * res2.shape[1] - 0.5)])
            new[:, y, x] = weight @ feature + bias
        changed.append(int((new != out).any(axis=0).sum()))
        out = new
    return out, changed


@pytest.mark.parametrize("points", [50, 10_000])  # some cells of each step; every cell (min(points, H·W))
def test_pointrend_inference_matches_a_plain_reference(points):
    torch.manual_seed(0)
    config = UGSNetConfig(**{**TINY.to_dict(), "points": points})
    model = UGSNet(config).double().eval()
    randomise_batch_norm(model)
    x = torch.randn(2, 3, 32, 48, dtype=torch.float64)
    with torch.no_grad():
        out = model(x)
    weight = model.pointhead.mlp.weight[:, :, 0].detach().numpy()
    bias = model.pointhead.mlp.bias.detach().numpy()
    for i in range(2):
        expected, changed = subdivide(out["coarse"][i].numpy(), out["res2"][i].numpy(), weight, bias, points, 48)
        assert changed == [min(points, 16 * 24), min(points, 32 * 48)]  # 8×12 → 16×24 → 32×48
        np.testing.assert_allclose(out["fine"][i].numpy(), expected, rtol=0, atol=1e-5)


def test_training_points_are_the_most_uncertain_candidates_plus_uniform_ones():
    torch.manual_seed(0)
    config = UGSNetConfig(**{**TINY.to_dict(), "oversample": 3, "importance": 0.75})
    model = UGSNet(config).train()
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(1)  # the decoder's dropout draws from the global RNG
    out = model(x, generator=torch.Generator().manual_seed(7))
    n = 4 * 32
    kept = int(0.75 * n)
    points = out["points"]
    assert points.shape == (2, n, 2) and out["rend"].shape == (2, 2, n)
    assert points.min() >= 0 and points.max() <= 1
    # The same generator again: the k·N candidates, then the N − int(β·N) coverage points.
    generator = torch.Generator().manual_seed(7)
    candidates = torch.rand(2, 3 * n, 2, generator=generator)
    coverage = torch.rand(2, n - kept, 2, generator=generator)
    torch.testing.assert_close(points[:, kept:], coverage, rtol=0, atol=0)
    ranked = torch.sort(out["coarse"].detach(), dim=1, descending=True).values
    sampled = point_sample(ranked, candidates)
    score = sampled[:, 1] - sampled[:, 0]  # −(top1 − top2) of every candidate
    for b in range(2):
        chosen = (points[b, :kept, None, :] == candidates[b, None]).all(dim=2)  # kept × k·N
        assert (chosen.sum(dim=1) == 1).all()  # each importance point is one of the candidates
        picked = chosen.any(dim=0)
        assert int(picked.sum()) == kept
        assert score[b, picked].min() >= score[b, ~picked].max()
    # Seedable: the same generator (and dropout mask) gives the same points.
    torch.manual_seed(1)
    again = model(x, generator=torch.Generator().manual_seed(7))["points"]
    assert torch.equal(again, points)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), min_size=12, max_size=12), min_size=1, max_size=4),
       st.integers(1, 12))
def test_most_uncertain_breaks_ties_by_position_whatever_the_batch(rows, count):
    scores = torch.tensor(rows, dtype=torch.float32)
    index = most_uncertain(scores, count)
    for i, row in enumerate(rows):
        expected = np.argsort(-np.array(row), kind="stable")[:count]
        assert index[i].tolist() == expected.tolist()
        assert torch.equal(most_uncertain(scores[i : i + 1], count)[0], index[i])


# ---- ECA -------------------------------------------------------------------------------------------


def test_coordinate_attention_is_x_times_three_gates_by_hand():
    torch.manual_seed(0)
    att = CoordAtt(8, reduction=4, minimum=2).double().eval()
    randomise_batch_norm(att, seed=3)
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64)

    def conv1x1(conv: torch.nn.Conv2d, v: torch.Tensor) -> torch.Tensor:  # v: B×C×L
        return torch.einsum("mc,bcl->bml", conv.weight[:, :, 0, 0], v) + conv.bias[None, :, None]

    def bn(norm: torch.nn.BatchNorm2d, v: torch.Tensor) -> torch.Tensor:
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        return (v - norm.running_mean[None, :, None]) * scale[None, :, None] + norm.bias[None, :, None]

    def hswish(v: torch.Tensor) -> torch.Tensor:
        return v * torch.clamp(v + 3, 0, 6) / 6

    def conv3_line(kernel: torch.Tensor, bias: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # A 3-tap conv along the line, zero-padded: on an H×1 (1×W) map only the kernel's centre column (row)
        # meets data. kernel: C×mip×3.
        padded = torch.nn.functional.pad(v, (1, 1))
        length = v.shape[-1]
        return sum(torch.einsum("cm,bml->bcl", kernel[:, :, t], padded[:, :, t : t + length])
                   for t in range(3)) + bias[None, :, None]

    with torch.no_grad():
        y_h = hswish(bn(att.bn1, conv1x1(att.conv1, x.mean(dim=3))))  # B×mip×H
        y_w = hswish(bn(att.bn1, conv1x1(att.conv1, x.mean(dim=2))))  # B×mip×W
        a_h = torch.sigmoid(conv3_line(att.conv_h.weight[:, :, :, 1], att.conv_h.bias, y_h))  # B×C×H
        a_w = torch.sigmoid(conv3_line(att.conv_w.weight[:, :, 1, :], att.conv_w.bias, y_w))  # B×C×W
        pooled = x.mean(dim=(2, 3))[:, :, None]
        a_c = torch.sigmoid(conv1x1(att.conv_c, hswish(bn(att.bn2, conv1x1(att.conv2, pooled)))))[:, :, 0]
        expected = x * a_c[:, :, None, None] * a_w[:, :, None, :] * a_h[:, :, :, None]
        torch.testing.assert_close(att(x), expected, rtol=1e-12, atol=1e-12)


# ---- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "message"),
    [((1, 4, 64, 64), r"UGSNet expects B×3×H×W RGB input, got \(1, 4, 64, 64\)"),
     ((3, 64, 64), "B×3×H×W RGB"),
     ((1, 3, 60, 64), "UGSNet window 60×64 is not a multiple of 16")],
)
def test_refuses_an_input_it_cannot_take(shape, message):
    model = UGSNet(TINY).eval()
    with pytest.raises(ValueError, match=message) as info:
        model(torch.zeros(shape))
    assert "\n" not in str(info.value)


def test_refuses_a_training_batch_of_one_and_heads_in_training_mode():
    model = UGSNet(TINY).train()
    with pytest.raises(ValueError, match="at least 2 windows"):
        model(torch.zeros(1, 3, 32, 32))
    with pytest.raises(RuntimeError, match="eval mode"):
        model.forward_heads({"image": torch.zeros(2, 3, 32, 32)}, None)


# ---- discriminator ---------------------------------------------------------------------------------


def test_discriminator_is_five_strided_convs_with_raw_logits():
    d = FCDiscriminator(2, ndf=8)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(2, 8), (8, 16), (16, 32), (32, 64), (64, 1)]
    assert all((c.kernel_size, c.stride, c.padding) == ((4, 4), (2, 2), (1, 1)) for c in convs)
    assert d.leaky_relu.negative_slope == 0.2
    x = torch.softmax(torch.randn(2, 2, 64, 96), dim=1)
    with torch.no_grad():
        assert d(x).shape == (2, 1, 2, 3)  # 1/32
        d.classifier.bias.fill_(-5.0)
        low = d(x)
        d.classifier.bias.fill_(5.0)
        high = d(x)
    assert (low < 0).all() and (high > 1).all()  # no sigmoid/softmax on the output
    assert sum(p.numel() for p in FCDiscriminator().parameters()) == 2_763_713


# ---- determinism -----------------------------------------------------------------------------------


def test_a_window_gets_the_same_fine_logits_wherever_it_sits():
    torch.manual_seed(0)
    model = UGSNet(UGSNetConfig.small()).eval()
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(3, 3, 64, 64, generator=generator)
    b = torch.randn(3, 3, 64, 64, generator=generator)
    b[2] = a[0]
    with torch.no_grad():
        fa, fb, alone = model(a)["fine"], model(b)["fine"], model(a[:1])["fine"]
    assert fa[0].std() > 0
    assert torch.equal(fa[0], fb[2])  # same batch size, other position and neighbours: bit-identical
    # Another batch size may pick other CPU kernels: the last bits of the logits can differ (~1e-7 measured).
    torch.testing.assert_close(alone[0], fa[0], rtol=0, atol=1e-5)


# ---- the authors' checkpoint layout ----------------------------------------------------------------

SAMPLED = (
    "backbone.conv1.weight",
    "backbone.layer4.2.conv2.weight",
    "backbone.layer2.0.downsample.1.running_var",
    "backbone.coord3.conv_h.weight",
    "decoder.dr5.bn1.bias",
    "decoder.last_conv.4.weight",
    "pointhead.mlp.bias",
)


def fake_state_dict(spec: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensors with the listing's names and shapes; the sampled keys random, the rest one value broadcast."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in json.loads(spec.read_text()).items():
        if key in SAMPLED:
            value = torch.randn(shape, generator=generator)
        elif key.endswith("num_batches_tracked"):
            value = torch.tensor(7)
        else:
            value = torch.ones(()).expand(shape)
        state[prefix + key] = value
    return state


@pytest.fixture(scope="module")
def full_model() -> UGSNet:
    return UGSNet(UGSNetConfig.full())


@pytest.mark.parametrize("prefix", ["", "module."])
def test_authors_checkpoint_converts_and_loads_strictly(full_model, prefix):
    state = fake_state_dict(AUTHORS, prefix)
    assert is_authors_layout(state)
    converted = convert_authors_state_dict(state)
    assert set(converted) == set(full_model.state_dict())
    assert len(state) - len(converted) == 33  # the unused modules' keys
    full_model.load_state_dict(converted, strict=True)
    ours = full_model.state_dict()
    for key in SAMPLED:
        assert torch.equal(ours[key], state[prefix + key]), key
    assert int(ours["backbone.layer1.0.bn1.num_batches_tracked"]) == 7
    assert not is_authors_layout(ours)  # our own checkpoints are not converted


def test_refuses_another_architectures_checkpoint_in_one_line():
    state = {k: torch.zeros(()).expand(s) for k, s in json.loads(STSR_SEG.read_text()).items()}
    with pytest.raises(ValueError, match="not a UGSNet checkpoint") as info:
        convert_authors_state_dict(state)
    assert "module.sr.head.0.weight" in str(info.value) and "\n" not in str(info.value)


def test_refuses_unknown_missing_and_misshapen_keys():
    state = fake_state_dict(AUTHORS)
    extra = {"decoder.aspp.weight": torch.zeros(1), "backbone.fc.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"unknown keys 2 \(backbone\.fc\.weight, decoder\.aspp\.weight\)"):
        convert_authors_state_dict({**state, **extra})
    wrong = {**state, "module.backbone.conv1.weight": state["backbone.conv1.weight"]}
    with pytest.raises(ValueError, match="both map to 'backbone.conv1.weight'"):
        convert_authors_state_dict(wrong)
    misshapen = {**state, "backbone.layer3.1.conv2.weight": torch.zeros(256, 256, 1, 1)}
    with pytest.raises(ValueError, match=r"'backbone\.layer3\.1\.conv2\.weight' has shape") as info:
        convert_authors_state_dict(misshapen)
    assert "\n" not in str(info.value)
    del state["pointhead.mlp.bias"]
    with pytest.raises(ValueError, match=r"missing keys 1 \(pointhead\.mlp\.bias\)"):
        convert_authors_state_dict(state)


def test_refuses_a_checkpoint_for_another_config():
    with pytest.raises(ValueError, match="has shape"):
        convert_authors_state_dict(fake_state_dict(AUTHORS), UGSNetConfig.small())
