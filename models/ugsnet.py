"""UGSNet (UGS-1m, Shi et al. 2022; specs/ugs.md §2–§3): ResNet-50 with attention, multi-level fusion, PointRend.

x (B×3×H×W RGB) → stride-1 7×7 stem + max-pool (1/2) → layer1..layer4, each followed by an "enhanced
coordinate attention" (ECA) → four 1×1 reductions fused at 1/4 → coarse logits (B×2×H/4×W/4) → point head:
in training, logits at N = 4·W sampled points; in eval, two ×2 subdivision steps that re-predict the most
uncertain cells, giving the "fine" logits (B×2×H×W), the product's output. Channel 1 is UGS.

The layout and module names follow the authors' code (liumency/UGS-1m, described in the spec; no code of theirs
is copied), so their checkpoints load after dropping the decoder modules their forward never runs
(`ugsnet_convert.py`). Where the paper and the code differ (one 3×3 + one 1×1 conv in the head, a single linear
point head, a stride-1 stem) we follow the code, the only source of the details.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .registry import DictConfig

# Output stride of layer4 (stem max-pool, layer2, layer3, layer4): H and W must be multiples of it.
NETWORK_STRIDE = 16
# Dilations of the 3×3 convs of layer4's multi-grid unit, one per bottleneck.
MULTI_GRID = (1, 2, 4)
EXPANSION = 4  # bottleneck output channels = 4 × planes


@dataclass(frozen=True)
class UGSNetConfig(DictConfig):
    """UGSNet's sizes. `blocks` are the bottlenecks of layer1..layer4; layer4's units take the dilations
    `MULTI_GRID[:blocks[3]]`. `points` is the inference budget per subdivision step, `oversample` (k) and
    `importance` (β) PointRend's training-time sampling (spec §2.4)."""

    in_channels: int = 3
    num_classes: int = 2
    width: int = 64
    blocks: tuple[int, int, int, int] = (3, 4, 6, 3)
    reduce_channels: int = 96
    head_channels: int = 256
    dropout: float = 0.5
    points: int = 1024
    oversample: int = 3
    importance: float = 0.75
    attention_reduction: int = 16
    attention_min: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))  # a JSON list comes back as a tuple
        if len(self.blocks) != 4 or any(not isinstance(b, int) or b < 1 for b in self.blocks):
            raise ValueError(f"blocks must be 4 positive counts (layer1..layer4), got {self.blocks}")
        if self.blocks[3] > len(MULTI_GRID):
            raise ValueError(f"layer4 is a multi-grid unit of at most {len(MULTI_GRID)} blocks, got {self.blocks[3]}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (uncertainty is top1 − top2), got {self.num_classes}")
        for name in ("in_channels", "width", "reduce_channels", "head_channels", "points", "oversample",
                     "attention_reduction", "attention_min"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.importance <= 1.0:
            raise ValueError(f"importance must be in [0, 1], got {self.importance}")

    @classmethod
    def full(cls) -> UGSNetConfig:
        """The authors' network: 32,088,550 parameters (their checkpoint's 32,361,946 less the 273,396 of the
        decoder modules their forward never runs); 206.5 GFLOP per 512×512 window (eval, to the fine map)."""
        return cls()

    @classmethod
    def small(cls) -> UGSNetConfig:
        """The same code sized for CPU training: 421,022 parameters, 2.53 GFLOP per 512×512 window (1/82 of the
        full network). One training step (forward, `ugs_loss`, backward, Adam) of a batch of 8 at 256×256 took
        0.40 s on 2 CPU threads (torch 2.13 CPU, this project's 2-core development machine); width 16 took 1.0 s.

        The stride-1 stem and layer1 run at full and half resolution, so the width sets most of the cost; layer4
        (at 1/16, cheap) keeps the full multi-grid unit (dilations 1, 2, 4).
        """
        return cls(width=8, blocks=(1, 1, 1, 3), reduce_channels=16, head_channels=32)



# --------------------------------------------------------------------------------------------------
# Backbone


def h_swish(x: torch.Tensor) -> torch.Tensor:
    """x · ReLU6(x + 3) / 6, the activation of both ECA branches."""
    return x * F.relu6(x + 3) / 6


class CoordAtt(nn.Module):
    """The paper's "enhanced coordinate attention" (ECA) as the authors' code has it (spec §2.2).

    Coordinate attention (Hou et al. 2021) with 3×3 directional convs, plus a channel branch; the three sigmoid
    gates multiply the input, with no residual: out = x · a_c · a_w · a_h.
    """

    def __init__(self, channels: int, reduction: int = 16, minimum: int = 8) -> None:
        super().__init__()
        mip = max(minimum, channels // reduction)
        self.conv1 = nn.Conv2d(channels, mip, 1)
        self.bn1 = nn.BatchNorm2d(mip)
        # On H×1 and 1×W maps only the kernel's centre column (row) meets non-padding values; the authors'
        # 3×3 shape is kept so that their weights load.
        self.conv_h = nn.Conv2d(mip, channels, 3, padding=1)
        self.conv_w = nn.Conv2d(mip, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, mip, 1)
        self.bn2 = nn.BatchNorm2d(mip)
        self.conv_c = nn.Conv2d(mip, channels, 1)

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(a_c B×C×1×1, a_w B×C×1×W, a_h B×C×H×1): the three sigmoid gates."""
        h, w = x.shape[-2:]
        x_h = x.mean(dim=3, keepdim=True)  # B×C×H×1
        x_w = x.mean(dim=2, keepdim=True).transpose(2, 3)  # B×C×W×1
        y = h_swish(self.bn1(self.conv1(torch.cat((x_h, x_w), dim=2))))
        y_h, y_w = torch.split(y, (h, w), dim=2)
        a_h = torch.sigmoid(self.conv_h(y_h))
        a_w = torch.sigmoid(self.conv_w(y_w.transpose(2, 3)))
        a_c = torch.sigmoid(self.conv_c(h_swish(self.bn2(self.conv2(x.mean(dim=(2, 3), keepdim=True))))))
        return a_c, a_w, a_h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a_c, a_w, a_h = self.gates(x)
        return x * a_c * a_w * a_h


class Bottleneck(nn.Module):
    """torchvision-style bottleneck: 1×1 → 3×3 (stride, dilation) → 1×1 (×4), projection `downsample` [conv, BN]."""

    def __init__(self, in_channels: int, planes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        out_channels = planes * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def _layer(in_channels: int, planes: int, dilations: tuple[int, ...], stride: int) -> nn.Sequential:
    """Bottlenecks with these dilations; the first has the stride (and the projection)."""
    blocks = [Bottleneck(in_channels, planes, stride, dilations[0])]
    blocks += [Bottleneck(planes * EXPANSION, planes, 1, d) for d in dilations[1:]]
    return nn.Sequential(*blocks)


class Backbone(nn.Module):
    """Stride-1 7×7 stem + max-pool, four bottleneck stages each refined by an ECA (spec §2.1).

    The stem's stride 1 (torchvision's is 2) puts layer1 at 1/2 and the coarse map at 1/4; with the
    torchvision stem the authors' weights would still load, silently giving other shapes (spec §8.1).
    """

    def __init__(self, config: UGSNetConfig) -> None:
        super().__init__()
        c, w = config, config.width
        self.conv1 = nn.Conv2d(c.in_channels, w, 7, stride=1, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = _layer(w, w, (1,) * c.blocks[0], stride=1)
        self.layer2 = _layer(w * EXPANSION, 2 * w, (1,) * c.blocks[1], stride=2)
        self.layer3 = _layer(2 * w * EXPANSION, 4 * w, (1,) * c.blocks[2], stride=2)
        self.layer4 = _layer(4 * w * EXPANSION, 8 * w, MULTI_GRID[: c.blocks[3]], stride=2)
        # As in the ResNet the authors start from: He init (fan-out) for convs, BN 1/0. The ECAs are built after
        # that init in their code and keep PyTorch's default.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        self.channels = tuple(w * m * EXPANSION for m in (1, 2, 4, 8))
        attention = dict(reduction=c.attention_reduction, minimum=c.attention_min)
        self.coord1 = CoordAtt(self.channels[0], **attention)
        self.coord2 = CoordAtt(self.channels[1], **attention)
        self.coord3 = CoordAtt(self.channels[2], **attention)
        self.coord4 = CoordAtt(self.channels[3], **attention)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The attention-refined features of layer1..layer4 (1/2, 1/4, 1/8, 1/16); each feeds the next stage."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f1 = self.coord1(self.layer1(x))
        f2 = self.coord2(self.layer2(f1))
        f3 = self.coord3(self.layer3(f2))
        f4 = self.coord4(self.layer4(f3))
        return f1, f2, f3, f4


# --------------------------------------------------------------------------------------------------
# Fusion and coarse head


class DR(nn.Module):
    """Dimension reduction: 1×1 conv (no bias) + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn1(self.conv1(x)))


