"""Training and evaluation loops, the run lifecycle, checkpoints and metrics (behind ``sublocal train``)."""

from .checkpoint import (Checkpoint, CheckpointError, atomic_write, load_checkpoint, load_predictor,
                         read_checkpoint_meta, resolve_checkpoint, save_checkpoint)
from .metrics import classification_report, confusion_matrix, format_report, plot_confusion
from .rundir import RunDirError, RunWarning, run_directory
from .trainer import (RESUMABLE, DistributedContext, TrainConfig, distributed_context, evaluate_model,
                      prepare_data, resolve_device, resume_differences, run_model, step_seed, train)

__all__ = ["Checkpoint", "CheckpointError", "atomic_write", "load_checkpoint", "load_predictor", "read_checkpoint_meta",
           "resolve_checkpoint", "save_checkpoint", "classification_report", "confusion_matrix", "format_report",
           "plot_confusion", "RunDirError", "RunWarning", "run_directory", "RESUMABLE", "DistributedContext",
           "TrainConfig", "distributed_context", "evaluate_model", "prepare_data", "resolve_device",
           "resume_differences", "run_model", "step_seed", "train"]
