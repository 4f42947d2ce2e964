r"""Training with short-run inference (Algorithm 1): trainer, schedules, checkpoints, DDP glue.

`Trainer` runs the paper's learning loop for the reference generator or any module with
``log_joint(x, z)``; `shortinfer.train.report` turns a trained model into PNGs and a
summary.
"""

from shortinfer.train.checkpoint import (
    CHECKPOINT_FORMAT,
    LATEST_NAME,
    CheckpointError,
    check_model_compatible,
    load_checkpoint,
    save_checkpoint,
)
from shortinfer.train.distributed import (
    LogJointModule,
    init_distributed,
    mean_all_reduce,
    shard_indices,
)
from shortinfer.train.methods import LadderVAEMethod, PersistentChainsMethod, TrainingMethod
from shortinfer.train.report import (
    INPAINTING_MASKS,
    inpainting_mask,
    reconstruct,
    save_image_grid,
    write_report,
)
from shortinfer.train.schedules import (
    LearningRateSchedule,
    SigmaSchedule,
    annealed_sigma,
    step_decay_learning_rate,
)
from shortinfer.train.trainer import (
    METRICS_NAME,
    StepOutput,
    StepSizeRecord,
    StepSizeTuning,
    Trainer,
    TrainingDivergedError,
    TrainResult,
    frozen_parameters,
    train_step,
)

# The names imported above, listed again as the package's documented surface (static on purpose).
__all__ = [
    "CHECKPOINT_FORMAT",
    "INPAINTING_MASKS",
    "LATEST_NAME",
    "METRICS_NAME",
    "CheckpointError",
    "LadderVAEMethod",
    "LearningRateSchedule",
    "LogJointModule",
    "PersistentChainsMethod",
    "SigmaSchedule",
    "StepOutput",
    "StepSizeRecord",
    "StepSizeTuning",
    "TrainResult",
    "Trainer",
    "TrainingDivergedError",
    "TrainingMethod",
    "annealed_sigma",
    "check_model_compatible",
    "frozen_parameters",
    "init_distributed",
    "inpainting_mask",
    "load_checkpoint",
    "mean_all_reduce",
    "reconstruct",
    "save_checkpoint",
    "save_image_grid",
    "shard_indices",
    "step_decay_learning_rate",
    "train_step",
    "write_report",
]
