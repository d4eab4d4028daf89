"""Convert the STSR-Seg authors' checkpoints (zpl99/STSR-Seg) to this package's parameter names.

Their checkpoints are raw `DataParallel` state dicts: every key starts with `module.`, the EDSR is
`sr.*` and the U-Net `ss.*` (authors-code.md §1.4, item 8). The table below renames each key by the
first rule whose pattern matches the whole key (after `module.` is removed); a rule with no target
drops the key. Keys that match no rule are refused, so a checkpoint of another network cannot be
half-loaded by accident.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from .state_dict import check_state_dict, load_state_dict_checked
from .stsr_seg import STSRSeg, STSRSegConfig

DATA_PARALLEL_PREFIX = "module."
# The temporal head is training-only; inference checkpoints do not carry it.
OPTIONAL_PREFIXES = ("temporal.",)

_P = r"(weight|bias|running_mean|running_var|num_batches_tracked)"  # a parameter or buffer name

_DROP: tuple[str, ...] = (
    r"ss\.Conv[1-5]\..+",  # conv blocks the authors' U_Net builds but never calls (75 M parameters)
    r"encoder_[qk]\..+",  # MoCo query/key encoders of their training framework
    r"queue",  # MoCo memory bank of representations
    r"queue_ptr",
)

# Authors' decoder levels Up5..Up2 are our decoder stages 0..3 (deepest first).
_DECODER: tuple[tuple[str, str], ...] = tuple(
    rule
    for level, stage in ((5, 0), (4, 1), (3, 2), (2, 3))
    for rule in (
        (rf"ss\.Up{level}\.up\.1\.{_P}", rf"unet.decoder.{stage}.up.conv.\1"),
        (rf"ss\.Up{level}\.up\.2\.{_P}", rf"unet.decoder.{stage}.up.bn.\1"),
        (rf"ss\.Up_conv{level}\.conv\.0\.{_P}", rf"unet.decoder.{stage}.fuse.conv1.\1"),
        (rf"ss\.Up_conv{level}\.conv\.1\.{_P}", rf"unet.decoder.{stage}.fuse.bn1.\1"),
        (rf"ss\.Up_conv{level}\.conv\.3\.{_P}", rf"unet.decoder.{stage}.fuse.conv2.\1"),
        (rf"ss\.Up_conv{level}\.conv\.4\.{_P}", rf"unet.decoder.{stage}.fuse.bn2.\1"),
        (rf"ss\.bn{level}\.{_P}", rf"unet.decoder.{stage}.post_bn.\1"),
    )
)

# (authors' key pattern, our key template)
RENAMES: tuple[tuple[str, str], ...] = (
    # EDSR: head.0 is the head conv; body.i.body.{0,2} are a block's convs; body.N (N = number of
    # blocks) is the conv after the blocks; tail.0.{0,2} are the two ×2 upsampler convs; tail.1 the last.
    (rf"sr\.head\.0\.{_P}", r"edsr.head.\1"),
    (rf"sr\.body\.(\d+)\.body\.0\.{_P}", r"edsr.blocks.\1.conv1.\2"),
    (rf"sr\.body\.(\d+)\.body\.2\.{_P}", r"edsr.blocks.\1.conv2.\2"),
    (rf"sr\.body\.\d+\.{_P}", r"edsr.body_conv.\1"),
    (rf"sr\.tail\.0\.0\.{_P}", r"edsr.upsampler.0.conv.\1"),
    (rf"sr\.tail\.0\.2\.{_P}", r"edsr.upsampler.1.conv.\1"),
    (rf"sr\.tail\.1\.{_P}", r"edsr.out_conv.\1"),
    # Deep stem: firstconv = [conv, BN, ReLU, conv, BN, ReLU, conv], then firstbn.
    (rf"ss\.firstconv\.0\.{_P}", r"unet.encoder.stem.conv1.\1"),
    (rf"ss\.firstconv\.1\.{_P}", r"unet.encoder.stem.bn1.\1"),
    (rf"ss\.firstconv\.3\.{_P}", r"unet.encoder.stem.conv2.\1"),
    (rf"ss\.firstconv\.4\.{_P}", r"unet.encoder.stem.bn2.\1"),
    (rf"ss\.firstconv\.6\.{_P}", r"unet.encoder.stem.conv3.\1"),
    (rf"ss\.firstbn\.{_P}", r"unet.encoder.stem.bn3.\1"),
    # Residual layers: encoderK is layerK; their downsample = [1×1 conv, BN] is our shortcut.
    (rf"ss\.encoder([1-4])\.(\d+)\.((?:conv|bn)[1-3])\.{_P}", r"unet.encoder.layer\1.\2.\3.\4"),
    (rf"ss\.encoder([1-4])\.(\d+)\.downsample\.0\.{_P}", r"unet.encoder.layer\1.\2.shortcut.conv.\3"),
    (rf"ss\.encoder([1-4])\.(\d+)\.downsample\.1\.{_P}", r"unet.encoder.layer\1.\2.shortcut.bn.\3"),
    *_DECODER,
    (rf"ss\.Conv\.{_P}", r"unet.head.conv.\1"),
    # U_Net_wTC's projection: [AdaptiveMaxPool, Flatten, Linear, ReLU, Linear].
    (rf"ss\.TP_embedding\.2\.{_P}", r"temporal.fc1.\1"),
    (rf"ss\.TP_embedding\.4\.{_P}", r"temporal.fc2.\1"),
)

_COMPILED_DROP = tuple(re.compile(p) for p in _DROP)
_COMPILED_RENAMES = tuple((re.compile(p), t) for p, t in RENAMES)


def strip_data_parallel(key: str) -> str:
    return key[len(DATA_PARALLEL_PREFIX) :] if key.startswith(DATA_PARALLEL_PREFIX) else key


def is_authors_layout(state_dict: Mapping[str, object]) -> bool:
    """True when the keys are the authors' `sr.*` / `ss.*` names (with or without `module.`)."""
    return any(strip_data_parallel(k).startswith(("sr.", "ss.")) for k in state_dict)


