"""Training, evaluation and prediction loops (the library behind ``sublocal train/evaluate/predict``).

Reproducibility: the model is initialised from ``seed``; batches come from a
:class:`~sublocal_kernels.data.LengthBucketSampler` seeded by ``(seed, epoch)``; dropout is
seeded per step from ``(seed, epoch, step, rank)``. So the run is a function of its config, a
run resumed from a checkpoint (even one written in the middle of an epoch) repeats the
uninterrupted run exactly, and ``W`` processes under ``torchrun`` see the same global batches
as one process (each takes every ``W``-th sequence of each batch; the loss is normalised by
the global batch size, so DistributedDataParallel's gradient average is the one-process
gradient).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .._optional import MissingDependency, require
from ..data import (DataFormatError, DataWarning, LengthBucketSampler, SequenceDataset, collate, load_features,
                    load_records, stratified_split)
from ..models import build_model, feature_kind
from .checkpoint import Checkpoint, CheckpointError, atomic_write, load_checkpoint, save_checkpoint
from .fp_mode import flush_denormal_steps
from .metrics import classification_report, confusion_matrix, multilabel_report, tune_thresholds
from .rundir import run_directory

__all__ = ["TrainConfig", "train", "model_inputs", "prepare_data", "evaluate_model", "run_model",
           "DistributedContext", "distributed_context", "step_seed", "RESUMABLE", "resume_differences"]

# The settings a resumed run may change: how long it runs, where, and how it reports. Anything
# else (data, split, model, optimizer) would make the resumed run a different run.
RESUMABLE = ("epochs", "device", "progress", "checkpoint_every", "out", "eval_batch_size")


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
    val_partition: str | None = None  # the predefined fold used for validation (None: the first)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, doc: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


def _flag(name: str) -> str:
    """The command-line spelling of a config field or model argument."""
    return {"data": "DATA", "fasta": "FASTA", "bidirectional": "--unidirectional",
            "standardize": "--no-standardize"}.get(name, "--" + name.replace("_", "-"))


def resume_differences(given, saved, resumable=RESUMABLE) -> list[str]:
    """``"--flag VALUE (checkpoint: VALUE)"`` for every setting outside ``resumable`` in
    which ``given`` differs from ``saved`` (two configs of one dataclass: :class:`TrainConfig`
    or ``sublocal pretrain``'s; model arguments one by one; DATA compared as an absolute path)."""
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
            if os.path.abspath(a) != os.path.abspath(b):
                out.append(f"{_flag(f.name)} {a!r} (checkpoint: {b!r})")
        elif a != b:
            out.append(f"{_flag(f.name)} {a!r} (checkpoint: {b!r})")
    return out


# --------------------------------------------------------------------------------------------
# Distributed set-up (torchrun)


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def distributed_context(device: torch.device) -> DistributedContext:
    """Join the process group when started by ``torchrun`` (``WORLD_SIZE`` > 1): gloo on CPU,
    NCCL on CUDA; one process per GPU (``LOCAL_RANK``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, ctx: DistributedContext | None = None) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` (this process's ``LOCAL_RANK`` GPU) or
    ``cuda:N``. Raises ``ValueError`` for any other name and for a GPU this machine lacks."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}: expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"device {name!r} is not available: {why} (torch {torch.__version__})")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} is not available: this machine has {torch.cuda.device_count()} "
                             "CUDA device(s)")
    return device


def step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    """The dropout seed of one step: a function of the run's seed and the step's place only."""
    return int(np.random.SeedSequence([seed, epoch, step, rank]).generate_state(1)[0])


# --------------------------------------------------------------------------------------------
# Data


def prepare_data(cfg: TrainConfig, classes=None, warn: bool = False
                 ) -> tuple[SequenceDataset, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Read ``cfg.data``, tokenise it, and split it (seeded, stratified). Records flagged
    ``test`` (DeepLoc headers or a ``partition`` column) form the test set when there are any;
    the rest is split into training and validation.

    Without ``classes`` (training: the classes come from the data) fewer than two classes is a
    :class:`~sublocal_kernels.data.DataFormatError`. ``warn``: a :class:`DataWarning` for each
    empty split and for each class too small to reach every split."""
    records = load_records(cfg.data, cfg.format, cfg.alphabet, classes, multi_label=cfg.multi_label)
    if classes is None:
        found = sorted({c for r in records for c in r.labels})
        if len(found) < 2:
            raise DataFormatError(cfg.data, None, None, f"{len(records)} sequences, all of class {found[0]!r}: a "
                                  "classifier needs sequences of at least two classes")
    features = None
    if cfg.features is not None:
        # The model decides what the file must hold (and names itself in the errors).
        features = load_features(cfg.features, records, feature_kind(cfg.model), cfg.model)
    ds = SequenceDataset(records, classes, cfg.alphabet, cfg.max_length, features, multi_label=cfg.multi_label)
    flagged = np.array([r.partition == "test" for r in ds.records])
    seed = cfg.seed if cfg.split_seed is None else cfg.split_seed
    folds = _folds(ds, cfg)
    if folds is not None:
        # Predefined folds (DeepLoc 2.0's Partition column): one fold validates, the rest train.
        parts = folds
        fractions = (1.0, 0.0, 0.0)  # the data's choice: not checked per class
    elif flagged.any():
        rest = np.flatnonzero(~flagged)
        v = cfg.val_fraction
        tr, va = stratified_split(ds.labels[rest], (1 - v, v), seed)
        parts = (rest[tr], rest[va], np.flatnonzero(flagged))
        fractions = (1 - v, v, 0.0)  # the flagged test set is the data's choice: not checked per class
    else:
        v, t = cfg.val_fraction, cfg.test_fraction
        fractions = (1 - v - t, v, t)
        parts = stratified_split(ds.labels, fractions, seed)
    if warn:
        _warn_split(cfg.data, ds, parts, fractions)
    return ds, parts


def _folds(ds: SequenceDataset, cfg: TrainConfig):
    """``(train, val, test)`` from integer partitions (predefined folds), or None when the
    records carry none. Records flagged ``test`` are the test set; ``cfg.val_partition`` (default:
    the lowest fold) validates."""
    values = {r.partition for r in ds.records if r.partition not in (None, "test")}
    if not values or not all(v.lstrip("-").isdigit() for v in values):
        if cfg.val_partition is not None:
            raise ValueError(f"--val-partition {cfg.val_partition}: {cfg.data} has no integer partition column "
                             "(predefined folds)")
        return None
    folds = sorted(values, key=int)
    chosen = folds[0] if cfg.val_partition is None else str(cfg.val_partition)
    if chosen not in values:
        raise ValueError(f"--val-partition {cfg.val_partition}: {cfg.data} has partitions {', '.join(folds)}")
    part = np.array([r.partition for r in ds.records], dtype=object)
    return (np.flatnonzero((part != chosen) & (part != "test")), np.flatnonzero(part == chosen),
            np.flatnonzero(part == "test"))


def _warn_split(data, ds: SequenceDataset, parts, fractions) -> None:
    names = ("training", "validation", "test")
    empty = [j for j, p in enumerate(parts) if len(p) == 0 and fractions[j] > 0]
    for j in empty:
        if j == 0:
            continue  # an error, raised by the trainer
        what = {1: "every epoch's checkpoint is kept as the best", 2: "no test report"}[j]
        why = f"{len(ds)} sequences in {len(ds.classes)} classes are too few for a {names[j]} fraction of " \
              f"{fractions[j]:g}"
        warnings.warn(f"{data}: the {names[j]} split is empty ({why}): {what}", DataWarning, stacklevel=3)
    checked = [j for j, f in enumerate(fractions) if f > 0 and j not in empty]
    for k, c in enumerate(ds.classes):
        counts = [int((ds.labels[p] == k).sum()) for p in parts]
        absent = [names[j] for j in checked if counts[j] == 0]
        if absent:
            present = [names[j] for j in range(3) if counts[j]]
            n = sum(counts)
            warnings.warn(f"{data}: class {c!r} has {n} sequence{'s' if n != 1 else ''}, too few for the split: "
                          f"kept in {' and '.join(present)} only (none in {' or '.join(absent)})", DataWarning,
                          stacklevel=3)


# --------------------------------------------------------------------------------------------
# Evaluation


def _loss_sum(logits: torch.Tensor, batch, multi_label: bool) -> torch.Tensor:
    """The batch's loss summed over its sequences: cross-entropy, or for multi-label data the
    binary cross-entropy of every class's logit, averaged over the classes."""
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits.float(), batch.targets, reduction="sum") / logits.shape[1]
    return F.cross_entropy(logits.float(), batch.labels, reduction="sum")


