"""Training: the loop (accelerate, autocast, accumulation, clipping), objectives, EMA, checkpoints,
resume, the run-folder lock, logs."""

from difflab.train.checkpoint import (
    DamagedCheckpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_weights,
    newest_intact_checkpoint,
    prune_checkpoints,
    read_config,
    save_checkpoint,
)
from difflab.train.data import BatchStream, ResumableBatchSampler, TensorBatchDataset, derive_seed
from difflab.train.ema import EMA, ema_beta
from difflab.train.lock import RunLock, RunLocked
from difflab.train.loop import Trainer
from difflab.train.monitor import read_log
from difflab.train.objective import DenoisingObjective, Objective
from difflab.train.prepare import Captions, ClassLabels, Unconditional
from difflab.train.settings import TrainConfig, TrainResult
from difflab.utils.optim import warmup_factor

__all__ = [
    "EMA",
    "BatchStream",
    "Captions",
    "ClassLabels",
    "DamagedCheckpoint",
    "DenoisingObjective",
    "Objective",
    "ResumableBatchSampler",
    "RunLock",
    "RunLocked",
    "TensorBatchDataset",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "Unconditional",
    "derive_seed",
    "ema_beta",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_weights",
    "newest_intact_checkpoint",
    "prune_checkpoints",
    "read_config",
    "read_log",
    "save_checkpoint",
    "warmup_factor",
]
