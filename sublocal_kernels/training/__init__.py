"""Training, evaluation and prediction loops, checkpoints and metrics (behind ``sublocal``)."""

from .checkpoint import Checkpoint, atomic_write, load_checkpoint, load_predictor, resolve_checkpoint, save_checkpoint
from .metrics import classification_report, confusion_matrix, format_report, plot_confusion
from .trainer import (DistributedContext, TrainConfig, distributed_context, evaluate_model, predict_file,
                      prepare_data, resolve_device, run_model, step_seed, train)

__all__ = ["Checkpoint", "atomic_write", "load_checkpoint", "load_predictor", "resolve_checkpoint", "save_checkpoint",
           "classification_report", "confusion_matrix", "format_report", "plot_confusion", "DistributedContext",
           "TrainConfig", "distributed_context", "evaluate_model", "predict_file", "prepare_data", "resolve_device",
           "run_model", "step_seed", "train"]