@torch.no_grad()
def run_model(model, ds: SequenceDataset, indices, device, batch_size: int = 64, details: bool = False,
              ctx: DistributedContext | None = None, callback: Callable | None = None,
              on_probs: Callable | None = None, multi_label: bool | None = None):
    """Run ``model`` over ``ds[indices]`` in length-sorted batches (rank ``r`` of ``W`` takes
    every ``W``-th batch). Returns ``(probs (N, K) float32, loss_sum, n)`` in the order of
    ``indices`` (rows of other ranks' batches are zero); with ``callback``, calls
    ``callback(batch, output)`` per batch with the :class:`ClassifierOutput`; with
    ``on_probs``, calls ``on_probs(positions, probs)`` per batch (positions into ``indices``).
    ``multi_label`` (default: ``ds.multi_label``): probabilities are the sigmoid of each
    logit (else the softmax over classes) and the loss is the binary cross-entropy."""
    ctx = ctx or DistributedContext()
    if multi_label is None:
        multi_label = bool(getattr(ds, "multi_label", False))
    indices = np.asarray(indices, dtype=np.int64)
    was_training = model.training
    model.eval()
    probs = np.zeros((len(indices), model.num_classes), dtype=np.float32)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    sampler = LengthBucketSampler(ds.lengths[indices], batch_size, shuffle=False)
    for k, local in enumerate(sampler.batches()):
        if k % ctx.world_size != ctx.rank:
            continue
        batch = collate(ds, indices[local]).to(device)
        if details or callback is not None:
            out = model.forward_details(batch.tokens, batch.lengths, batch.features)
            logits = out.logits
        else:
            out, logits = None, model(batch.tokens, batch.lengths, batch.features)
        if multi_label:
            if batch.targets is not None:
                loss_sum += _loss_sum(logits, batch, True).double()
            probs[local] = torch.sigmoid(logits.float()).cpu().numpy()
        else:
            # (A multi-label data set's labels are label-set indices: no single-label loss.)
            labelled = batch.labels >= 0 if not getattr(ds, "multi_label", False) else batch.labels < -1
            if bool(labelled.any()):
                loss_sum += F.cross_entropy(logits[labelled].float(), batch.labels[labelled], reduction="sum").double()
            probs[local] = torch.softmax(logits.float(), -1).cpu().numpy()
        if callback is not None:
            callback(batch, out)
        if on_probs is not None:
            on_probs(np.asarray(local), probs[local])
    model.train(was_training)
    return probs, loss_sum, len(indices)


