r"""Training with short-run inference (Algorithm 1): trainer, schedules, checkpoints, DDP glue.

`Trainer` runs the paper's learning loop for the reference generator or any module with
``log_joint(x, z)`` (the contract: `LogJointModel` and the other protocols);
`write_report` turns a trained model into PNGs and a summary.
"""

from shortinfer.train._checkpoint import (
    CHECKPOINT_FORMAT,
    LATEST_NAME,
    CheckpointError,
    check_model_compatible,
    load_checkpoint,
    save_checkpoint,
)
from shortinfer.train._contract import (
    Decodes,
    HasConfig,
    HasLatentShapes,
    HasSigma,
    LogJointModel,
    latent_shape_of,
)
from shortinfer.train._distributed import (
    DEFAULT_PROCESS_GROUP_TIMEOUT,
    DistributedTimeoutError,
    LogJointModule,
    derive_seed,
    init_distributed,
    mean_all_reduce,
    shard_indices,
)
from shortinfer.train._methods import LadderVAEMethod, PersistentChainsMethod, TrainingMethod
from shortinfer.train._report import (
    INPAINTING_MASKS,
    inpainting_mask,
    reconstruct,
    save_image_grid,
    write_report,
)
from shortinfer.train._schedules import (
    LearningRateSchedule,
    SigmaSchedule,
    annealed_sigma,
    step_decay_learning_rate,
)
from shortinfer.train._trainer import (
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

__all__ = [
    "CHECKPOINT_FORMAT",
    "DEFAULT_PROCESS_GROUP_TIMEOUT",
    "INPAINTING_MASKS",
    "LATEST_NAME",
    "METRICS_NAME",
    "CheckpointError",
    "Decodes",
    "DistributedTimeoutError",
    "HasConfig",
    "HasLatentShapes",
    "HasSigma",
    "LadderVAEMethod",
    "LearningRateSchedule",
    "LogJointModel",
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
    "derive_seed",
    "frozen_parameters",
    "init_distributed",
    "inpainting_mask",
    "latent_shape_of",
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