class Decoder(nn.Module):
    """Multi-level fusion (spec §2.3): each stage reduced to `reduce_channels`, resized to layer2's size
    (bilinear, align_corners=True), concatenated in the authors' order (layer4, layer1, layer2, layer3), then
    3×3 conv + BN + ReLU + Dropout + 1×1 conv → coarse logits at 1/4. The paper says "two 3×3" convs; the code
    has a 3×3 and a 1×1, which is what the weights fit."""

    def __init__(self, channels: tuple[int, int, int, int], config: UGSNetConfig) -> None:
        super().__init__()
        r = config.reduce_channels
        self.dr2, self.dr3, self.dr4, self.dr5 = (DR(ch, r) for ch in channels)
        self.last_conv = nn.Sequential(
            nn.Conv2d(4 * r, config.head_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(config.head_channels),
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
            nn.Conv2d(config.head_channels, config.num_classes, 1, bias=False),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, f1: torch.Tensor, f2: torch.Tensor, f3: torch.Tensor, f4: torch.Tensor) -> torch.Tensor:
        size = f2.shape[-2:]
        reduced = [self.dr5(f4), self.dr2(f1), self.dr3(f2), self.dr4(f3)]
        # Resizing layer2's own map to its size is the identity under align_corners=True; it is skipped.
        fused = torch.cat([r if r.shape[-2:] == size else
                           F.interpolate(r, size=size, mode="bilinear", align_corners=True) for r in reduced], dim=1)
        return self.last_conv(fused)


# --------------------------------------------------------------------------------------------------
# Point head


def point_sample(features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear features (B×C×H×W) at points (B×N×2, (x, y) in [0, 1]) → B×C×N.

    `grid_sample` with align_corners=False, as the authors' point head (PyTorch's default there): a point
    p maps to pixel coordinate p·W − 0.5, so a cell centre ((i + 0.5)/W) reads cell i (up to rounding).
    """
    grid = (2.0 * points - 1.0).unsqueeze(2)  # B×N×1×2
    return F.grid_sample(features, grid, mode="bilinear", align_corners=False).squeeze(3)


def uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """−(top1 − top2) over the channel axis (dim 1): highest where the two best classes are closest."""
    top = torch.topk(logits, 2, dim=1).values
    return top[:, 1] - top[:, 0]


def most_uncertain(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the `count` highest scores of each row (B×M → B×count), ties to the lower index.

    A stable sort rather than `topk`, whose order among equal scores is not specified: a window's points
    must not depend on the batch it sits in.
    """
    return torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :count]