def evaluate_model(model, ds: SequenceDataset, indices, device, batch_size: int = 64,
                   ctx: DistributedContext | None = None, thresholds=None) -> dict:
    """Loss and :func:`classification_report` of ``model`` on ``ds[indices]`` (all ranks
    contribute their batches; every rank gets the totals). For a multi-label data set: loss and
    :func:`multilabel_report` with ``thresholds`` (None: tuned here on these predictions, see
    :func:`tune_thresholds`; the report's ``untuned`` lists classes left at 0.5)."""
    ctx = ctx or DistributedContext()
    if ds.multi_label:
        return _evaluate_multilabel(model, ds, indices, device, batch_size, ctx, thresholds)
    probs, loss_sum, n = run_model(model, ds, indices, device, batch_size, ctx=ctx)
    labels = ds.labels[np.asarray(indices, dtype=np.int64)]
    pred = probs.argmax(1)
    cm = torch.from_numpy(confusion_matrix(labels, pred, len(ds.classes)) if n else
                          np.zeros((len(ds.classes),) * 2, dtype=np.int64))
    if ctx.active:
        import torch.distributed as dist

        # Each rank filled only its own batches: count only those rows.
        mine = probs.sum(1) > 0
        cm = torch.from_numpy(confusion_matrix(labels[mine], pred[mine], len(ds.classes)))
        totals = torch.cat([cm.flatten().double(), loss_sum.cpu().reshape(1)]).to(device)
        dist.all_reduce(totals)
        totals = totals.cpu()
        cm = totals[:-1].round().long().reshape(cm.shape)
        loss_sum = totals[-1]
    report = classification_report(cm.numpy(), ds.classes)
    report["loss"] = float(loss_sum) / max(1, n)
    return report