def rename_authors_key(key: str) -> str | None:
    """Our name for one authors' key, None if the key is dropped; ValueError if no rule knows it."""
    bare = strip_data_parallel(key)
    if any(p.fullmatch(bare) for p in _COMPILED_DROP):
        return None
    for pattern, template in _COMPILED_RENAMES:
        match = pattern.fullmatch(bare)
        if match:
            return match.expand(template)
    raise ValueError(f"STSR-Seg authors' checkpoint: unknown key '{key}'")


def convert_authors_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: STSRSegConfig | None = None
) -> dict[str, torch.Tensor]:
    """Rename the authors' keys to ours, drop the unused ones and check names and shapes.

    The check is against `STSRSeg(config)` (default: the full configuration), built on the meta
    device so that it costs no memory. Tensors are passed through, not copied. The temporal head is
    kept when present and may be absent (inference checkpoints). Any problem is one ValueError line.
    """
    if not is_authors_layout(state_dict):
        first = next(iter(state_dict), "<empty>")
        raise ValueError(
            f"not an STSR-Seg checkpoint in the authors' layout: no 'sr.*'/'ss.*' keys (first key '{first}')"
        )
    converted: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    for key, value in state_dict.items():
        new_key = rename_authors_key(key)
        if new_key is None:
            continue
        if new_key in converted:
            raise ValueError(
                f"STSR-Seg authors' checkpoint: keys '{source[new_key]}' and '{key}' both map to '{new_key}'"
            )
        converted[new_key] = value
        source[new_key] = key
    with torch.device("meta"):
        reference = STSRSeg(config if config is not None else STSRSegConfig.full())
    try:
        check_state_dict(reference, converted, OPTIONAL_PREFIXES)
    except ValueError as error:
        # Name the authors' key where there is one: that is the name the user can look up.
        message = re.sub(r"key '([^']+)'", lambda m: f"key '{source.get(m[1], m[1])}'", str(error), count=1)
        raise ValueError(f"STSR-Seg authors' checkpoint: {message}") from None
    return converted


def load_authors_state_dict(model: STSRSeg, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Convert and load into `model` strictly, except the temporal head; return its absent keys."""
    converted = convert_authors_state_dict(state_dict, model.config)
    return load_state_dict_checked(model, converted, OPTIONAL_PREFIXES)
