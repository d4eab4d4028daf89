"""The spatio-temporal aware learning of STSR-Seg (CBRA §4.3): HR, TC and SG losses and their sum (Eq. 7).

Each loss is a pure function of tensors, so it can be checked by hand on a tiny input; the only state is
the FIFO memory bank of the temporal-contrast loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossConfig:
    """The paper's values (§4.3, Table B3). The weights are α (HR), φ (TC), ω (SG) of Eq. 7."""

    hr_weight: float = 200.0
    tc_weight: float = 1.0
    sg_weight: float = 5.0
    ftl_weight: float = 0.5  # Eq. 3
    eps: float = 1e-6  # Eq. 2
    gamma: float = 0.5
    beta: float = 0.6
    temperature: float = 0.75  # τ, Eq. 4
    bank_size: int = 16  # N
    sg_mean: float = 0.44  # μ, Eq. 5 and Fig. A3
    sg_std: float = 0.01  # σ

    @classmethod
    def parse_weights(cls, text: str) -> tuple[float, float, float]:
        """"200:1:5" → (α, φ, ω) for HR, TC, SG; one clear error for anything else."""
        parts = text.split(":")
        try:
            values = tuple(float(p) for p in parts)
        except ValueError:
            values = ()
        if len(values) != 3 or any(not math.isfinite(v) or v < 0 for v in values) or not any(values):
            raise ValueError(f"loss weights {text!r}: give HR:TC:SG as three non-negative numbers, e.g. 200:1:5")
        return values  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------
# HR loss (§4.3.1)


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 1, averaged over pixels (the paper writes a sum; the mean keeps it on the scale of Eq. 2).

    From the logits: the same value as BCE on sigmoid(logits), without log(0).
    """
    return F.binary_cross_entropy_with_logits(logits, target)


def focal_tversky_loss(prob: torch.Tensor, target: torch.Tensor, *, eps: float = 1e-6, gamma: float = 0.5,
                       beta: float = 0.6) -> torch.Tensor:
    """(1 − (TP + ε) / (TP + β·FN + (1 − β)·FP + ε))^γ with soft counts summed over the whole batch.

    β weighs false negatives, as the paper's text says ("β > 0.5 would shift the convergence more on
    minimizing FN predictions") and as the authors' code does (α = 0.4 on FP, β = 0.6 on FN). Eq. 2 as
    printed, Σ(1−β)·P + Σβ·P̂ in the denominator, would weigh false positives instead; we read it as a
    typo. Summing over the batch, not per patch, keeps an all-background patch from scoring ≈ 1.
    """
    p, t = prob.reshape(-1), target.reshape(-1)
    tp = (p * t).sum()
    fn = ((1 - p) * t).sum()
    fp = (p * (1 - t)).sum()
    tversky = (tp + eps) / (tp + beta * fn + (1 - beta) * fp + eps)
    # ≤ 1 in exact arithmetic; the floor keeps rounding and the infinite slope of x^γ at 0 from NaN.
    return (1 - tversky).clamp_min(1e-12) ** gamma


def hr_loss(logits: torch.Tensor, target: torch.Tensor, config: LossConfig = LossConfig()
            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 3: L_hr = L_ce + 0.5 · L_ftl; the total and its terms."""
    ce = bce_loss(logits, target)
    ftl = focal_tversky_loss(torch.sigmoid(logits), target, eps=config.eps, gamma=config.gamma, beta=config.beta)
    return ce + config.ftl_weight * ftl, {"bce": ce, "ftl": ftl}


# --------------------------------------------------------------------------------------------------
# TC loss (§4.3.2)


def info_nce(z: torch.Tensor, z_pos: torch.Tensor, negatives: torch.Tensor, temperature: float = 0.75
             ) -> torch.Tensor:
    """Eq. 4, averaged over the batch: −log(e^{z·ẑ/τ} / (e^{z·ẑ/τ} + Σ_j e^{z·k_j/τ})).

    z, z_pos: B×d; negatives: N×d. The vectors are used as given: callers normalise them (see
    `TemporalContrast`). Written as a cross-entropy over [positive, negatives] logits, which is the
    same value computed stably.
    """
    positive = (z * z_pos).sum(dim=1, keepdim=True)
    logits = torch.cat([positive, z @ negatives.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(z), dtype=torch.long, device=z.device))


