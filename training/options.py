"""What `mapgen train`'s options stand for, as the library says it: the network's size and the device, so
that a user of `mapgen.training.train` gets the command's defaults."""

from __future__ import annotations

import torch

from mapgen.models import STSRSegConfig

SIZES = ("small", "full", "custom")


def model_config(size: str = "small", *, sr_features: int | None = None, sr_blocks: int | None = None,
                 encoder_width: int | None = None) -> STSRSegConfig:
    """STSR-Seg's configuration: the paper's (`full`), the bundled checkpoint's (`small`), or `custom`: small
    with some widths changed. ValueError (one line) for widths given with another size."""
    if size not in SIZES:
        raise ValueError(f"size {size!r}: use one of {', '.join(SIZES)}")
    widths = {"sr_features": sr_features, "sr_blocks": sr_blocks, "encoder_width": encoder_width}
    given = {k: v for k, v in widths.items() if v is not None}
    if given and size != "custom":
        raise ValueError("--sr-features/--sr-blocks/--encoder-width need --config custom")
    if size == "full":
        return STSRSegConfig.full()
    return STSRSegConfig(**{**STSRSegConfig.small().to_dict(), **given})


def train_device(device: str = "auto") -> str:
    """'auto' → cuda where torch sees a GPU, else cpu; any other device as it is."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
