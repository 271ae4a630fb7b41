"""Training: the loop (accelerate, autocast, accumulation, clipping), EMA, checkpoints, resume, logs."""

from difflab.train.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    read_config,
    save_checkpoint,
)
from difflab.train.data import BatchStream, ResumableBatchSampler, TensorBatchDataset, derive_seed
from difflab.train.ema import EMA, ema_beta
from difflab.train.loop import Trainer
from difflab.train.monitor import read_log
from difflab.train.settings import TrainConfig, TrainResult, warmup_factor

__all__ = [
    "EMA",
    "BatchStream",
    "ResumableBatchSampler",
    "TensorBatchDataset",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "derive_seed",
    "ema_beta",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "prune_checkpoints",
    "read_config",
    "read_log",
    "save_checkpoint",
    "warmup_factor",
]