def _evaluate_multilabel(model, ds, indices, device, batch_size, ctx, thresholds) -> dict:
    probs, loss_sum, n = run_model(model, ds, indices, device, batch_size, ctx=ctx)
    if ctx.active:
        import torch.distributed as dist

        # Each rank filled only its own batches' rows (the rest are zero): the sum is every row.
        both = torch.cat([torch.from_numpy(probs).double().flatten(), loss_sum.cpu().reshape(1)]).to(device)
        dist.all_reduce(both)
        both = both.cpu()
        probs, loss_sum = both[:-1].float().numpy().reshape(probs.shape), both[-1]
    targets = ds.targets[np.asarray(indices, dtype=np.int64)]
    untuned = []
    if thresholds is None:
        thresholds, untuned = tune_thresholds(targets, probs, ds.classes)
    report = multilabel_report(targets, probs, thresholds, ds.classes)
    report["untuned"] = untuned
    report["loss"] = float(loss_sum) / max(1, n)
    return report


def _warn_untuned(data, untuned, where: str) -> None:
    if untuned:
        warnings.warn(f"{data}: {len(untuned)} class{'es' if len(untuned) > 1 else ''} with no positive sequence in "
                      f"the {where} keep{'s' if len(untuned) == 1 else ''} the threshold 0.5: "
                      f"{', '.join(map(repr, untuned))}", DataWarning, stacklevel=3)


# --------------------------------------------------------------------------------------------
# Training


def _progress(enabled: bool | None):
    """tqdm when asked for (``True``: tqdm must be installed) or, for ``None``, when standard
    error is a terminal and tqdm is installed."""
    if enabled is None:
        if not sys.stderr.isatty():
            return None
        try:
            return require("tqdm", "the progress bar").tqdm
        except MissingDependency:
            return None
    if not enabled:
        return None
    return require("tqdm", "the progress bar").tqdm


def _meta(cfg: TrainConfig, ds: SequenceDataset, state: dict, thresholds=None) -> dict:
    meta = {"classes": ds.classes, "alphabet": ds.alphabet.name, "max_length": cfg.max_length,
            "encoding": cfg.encoding, "num_features": ds.num_features, "train_config": cfg.to_json(),
            "train_state": state}
    if cfg.multi_label:
        # Read by predict/evaluate: sigmoid outputs, class k predicted when p_k >= thresholds[k].
        meta["multi_label"] = True
        meta["thresholds"] = [float(t) for t in (thresholds if thresholds is not None else [0.5] * len(ds.classes))]
    source = features_source(ds)
    if source is not None:
        meta["features_source"] = source
    return meta


def features_source(ds: SequenceDataset) -> dict | None:
    """Where ``ds``'s features file says its embeddings came from (its root attributes), as the
    checkpoint records it under ``features_source``: ``kind`` (of the file), ``model`` (the
    embedder: a ``sublocal pretrain`` checkpoint path or a name) and ``pool``, ``dim``, and
    ``model_path``, the absolute path of ``model`` when it names an existing file or directory
    here (``sublocal predict`` on an ``mlp`` checkpoint without ``--features`` loads the
    embedder from it). None when the features are not read from a file."""
    view = getattr(ds, "features", None)
    reader = getattr(view, "reader", None)
    if reader is None:
        return None
    attrs = getattr(reader, "attrs", {})
    out = {"kind": reader.kind, "dim": int(view.width), "model": attrs.get("model"), "pool": attrs.get("pool")}
    out = {k: (v if v is None or isinstance(v, (int, float, bool)) else str(v)) for k, v in out.items()}
    if out["model"] and os.path.exists(out["model"]):
        out["model_path"] = os.path.abspath(out["model"])
    return out


def _feature_chunks(ds: SequenceDataset, indices, size: int = 1024):
    """The per-protein feature vectors of ``ds[indices]``, ``(n, F)`` arrays of at most ``size``
    rows (read from the file a chunk at a time)."""
    indices = np.asarray(indices, dtype=np.int64)
    for start in range(0, len(indices), size):
        yield np.stack([ds.features[int(i)] for i in indices[start:start + size]])


