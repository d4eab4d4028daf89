"""mapgen models: torch networks, the architecture registry and verified checkpoint I/O."""

from .checkpoint_io import (
    CheckpointError,
    init_checkpoint,
    load_checkpoint,
    save_checkpoint,
    sidecar_path,
    write_sidecar,
)
from .convert import convert_authors_state_dict, is_authors_layout, load_authors_state_dict
from .losses import LossConfig
from .registry import Architecture, architecture_for_config, architecture_names, get_architecture, register
from .state_dict import load_state_dict_checked
from .stsr_seg import STSROutput, STSRSeg, STSRSegConfig
from .ugsnet import FCDiscriminator, UGSNet, UGSNetConfig

__all__ = [
    "Architecture",
    "CheckpointError",
    "FCDiscriminator",
    "LossConfig",
    "STSROutput",
    "STSRSeg",
    "STSRSegConfig",
    "UGSNet",
    "UGSNetConfig",
    "architecture_for_config",
    "architecture_names",
    "convert_authors_state_dict",
    "get_architecture",
    "init_checkpoint",
    "is_authors_layout",
    "load_authors_state_dict",
    "load_checkpoint",
    "load_state_dict_checked",
    "register",
    "save_checkpoint",
    "sidecar_path",
    "write_sidecar",
]