class MemoryBank:
    """FIFO queue of N earlier anchor representations, zero-initialised (§4.3.2)."""

    def __init__(self, size: int, dim: int, device: torch.device | str = "cpu") -> None:
        if size < 1:
            raise ValueError(f"memory bank size must be positive, got {size}")
        self.keys = torch.zeros(size, dim, device=device)

    def push(self, z: torch.Tensor) -> None:
        """Add the anchors of a step (B×d, detached) and drop as many of the oldest."""
        z = z.detach().to(self.keys.dtype)
        n = len(self.keys)
        self.keys = torch.cat([self.keys, z])[-n:] if len(z) < n else z[-n:].clone()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"keys": self.keys.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state["keys"].shape != self.keys.shape:
            raise ValueError(f"memory bank: saved {tuple(state['keys'].shape)}, expected {tuple(self.keys.shape)}")
        self.keys = state["keys"].to(self.keys.device).clone()


class TemporalContrast:
    """The TC loss with its memory bank. The negatives are the anchors of earlier steps (pushed after the
    loss, so a step never contrasts an anchor with itself).

    Representations are L2-normalised first, as in MoCo, which the paper follows: Eq. 4's raw dot
    products are unbounded, and with τ = 0.75 the exponentials would overflow as training goes on.
    """

    def __init__(self, dim: int, size: int = 16, temperature: float = 0.75, device: torch.device | str = "cpu"
                 ) -> None:
        self.bank = MemoryBank(size, dim, device)
        self.temperature = temperature

    def __call__(self, z: torch.Tensor, z_other_year: torch.Tensor) -> torch.Tensor:
        z, z_pos = F.normalize(z.float(), dim=1), F.normalize(z_other_year.float(), dim=1)
        loss = info_nce(z, z_pos, self.bank.keys, self.temperature)
        self.bank.push(z)
        return loss


# --------------------------------------------------------------------------------------------------
# SG loss (§4.3.3)


def gaussian_kl(mu: float | torch.Tensor, sigma: float | torch.Tensor, mu_hat: torch.Tensor,
                sigma_hat: torch.Tensor) -> torch.Tensor:
    """D_KL(N(μ, σ²) ‖ N(μ̂, σ̂²)) = log(σ̂/σ) + (σ² + (μ − μ̂)²) / (2σ̂²) − ½: the reference against the estimate."""
    mu = torch.as_tensor(mu, dtype=mu_hat.dtype, device=mu_hat.device)
    sigma = torch.as_tensor(sigma, dtype=mu_hat.dtype, device=mu_hat.device)
    return torch.log(sigma_hat / sigma) + (sigma ** 2 + (mu - mu_hat) ** 2) / (2 * sigma_hat ** 2) - 0.5