def model_inputs(name: str, alphabet: str, encoding: str, num_features: int, model_args: dict) -> dict:
    """The data-dependent constructor arguments of model ``name``: the alphabet and encoding,
    and the precomputed features' width (``extra_features``; Light Attention's ``embedding_dim``,
    which must match the features when given). ``mlp`` takes only ``input_dim``, the width of
    its per-protein vectors (``encoding`` is not used: it reads no residues)."""
    if name == "mlp":
        # One vector per protein: no residues are read, so no alphabet or encoding (the command
        # line sets --encoding none for it).
        if not num_features:
            raise ValueError("--model mlp reads one embedding vector per protein: pass --features FILE (.h5 or .npz "
                             "with a (D,) array per record id, as sublocal embed --pool mean|final|unirep writes)")
        return {"input_dim": num_features}
    out = {"alphabet": alphabet, "encoding": encoding}
    if name == "light-attention":
        if encoding == "none" and not num_features:
            raise ValueError("--model light-attention with --encoding none reads per-residue embeddings: pass "
                             "--features FILE.h5 (or an --encoding such as onehot to run it on the residues)")
        given = model_args.get("embedding_dim")
        if given is not None and given != num_features:
            raise ValueError(f"--embedding-dim {given} does not match the {num_features} channels of the --features "
                             "embeddings (Light Attention takes its width from the features: leave it out)")
        out["embedding_dim"] = num_features
    else:
        out["extra_features"] = num_features
    return out


def _log(ctx: DistributedContext, msg: str) -> None:
    if ctx.is_main:
        print(msg, flush=True)


def train(cfg: TrainConfig, resume: bool = False, log: Callable[[str], None] | None = None,
          stop_after_steps: int | None = None, overwrite: bool = False) -> dict:
    """Train ``cfg.model`` on ``cfg.data``; write ``best`` and ``last`` checkpoints into
    ``cfg.out``; return a summary (history, best validation loss, test report of the best
    checkpoint).

    ``cfg.out`` is held by :func:`~sublocal_kernels.training.rundir.run_directory` for the
    whole run (rank 0 only when distributed): a directory in use by another run is refused, and
    so is one that already holds files, unless ``resume`` or ``overwrite``.
    ``resume``: continue from ``cfg.out/last.json``; ``cfg`` must equal the checkpoint's config
    except in :data:`RESUMABLE` (a ``ValueError`` lists every difference).
    ``stop_after_steps``: stop after this many optimizer steps (simulates an interrupted run).
    """
    device = resolve_device(cfg.device)
    ctx = distributed_context(device)
    with run_directory(cfg.out, resume, overwrite) if ctx.is_main else contextlib.nullcontext():
        return _train(cfg, resume, log, stop_after_steps, device, ctx)


