"""Convert the UGSNet authors' state dicts (liumency/UGS-1m) to this package's UGSNet.

Our module names are theirs for every part their forward runs (`backbone.*`, `decoder.dr2..dr5`,
`decoder.last_conv`, `pointhead.mlp`), so conversion is: strip a `DataParallel` `module.` prefix, drop the
decoder modules they build but never call (spec §2.3: `upconv1`, `conv12d`, … `conv33d`: 273,396 parameters),
refuse any key no rule knows, and check every key we use is there with our shape. A checkpoint of another
network is refused in one line rather than half-loaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from .state_dict import check_state_dict, summarise_keys
from .ugsnet import UGSNet, UGSNetConfig

DATA_PARALLEL_PREFIX = "module."
# Decoder modules of the authors' code that its forward never uses; they are in their state dicts.
UNUSED_DECODER_MODULES = ("upconv1", "conv12d", "bn12d", "upconv2", "conv22d", "bn22d", "conv11d", "OSMBlock",
                          "upconv3", "conv31d", "bn31d", "conv33d")

_P = r"(?:weight|bias|running_mean|running_var|num_batches_tracked)"  # a parameter or buffer name
_DROP = re.compile(rf"decoder\.(?:{'|'.join(UNUSED_DECODER_MODULES)})\.(?:\d+\.)?{_P}")
# Keys kept as they are: the parts of the authors' network that their forward runs.
_KEEP = tuple(re.compile(p) for p in (
    rf"backbone\.(?:conv1|bn1)\.{_P}",
    rf"backbone\.layer[1-4]\.\d+\.(?:conv[1-3]|bn[1-3]|downsample\.[01])\.{_P}",
    rf"backbone\.coord[1-4]\.(?:conv1|bn1|conv2|bn2|conv_h|conv_w|conv_c)\.{_P}",
    rf"decoder\.dr[2-5]\.(?:conv1|bn1)\.{_P}",
    rf"decoder\.last_conv\.[014]\.{_P}",
    rf"pointhead\.mlp\.{_P}",
))


def strip_data_parallel(key: str) -> str:
    return key[len(DATA_PARALLEL_PREFIX):] if key.startswith(DATA_PARALLEL_PREFIX) else key


def is_authors_layout(state_dict: Mapping[str, object]) -> bool:
    """True when the state dict carries the authors' unused decoder modules (with or without `module.`):
    our own checkpoints never do."""
    return any(_DROP.fullmatch(strip_data_parallel(k)) for k in state_dict)


def convert_authors_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: UGSNetConfig | None = None
) -> dict[str, torch.Tensor]:
    """Our state dict from the authors': prefix stripped, unused modules dropped, names and shapes checked
    against `UGSNet(config)` (default: the full configuration) built on the meta device. Tensors are passed
    through, not copied. Any problem is one ValueError line."""
    if not is_authors_layout(state_dict):
        first = next(iter(state_dict), "<empty>")
        raise ValueError("not a UGSNet checkpoint in the authors' layout: no 'decoder.upconv1.*'-style keys "
                         f"of their unused decoder modules (first key '{first}')")
    converted: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    unknown = []
    for key, value in state_dict.items():
        bare = strip_data_parallel(key)
        if _DROP.fullmatch(bare):
            continue
        if not any(p.fullmatch(bare) for p in _KEEP):
            unknown.append(key)
            continue
        if bare in converted:
            raise ValueError(f"UGSNet authors' checkpoint: keys '{source[bare]}' and '{key}' both map to '{bare}'")
        converted[bare] = value
        source[bare] = key
    if unknown:
        raise ValueError(f"UGSNet authors' checkpoint: unknown keys {summarise_keys(unknown)}")
    with torch.device("meta"):
        reference = UGSNet(config if config is not None else UGSNetConfig.full())
    try:
        check_state_dict(reference, converted)
    except ValueError as error:
        message = re.sub(r"key '([^']+)'", lambda m: f"key '{source.get(m[1], m[1])}'", str(error), count=1)
        raise ValueError(f"UGSNet authors' checkpoint: {message}") from None
    return converted
