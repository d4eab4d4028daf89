"""Training STSR-Seg on synthetic scenes with the paper's spatio-temporal aware learning (CBRA §4.3).

`mapgen train` is the command line over `train`; the losses themselves live in `mapgen.models.losses`.
"""

from .sampling import PATCH_SIZE, HRBatch, LRBatch, PatchSampler, SamplingConfig, eligible_origins, window_fraction
from .scenes import (
    DEFAULT_EVAL_BOUNDS,
    DEFAULT_TRAIN_BOUNDS,
    Normalisation,
    SceneYear,
    ensure_scene,
    load_scene,
    rooftop_share_in_built,
    scene_info,
    scene_record,
    scenes_from_seeds,
)
from .scoring import EvalConfig, evaluate_held_out, evaluate_scene, evaluate_windows, predict_scene
from .trainer import TrainConfig, Trainer, TrainingError, learning_rate, tc_collapsed, torch_threads, train

__all__ = [
    "DEFAULT_EVAL_BOUNDS",
    "DEFAULT_TRAIN_BOUNDS",
    "PATCH_SIZE",
    "EvalConfig",
    "HRBatch",
    "LRBatch",
    "Normalisation",
    "PatchSampler",
    "SamplingConfig",
    "SceneYear",
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "eligible_origins",
    "ensure_scene",
    "evaluate_held_out",
    "evaluate_scene",
    "evaluate_windows",
    "learning_rate",
    "load_scene",
    "predict_scene",
    "rooftop_share_in_built",
    "scene_info",
    "scene_record",
    "scenes_from_seeds",
    "tc_collapsed",
    "torch_threads",
    "train",
    "window_fraction",
]