def training_points(coarse: torch.Tensor, count: int, oversample: int, importance: float,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """PointRend's training points (B×count×2 in [0, 1]², (x, y)), as the authors' sampler (spec §2.4).

    Draws k·N uniform candidates, keeps the int(β·N) most uncertain, then adds N − int(β·N) uniform points
    (drawn after the candidates, from the same generator). As in the authors' sampler, the channels of the
    coarse logits are sorted before the candidates are sampled, so the uncertainty of a candidate is the
    bilinear interpolation of the per-cell −(top1 − top2) map.
    """
    b = coarse.shape[0]
    kept = int(importance * count)
    candidates = torch.rand(b, oversample * count, 2, generator=generator, device=coarse.device,
                            dtype=coarse.dtype)
    top2 = torch.topk(coarse, 2, dim=1).values
    sampled = point_sample(top2, candidates)
    index = most_uncertain(sampled[:, 1] - sampled[:, 0], kept)
    chosen = torch.gather(candidates, 1, index.unsqueeze(2).expand(-1, -1, 2))
    coverage = torch.rand(b, count - kept, 2, generator=generator, device=coarse.device, dtype=coarse.dtype)
    return torch.cat((chosen, coverage), dim=1)


def cell_centres(index: torch.Tensor, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """Flat cell indices (B×N) → their centres (B×N×2, (x, y) in [0, 1])."""
    x = ((index % width).to(dtype) + 0.5) / width
    y = ((index // width).to(dtype) + 0.5) / height
    return torch.stack((x, y), dim=2)


class PointHead(nn.Module):
    """The point head (spec §2.4): one linear layer (`Conv1d` 1×1 with bias) on [coarse logits ⊕ layer2 features]
    at each point; the paper's "MLP" is this one layer in the code."""

    def __init__(self, fine_channels: int, config: UGSNetConfig) -> None:
        super().__init__()
        self.config = config
        self.mlp = nn.Conv1d(config.num_classes + fine_channels, config.num_classes, 1)

    def predict_points(self, logits: torch.Tensor, res2: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """B×K×N logits at the points, from `logits` and `res2` sampled there."""
        return self.mlp(torch.cat((point_sample(logits, points), point_sample(res2, points)), dim=1))

    def train_forward(self, coarse: torch.Tensor, res2: torch.Tensor, width: int,
                      generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """{"rend": B×K×N, "points": B×N×2} with N = 4·(input width), the authors' training budget."""
        c = self.config
        points = training_points(coarse.detach(), 4 * width, c.oversample, c.importance, generator)
        return {"rend": self.predict_points(coarse, res2, points), "points": points}

    @torch.no_grad()
    def refine(self, coarse: torch.Tensor, res2: torch.Tensor, width: int) -> torch.Tensor:
        """The fine logits (B×K×H×W): while narrower than the input, upsample ×2 (bilinear, align_corners=True)
        and re-predict the `points` most uncertain cells, replacing their logits.

        Each step samples the current upsampled map (with the previous step's replacements), as the spec and
        the authors' code do, not the original coarse logits; res2 stays the layer2 features at 1/4.
        """
        out = coarse
        while out.shape[-1] != width:
            out = F.interpolate(out, scale_factor=2, mode="bilinear", align_corners=True)
            b, k, h, w = out.shape
            index = most_uncertain(uncertainty(out).reshape(b, h * w), min(self.config.points, h * w))
            rend = self.predict_points(out, res2, cell_centres(index, h, w, out.dtype))
            out = out.reshape(b, k, h * w).scatter(2, index.unsqueeze(1).expand(-1, k, -1), rend).view(b, k, h, w)
        return out


# --------------------------------------------------------------------------------------------------
# The network


class UGSNet(nn.Module):
    """Backbone + decoder + point head, named as the authors' modules.

    Model contract (`contract.py`): one image input, each date alone, one head `fine` of two channels (logits;
    channel 1 = UGS, the product applies the softmax). `forward` returns the authors' dict: always "coarse"
    (B×2×H/4×W/4) and "res2" (layer2 + ECA features, 1/4); in training also "rend" (B×2×N) and "points"
    (B×N×2); in eval also "fine" (B×2×H×W, computed without gradient, as in the authors' code).
    """

    inputs = ("image",)
    frames = 1
    heads = {"fine": 2}
    reads_dates = False  # meta.dates are not used: windows of several dates may share a batch

    def __init__(self, config: UGSNetConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else UGSNetConfig.full()
        c = self.config
        if c.num_classes != 2:
            self.heads = {"fine": c.num_classes}
        self.backbone = Backbone(c)
        self.decoder = Decoder(self.backbone.channels, c)
        self.pointhead = PointHead(self.backbone.channels[1], c)

    def check_input(self, x: torch.Tensor) -> None:
        """One-line refusal for a tensor the network cannot take (rank, bands, size, a training batch of 1)."""
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.in_channels:
            kind = " RGB" if c.in_channels == 3 else ""
            raise ValueError(f"UGSNet expects B×{c.in_channels}×H×W{kind} input, got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % NETWORK_STRIDE or w % NETWORK_STRIDE:
            raise ValueError(f"UGSNet window {h}×{w} is not a multiple of {NETWORK_STRIDE}")
        if self.training and x.shape[0] < 2:
            raise ValueError("UGSNet trains on batches of at least 2 windows: the ECA's channel-branch BatchNorm "
                             "sees one value per channel and window")

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The authors' output dict (see the class). `generator` draws the training points (default: the global
        RNG); eval mode draws nothing."""
        self.check_input(x)
        f1, f2, f3, f4 = self.backbone(x)
        out = {"coarse": self.decoder(f1, f2, f3, f4), "res2": f2}
        if self.training:
            out.update(self.pointhead.train_forward(out["coarse"], f2, x.shape[-1], generator))
        else:
            out["fine"] = self.pointhead.refine(out["coarse"], f2, x.shape[-1])
        return out

    def forward_heads(self, inputs: Mapping[str, torch.Tensor], meta: object = None) -> dict[str, torch.Tensor]:
        """The contract's forward: the fine logits of the one image input, B×2×H×W. Eval mode only: the fine map
        is PointRend's inference path, and training mode has none.

        A window's logits are bit-identical wherever it sits in a batch of a given size (ties among the uncertain
        cells go to the lower index). Between batch sizes the CPU convolution kernels may differ in the last bits
        (~1e-7 measured on 64×64 windows, batch 1 vs 3).
        """
        if self.training:
            raise RuntimeError("UGSNet.forward_heads needs eval mode (call model.eval()): the fine map is "
                               "PointRend's inference path")
        (x,) = inputs.values()
        return {"fine": self(x)["fine"]}


class FCDiscriminator(nn.Module):
    """The adaptation discriminator (spec §3, AdaptSegNet's): five 4×4 stride-2 convs, in → ndf → 2ndf → 4ndf →
    8ndf → 1, LeakyReLU(0.2) after the first four; raw logits at 1/32 (the paper's "softmax" over one channel
    would be degenerate: use BCE with logits). Not part of UGSNet: it exists only for adaptation training."""

    def __init__(self, in_channels: int = 2, ndf: int = 64) -> None:
        super().__init__()
        widths = (in_channels, ndf, 2 * ndf, 4 * ndf, 8 * ndf)
        self.conv1, self.conv2, self.conv3, self.conv4 = (
            nn.Conv2d(a, b, 4, stride=2, padding=1) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.classifier = nn.Conv2d(8 * ndf, 1, 4, stride=2, padding=1)
        self.leaky_relu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = self.leaky_relu(conv(x))
        return self.classifier(x)


def _register() -> None:
    # The authors' layout converter imports this module, so it is reached lazily.
    from . import ugsnet_convert
    from .registry import Architecture, register

    register(Architecture(name="ugsnet", model_cls=UGSNet, config_cls=UGSNetConfig,
                          is_foreign=ugsnet_convert.is_authors_layout,
                          convert_foreign=ugsnet_convert.convert_authors_state_dict, paper_config=UGSNetConfig.full))