def _train(cfg: TrainConfig, resume: bool, log, stop_after_steps, device, ctx: DistributedContext) -> dict:
    say = log or (lambda m: _log(ctx, m))
    last_path = os.path.join(cfg.out, "last.json")
    resumed: Checkpoint | None = None
    if resume:
        if not os.path.isfile(last_path):
            raise FileNotFoundError(f"{last_path}: no checkpoint to resume from (--resume continues a run "
                                    "directory that holds last.json)")
        resumed = load_checkpoint(last_path, device)
        if "train_config" not in resumed.meta or "train_state" not in resumed.meta:
            raise CheckpointError(f"{last_path}: not a training checkpoint (no training config and state)")
        saved = TrainConfig.from_json(resumed.meta["train_config"])
        diffs = resume_differences(cfg, saved)
        if diffs:
            raise ValueError(f"{last_path}: --resume with settings that differ from the checkpoint's: "
                             f"{'; '.join(diffs)}. A resume may change only "
                             f"{', '.join(_flag(n) for n in RESUMABLE if n not in ('out', 'eval_batch_size'))}")
        cfg = dataclasses.replace(saved, **{n: getattr(cfg, n) for n in RESUMABLE})
    ds, (tr, va, te) = prepare_data(cfg, warn=ctx.is_main and not resume)
    if len(tr) == 0:
        raise DataFormatError(cfg.data, None, None, f"no training sequences after the split ({len(ds)} sequences, "
                              f"validation fraction {cfg.val_fraction:g}, test fraction {cfg.test_fraction:g})")
    torch.manual_seed(cfg.seed)
    model_args = dict(cfg.model_args)
    for key, value in model_inputs(cfg.model, ds.alphabet.name, cfg.encoding, ds.num_features, model_args).items():
        model_args.setdefault(key, value)
    model = build_model(cfg.model, num_classes=len(ds.classes), **model_args).to(device)
    if getattr(model, "standardize", False) and resumed is None:
        # The input standardisation (mlp): the training split's per-feature mean and standard
        # deviation, one pass over its vectors (a resumed run loads them from the checkpoint).
        from ..models.mlp import feature_moments

        mean, std, _ = feature_moments(_feature_chunks(ds, tr))
        model.fit_standardization(mean, std)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = {"epoch": 0, "step": 0, "loss_sum": 0.0, "seen": 0, "best_val_loss": math.inf, "best_epoch": None,
             "history": []}
    multi = cfg.multi_label
    thresholds = [0.5] * len(ds.classes) if multi else None  # the latest epoch's, tuned on validation
    if multi and resumed is not None:
        thresholds = resumed.meta.get("thresholds", thresholds)
    if multi and not len(va) and ctx.is_main and not resume:
        warnings.warn(f"{cfg.data}: no validation split: every class keeps the threshold 0.5", DataWarning,
                      stacklevel=2)
    warned_untuned = resume
    if resumed is not None:
        model.load_state_dict(resumed.model.state_dict())
        resumed.load_optimizer(optimizer)
        state.update(resumed.meta["train_state"])
        say(f"resuming {last_path}: epoch {state['epoch'] + 1}, step {state['step']}")
    net = model
    if ctx.active:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    sampler = LengthBucketSampler(ds.lengths[tr], cfg.batch_size, shuffle=True, seed=cfg.seed,
                                  max_tokens=cfg.max_tokens, num_replicas=ctx.world_size, rank=ctx.rank)
    tqdm = _progress(cfg.progress) if ctx.is_main else None
    if ctx.is_main:
        atomic_write(os.path.join(cfg.out, "config.json"), (json.dumps(cfg.to_json(), indent=1) + "\n").encode())
    if resumed is not None and state["epoch"] >= cfg.epochs and ctx.is_main:
        warnings.warn(f"{last_path}: already trained for {state['epoch']} epochs (--epochs {cfg.epochs}): nothing "
                      "to train; pass a larger --epochs to continue", DataWarning, stacklevel=2)
    say(f"{cfg.model}: {sum(p.numel() for p in model.parameters())} parameters, classes {ds.classes}; "
        f"train/val/test = {len(tr)}/{len(va)}/{len(te)} sequences on {device}"
        + (f", {ctx.world_size} processes" if ctx.active else ""))
    steps_done = 0
    interrupted = False
    params = [p for p in model.parameters() if p.requires_grad]
    for epoch in range(state["epoch"], cfg.epochs):
        batches = sampler.batches(epoch)
        start_step = state["step"] if epoch == state["epoch"] else 0
        if start_step == 0:
            state["loss_sum"], state["seen"] = 0.0, 0
        loss_acc = torch.zeros((), dtype=torch.float64, device=device)  # this rank's loss sum
        seen = local_seen = 0
        bar = tqdm(total=len(batches), initial=start_step, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   leave=False, dynamic_ncols=True) if tqdm else None
        t0, last_refresh = time.perf_counter(), 0.0
        model.train()
        step = start_step
        for step in flush_denormal_steps(range(start_step, len(batches))):
            global_batch = batches[step]
            torch.manual_seed(step_seed(cfg.seed, epoch, step, ctx.rank))
            local = sampler.shard(global_batch)
            batch = collate(ds, tr[local]).to(device)
            logits = net(batch.tokens, batch.lengths, batch.features)
            # This rank's loss sum / global batch size, times W because DDP averages the W
            # gradients: the gradient of the global-batch mean, whatever the shard sizes.
            loss_sum = _loss_sum(logits, batch, multi)
            loss = loss_sum * (ctx.world_size / len(global_batch))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_norm:
                torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm)
            optimizer.step()
            loss_acc += loss_sum.detach().double()
            seen += len(global_batch)
            local_seen += len(local)
            steps_done += 1
            if bar is not None:
                bar.update(1)
                now = time.perf_counter()
                if now - last_refresh > 0.5:  # one host sync per refresh, not one per batch
                    last_refresh = now
                    bar.set_postfix(loss=f"{float(loss_acc) / local_seen:.4f}", seq_s=f"{seen / (now - t0):.1f}")
            if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < len(batches):
                total = _global_sum(loss_acc, ctx)  # a collective: every rank calls it here
                if ctx.is_main:
                    mid = dict(state, epoch=epoch, step=step + 1, loss_sum=state["loss_sum"] + total,
                               seen=state["seen"] + seen)
                    save_checkpoint(cfg.out, "last", model, _meta(cfg, ds, mid, thresholds), optimizer)
            if stop_after_steps is not None and steps_done >= stop_after_steps:
                interrupted = True
                break
        if bar is not None:
            bar.close()
        if interrupted:
            say(f"stopped after {steps_done} steps (epoch {epoch + 1}, step {step + 1})")
            break
        elapsed = time.perf_counter() - t0
        train_loss = (state["loss_sum"] + _global_sum(loss_acc, ctx)) / max(1, state["seen"] + seen)
        val = evaluate_model(model, ds, va, device, cfg.eval_batch_size, ctx) if len(va) else None
        row = {"epoch": epoch + 1, "train_loss": train_loss, "seq_per_s": seen / max(elapsed, 1e-9),
               "time_s": elapsed}
        if val is not None and multi:
            thresholds = val["thresholds"]
            if val["untuned"] and not warned_untuned and ctx.is_main:
                _warn_untuned(cfg.data, val["untuned"], "validation split")
                warned_untuned = True
            row.update(val_loss=val["loss"], val_micro_f1=val["micro_f1"], val_macro_f1=val["macro_f1"],
                       val_jaccard=val["jaccard"])
        elif val is not None:
            row.update(val_loss=val["loss"], val_accuracy=val["accuracy"], val_macro_mcc=val["macro_mcc"])
        state["history"].append(row)
        state.update(epoch=epoch + 1, step=0, loss_sum=0.0, seen=0)
        improved = val is not None and val["loss"] < state["best_val_loss"]
        if improved or (val is None):
            state["best_val_loss"] = val["loss"] if val is not None else state["best_val_loss"]
            state["best_epoch"] = epoch + 1
        if ctx.is_main:
            if improved or val is None:
                save_checkpoint(cfg.out, "best", model, _meta(cfg, ds, state, thresholds))
            save_checkpoint(cfg.out, "last", model, _meta(cfg, ds, state, thresholds), optimizer)
        if ctx.active:
            import torch.distributed as dist

            dist.barrier()  # the other ranks read these checkpoints (the final test report)
        msg = f"epoch {epoch + 1}/{cfg.epochs}: train loss {train_loss:.4f}, {row['seq_per_s']:.1f} seq/s"
        if val is not None and multi:
            msg += (f"; val loss {val['loss']:.4f}, micro F1 {val['micro_f1']:.4f}, macro F1 {val['macro_f1']:.4f} "
                    f"(thresholds tuned on validation)" + (" (best)" if improved else ""))
        elif val is not None:
            msg += (f"; val loss {val['loss']:.4f}, accuracy {val['accuracy']:.4f}, macro MCC {val['macro_mcc']:.4f}"
                    + (" (best)" if improved else ""))
        say(msg)
    summary = {"history": state["history"], "best_val_loss": state["best_val_loss"],
               "best_epoch": state["best_epoch"], "interrupted": interrupted, "out": cfg.out,
               "splits": {"train": len(tr), "val": len(va), "test": len(te)}}
    if not interrupted and len(te) and os.path.isfile(os.path.join(cfg.out, "best.json")):
        best = load_checkpoint(os.path.join(cfg.out, "best.json"), device)
        report = evaluate_model(best.model, ds, te, device, cfg.eval_batch_size, ctx, best.meta.get("thresholds"))
        summary["test"] = report
        if multi:
            say(f"test (best checkpoint, epoch {state['best_epoch']}, its validation thresholds): micro F1 "
                f"{report['micro_f1']:.4f}, macro F1 {report['macro_f1']:.4f}, Jaccard {report['jaccard']:.4f}, "
                f"subset accuracy {report['subset_accuracy']:.4f}")
        else:
            say(f"test (best checkpoint, epoch {state['best_epoch']}): accuracy {report['accuracy']:.4f}, "
                f"macro MCC {report['macro_mcc']:.4f}, macro F1 {report['macro_f1']:.4f}")
    if ctx.is_main:
        atomic_write(os.path.join(cfg.out, "summary.json"),
                     (json.dumps(_json_ready(summary), indent=1) + "\n").encode())
    return summary


def _global_sum(acc: torch.Tensor, ctx: DistributedContext) -> float:
    """The sum of every rank's ``acc`` (a collective when distributed)."""
    if ctx.active:
        import torch.distributed as dist

        acc = acc.clone()
        dist.all_reduce(acc)
    return float(acc)


def _json_ready(value):
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