def sg_loss(prob_low: torch.Tensor, built: torch.Tensor, config: LossConfig = LossConfig(), *, min_std: float = 1e-3
            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 6: L_ce(P_low, P̂_low) + D_KL(μ, σ, μ̂, σ̂).

    prob_low: P̂_low, the s×s average of the high-resolution confidence; built: the 10 m built label (0/1).
    μ̂, σ̂ are the mean and standard deviation of P̂_low over the built pixels: the paper's assumption is
    that the rooftop share of a built 10 m pixel follows N(μ, σ²). Without built pixels in the batch the
    KL term is 0. σ̂ has a floor so that a collapsed estimate gives a large loss, not an infinite one.
    """
    p = prob_low.clamp(1e-6, 1 - 1e-6)
    ce = F.binary_cross_entropy(p, built)
    fg = p[built > 0.5]
    if fg.numel() >= 2:
        kl = gaussian_kl(config.sg_mean, config.sg_std, fg.mean(), fg.std().clamp_min(min_std))
    else:
        kl = p.sum() * 0.0  # keeps the graph (and the dtype) without adding anything
    return ce + kl, {"sg_ce": ce, "sg_kl": kl}


# --------------------------------------------------------------------------------------------------
# Eq. 7


def total_loss(hr: torch.Tensor | None, tc: torch.Tensor | None, sg: torch.Tensor | None,
               config: LossConfig = LossConfig()) -> torch.Tensor:
    """L = α·L_hr + φ·L_tc + ω·L_sg; a missing term (None, or weight 0) is left out."""
    terms = [(config.hr_weight, hr), (config.tc_weight, tc), (config.sg_weight, sg)]
    parts = [w * t for w, t in terms if t is not None and w]
    if not parts:
        raise ValueError("total_loss: no term with a non-zero weight")
    return torch.stack(parts).sum()


# --------------------------------------------------------------------------------------------------
# UGSNet (UGS-1m, specs/ugs.md §4): Dice on the coarse map + CE at the points (Eq. 1–3), and the adversarial
# adaptation losses (Eq. 4–6) with AdaptSegNet's semantics.

# The discriminator's labels: the paper's y, 1 for an input from the source (UGSet), 0 from the target city.
SOURCE_LABEL = 1.0
TARGET_LABEL = 0.0


def dice_loss(coarse_logits: torch.Tensor, target: torch.Tensor, *, eps: float = 1e-6) -> torch.Tensor:
    """Eq. 1, soft: 1 − (2·Σ X·Y + ε) / (Σ X + Σ Y + ε), X = softmax channel 1 (UGS) of the coarse logits.

    The paper leaves open whether X is a hard mask and at which resolution it meets Y. Soft probabilities keep a
    gradient; they are upsampled (bilinear, align_corners=False) to the label's H×W rather than the label
    downsampled, so that thin green strips of the label count at full resolution. Sums run over the whole batch
    (as `focal_tversky_loss`), so that a window without UGS does not score 1 on its own. target: B×H×W in {0, 1}.
    """
    prob = torch.softmax(coarse_logits, dim=1)[:, 1:2]
    if prob.shape[-2:] != target.shape[-2:]:
        prob = F.interpolate(prob, size=target.shape[-2:], mode="bilinear", align_corners=False)
    x, y = prob.reshape(-1), target.reshape(-1).to(prob.dtype)
    return 1 - (2 * (x * y).sum() + eps) / (x.sum() + y.sum() + eps)


def point_labels(points: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The label (B×H×W) at points (B×N×2, (x, y) in [0, 1]) by nearest pixel → B×N int64.

    `grid_sample` with mode nearest and align_corners=False, the convention of the point head's own sampling;
    border padding keeps a point on the image's edge inside it.
    """
    grid = (2.0 * points - 1.0).unsqueeze(2).to(torch.float32)
    label = F.grid_sample(target.unsqueeze(1).to(torch.float32), grid, mode="nearest", padding_mode="border",
                          align_corners=False)
    return label[:, 0, :, 0].round().long()


def point_loss(rend: torch.Tensor, points: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 2 in its standard form: cross-entropy of the point logits (B×2×N) against the label at the points,
    averaged over the points. The printed Eq. 2 swaps prediction and ground truth (spec §4.1)."""
    return F.cross_entropy(rend, point_labels(points, target))


def ugs_loss(output: dict[str, torch.Tensor], target: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 3: L_ugs = L_Dice(coarse) + L_CE(points), weights 1:1; the total and its terms. `output` is UGSNet's
    training-mode dict (coarse, rend, points); target B×H×W in {0, 1} at the input's resolution."""
    dice = dice_loss(output["coarse"], target)
    points = point_loss(output["rend"], output["points"], target)
    return dice + points, {"dice": dice, "points": points}


def discriminator_loss(d_source_logits: torch.Tensor, d_target_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 4 with AdaptSegNet's semantics: BCE-with-logits of D(P_s) against "source" and of D(P_t) against
    "target", averaged over the two inputs. As printed, Eq. 4 pairs the labels with the wrong inputs (spec §4.2);
    D is trained to tell the domains apart. Feed it detached predictions, so that only D learns from it."""
    source = F.binary_cross_entropy_with_logits(d_source_logits, torch.full_like(d_source_logits, SOURCE_LABEL))
    target = F.binary_cross_entropy_with_logits(d_target_logits, torch.full_like(d_target_logits, TARGET_LABEL))
    return (source + target) / 2


def adversarial_loss(d_target_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 5: BCE-with-logits of D(P_t) against "source": the generator is trained so that D takes the target
    city's predictions for UGSet's. L_G = L_ugs + L_adv (Eq. 6, weight 1 as the paper; AdaptSegNet used 0.001)."""
    return F.binary_cross_entropy_with_logits(d_target_logits, torch.full_like(d_target_logits, SOURCE_LABEL))
