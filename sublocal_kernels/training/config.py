"""What a training run depends on: :class:`TrainConfig`, and what a resumed run may change.

The config is saved in every checkpoint and in ``OUT/config.json``. A resumed run must match
its checkpoint's config except in :data:`RESUMABLE`; :func:`resume_differences` lists the
rest in the command line's spelling (it serves ``sublocal pretrain``'s config too).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

__all__ = ["TrainConfig", "RESUMABLE", "resume_differences", "default_select_by", "DEFAULT_SELECT_BY"]

# The settings a resumed run may change: how long it runs, where, and how it reports. Anything
# else (data, split, model, optimizer) would make the resumed run a different run.
RESUMABLE = ("epochs", "device", "progress", "checkpoint_every", "out", "eval_batch_size", "only_folds")

#: ``--select-by``'s defaults (README, "Accuracy"), measured by --test-each-epoch on the real
#: sets: the test figures of the epoch each rule keeps by validation. Single-label, on DeepLoc
#: 2.0's 21,619 single-location proteins (--single-label-only; an MLP on UniRep-1900 vectors,
#: 30 epochs, all five folds): accuracy kept test accuracy 0.627 and macro F1 0.499 against
#: loss's 0.626 and 0.491 (loss kept epochs 3-6 as the MLP overfits; the last epoch: 0.619).
#: Multi-label, DeepLoc 2.0: macro-f1 tied loss on macro F1 (0.507) and gained on micro F1
#: (0.624 against 0.618) and subset accuracy (0.356 against 0.344) for that MLP's multi-label
#: twin over five folds; 0.494 against 0.492 macro F1 for the A-LSTM (folds 0-1). The gains are
#: small beside the fold spread (about 0.015); where loss was ahead, it was by as little (R-LSTM fold 0:
#: 0.513 against 0.509; lncRNA TCN: 0.456 against 0.447, near chance).
DEFAULT_SELECT_BY = {False: "accuracy", True: "macro-f1"}


def default_select_by(multi_label: bool) -> str:
    return DEFAULT_SELECT_BY[bool(multi_label)]


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved in every checkpoint)."""

    data: str
    out: str = "runs/sublocal"
    model: str = "alstm"
    model_args: dict = field(default_factory=dict)
    format: str = "auto"
    alphabet: str = "protein"
    encoding: str = "onehot"
    features: str | None = None
    max_length: int | None = None
    epochs: int = 100
    lr: float = 2e-4
    batch_size: int = 32
    max_tokens: int | None = None
    clip_norm: float | None = 5.0
    weight_decay: float = 0.0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    split_seed: int | None = None  # the train/val/test split's seed (None: ``seed``)
    device: str = "auto"
    checkpoint_every: int = 0
    progress: bool | None = None
    eval_batch_size: int = 64
    multi_label: bool = False  # several labels per sequence: sigmoid outputs, BCE, per-class thresholds
    # Multi-label data read as single-label: only the records with exactly one label (DeepLoc
    # 2.0's single-location proteins) are kept.
    single_label_only: bool = False
    val_partition: str | None = None  # the predefined fold used for validation (None: the first)
    # Model selection and stopping: the validation figure that picks ``best`` (None: the default
    # for the kind of data, :func:`default_select_by`), and epochs without a gain before stopping.
    select_by: str | None = None
    patience: int = 0
    # Learning rate (as ``sublocal pretrain``): constant, step (times lr_gamma every lr_step_epochs
    # epochs) or cosine (to 0 over the run), each after warmup_steps of linear warm-up.
    schedule: str = "constant"
    lr_step_epochs: int = 10
    lr_gamma: float = 0.5
    warmup_steps: int = 0
    # Class imbalance: None, "balanced" or a file of per-class weights (multi-label: per-label
    # positive weights).
    class_weight: str | None = None
    # Multi-label decisions: thresholds tuned per label by "f1" or "mcc"; top_one: a sequence with
    # no label at or above its threshold gets its most probable one (DeepLoc 2.0).
    threshold_by: str = "f1"
    top_one: bool = False
    # Cross-validation: ``folds`` stratified folds when the data has no partition column; this
    # run's held-out fold (set per fold by sublocal train --cv; None: not a fold run).
    cv: bool = False
    folds: int = 5
    cv_fold: int | None = None
    only_folds: list | None = None  # --cv: train only these folds now (by name); the rest later, with --resume
    test_partition: str | None = None  # a partition held out of training (and of every fold) as the test set
    test_each_epoch: bool = False  # also score the test split every epoch (history only, never selects)

    @property
    def selection(self) -> str:
        """The metric that picks ``best``: ``select_by``, or the default for the data's kind."""
        return self.select_by or default_select_by(self.multi_label)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, doc: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        kept = {k: v for k, v in doc.items() if k in names}
        if "select_by" not in doc:
            kept["select_by"] = "loss"  # written before --select-by: those runs chose by validation loss
        return cls(**kept)


def _flag(name: str) -> str:
    """The command-line spelling of a config field or model argument."""
    return {"data": "DATA", "fasta": "FASTA", "bidirectional": "--unidirectional",
            "standardize": "--no-standardize"}.get(name, "--" + name.replace("_", "-"))


def resume_differences(given, saved, resumable=RESUMABLE) -> list[str]:
    """``"--flag VALUE (checkpoint: VALUE)"`` for every setting outside ``resumable`` in
    which ``given`` differs from ``saved`` (two configs of one dataclass: :class:`TrainConfig`
    or ``sublocal pretrain``'s; model arguments one by one; DATA and --features compared as
    files: the same absolute path, or two paths to one file, through a link)."""
    out = []
    for f in dataclasses.fields(given):
        a, b = getattr(given, f.name), getattr(saved, f.name)
        if f.name in resumable:
            continue
        if f.name == "model_args":
            def show(args, key):
                return repr(args[key]) if key in args else "the model's default"

            for key in sorted(set(a) | set(b)):
                if a.get(key) != b.get(key):
                    out.append(f"{_flag(key)} {show(a, key)} (checkpoint: {show(b, key)})")
        elif f.name in ("data", "features") and a is not None and b is not None:
            if not _same_file(a, b):
                out.append(f"{_flag(f.name)} {a!r} (checkpoint: {b!r})")
        elif a != b:
            out.append(f"{_flag(f.name)} {a!r} (checkpoint: {b!r})")
    return out


def _same_file(a: str, b: str) -> bool:
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them is gone: not the same file
        return False
