"""``sublocal train``: the classifier's training loop, plugged into the shared run lifecycle.

The run itself (the run directory, resume, the DistributedDataParallel wrap, the batches,
the progress bar, checkpoints, ``config.json`` and ``summary.json``) is :mod:`.run`'s; here
are the classifier's step (cross-entropy, or binary cross-entropy for multi-label data), its
epoch's end (validation, the per-class thresholds, ``best``/``last``) and its final test
report. The config is :mod:`.config`'s, the data :mod:`.data`'s, the evaluation
:mod:`.evaluation`'s and the process group :mod:`.distributed`'s; their public names are
importable from here too.

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

import math
import os
import time
import warnings
from typing import Callable

import torch

from ..data import DataFormatError, DataWarning, SequenceDataset, collate
from ..models import build_model
from .checkpoint import load_checkpoint
from .config import RESUMABLE, TrainConfig, _flag, resume_differences  # noqa: F401 (re-exported)
from .data import _feature_chunks, class_weights, features_source, model_inputs, prepare_data
from .distributed import (DistributedContext, barrier, distributed_context, global_sum, resolve_device,  # noqa: F401
                          step_seed)
from .evaluation import _loss_sum, _warn_untuned, evaluate_model, run_model  # noqa: F401 (re-exported)
from .metrics import SELECT_BY, THRESHOLD_BY, selection_score
from .run import SCHEDULES, Run, _json_ready, _progress, hold_run_directory, learning_rate  # noqa: F401

__all__ = ["TrainConfig", "train", "model_inputs", "prepare_data", "evaluate_model", "run_model",
           "DistributedContext", "distributed_context", "step_seed", "RESUMABLE", "resume_differences"]


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
    check_config(cfg)
    device = resolve_device(cfg.device)
    ctx = distributed_context(device)
    with hold_run_directory(cfg.out, resume, overwrite, ctx):
        return _train(cfg, resume, log, stop_after_steps, device, ctx)


def check_config(cfg: TrainConfig) -> None:
    """The training settings that no data is needed to refuse (``ValueError`` naming the flag)."""
    if cfg.select_by is not None and cfg.select_by not in SELECT_BY:
        raise ValueError(f"--select-by must be one of {', '.join(SELECT_BY)}, got {cfg.select_by!r}")
    if cfg.single_label_only and cfg.multi_label:
        raise ValueError("--single-label-only and --multi-label exclude each other: --single-label-only trains one "
                         "label per record on the records that have exactly one")
    if cfg.selection in ("jaccard", "macro-auc") and not cfg.multi_label:
        selection_score({"multi_label": False}, cfg.selection)  # the refusal, with its reason
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {cfg.schedule!r}")
    if cfg.threshold_by not in THRESHOLD_BY:
        raise ValueError(f"--threshold-by must be one of {', '.join(THRESHOLD_BY)}, got {cfg.threshold_by!r}")
    if (cfg.threshold_by != "f1" or cfg.top_one) and not cfg.multi_label:
        flag = "--top-one" if cfg.top_one else "--threshold-by"
        raise ValueError(f"{flag} applies to multi-label runs only (pass --multi-label)")


def _train(cfg: TrainConfig, resume: bool, log, stop_after_steps, device, ctx: DistributedContext) -> dict:
    run = Run(cfg, device, ctx, log)
    if resume:
        run.resume(RESUMABLE, ("train_config", "train_state"),
                   "not a training checkpoint (no training config and state)")
    return _ClassifierRun(run, resume).fit(stop_after_steps)


def _meta(cfg: TrainConfig, ds: SequenceDataset, state: dict, thresholds=None) -> dict:
    meta = {"classes": ds.classes, "alphabet": ds.alphabet.name, "max_length": cfg.max_length,
            "encoding": cfg.encoding, "num_features": ds.num_features, "train_config": cfg.to_json(),
            "train_state": state}
    if cfg.multi_label:
        # Read by predict/evaluate: sigmoid outputs, class k predicted when p_k >= thresholds[k]
        # (with top_one, the most probable class when none is).
        meta["multi_label"] = True
        meta["thresholds"] = [float(t) for t in (thresholds if thresholds is not None else [0.5] * len(ds.classes))]
        meta["threshold_by"], meta["top_one"] = cfg.threshold_by, bool(cfg.top_one)
    source = features_source(ds)
    if source is not None:
        meta["features_source"] = source
    return meta


class _ClassifierRun:
    """The classifier's part of ``run``: its data, model and optimizer (restored when the run
    resumes), its training step, its epoch's end and its test report. ``state`` is the
    position and record saved in every checkpoint (``train_state``)."""

    def __init__(self, run: Run, resume: bool):
        cfg, ctx, device, resumed = run.cfg, run.ctx, run.device, run.resumed
        self.run, self.cfg, self.ctx, self.device = run, cfg, ctx, device
        ds, (tr, va, te) = prepare_data(cfg, warn=ctx.is_main and not resume)
        if len(tr) == 0:
            raise DataFormatError(cfg.data, None, None, f"no training sequences after the split ({len(ds)} sequences, "
                                  f"validation fraction {cfg.val_fraction:g}, test fraction {cfg.test_fraction:g})")
        self.ds, self.tr, self.va, self.te = ds, tr, va, te
        torch.manual_seed(cfg.seed)
        model_args = dict(cfg.model_args)
        for key, value in model_inputs(cfg.model, ds.alphabet.name, cfg.encoding, ds.num_features, model_args).items():
            model_args.setdefault(key, value)
        model = build_model(cfg.model, num_classes=len(ds.classes), **model_args).to(device)
        if hasattr(model, "fit_standardization") and model.standardize and resumed is None:
            # The input standardisation (mlp): the training split's per-feature mean and standard
            # deviation, one pass over its vectors (a resumed run loads them from the checkpoint).
            from ..models.mlp import feature_moments

            mean, std, _ = feature_moments(_feature_chunks(ds, tr))
            model.fit_standardization(mean, std)
        self.model = model
        # A model fitted in one pass (the k-mer baseline: scikit-learn), not by optimizer steps.
        self.one_pass = hasattr(model, "fit")
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        weights = class_weights(cfg, ds, tr)
        self.weight = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)
        self.selection = cfg.selection
        self.state = state = {"epoch": 0, "step": 0, "loss_sum": 0.0, "seen": 0, "best_val_loss": math.inf,
                              "best_epoch": None, "best_score": -math.inf, "since_best": 0, "stopped": False,
                              "history": []}
        self.multi = multi = cfg.multi_label
        self.thresholds = [0.5] * len(ds.classes) if multi else None  # the latest epoch's, tuned on validation
        if multi and resumed is not None:
            self.thresholds = resumed.meta.get("thresholds", self.thresholds)
        if multi and not len(va) and ctx.is_main and not resume:
            warnings.warn(f"{cfg.data}: no validation split: every class keeps the threshold 0.5", DataWarning,
                          stacklevel=3)
        self.warned_untuned = resume
        if resumed is not None:
            run.restore(model, self.optimizer, state, "train_state")
            if "best_score" not in resumed.meta["train_state"] and state["best_epoch"] is not None:
                # A run saved before --select-by chose by validation loss (its config says so).
                state["best_score"] = -state["best_val_loss"]
            run.say(f"resuming {run.last_path}: epoch {state['epoch'] + 1}, step {state['step']}")
        self.net, self.sampler = run.distribute(model, ds.lengths[tr])
        self.per_epoch = len(self.sampler.batches(0))
        self.total_steps = self.per_epoch * cfg.epochs
        self.bars = run.progress_bars()
        run.write_config()
        if resumed is not None and state["epoch"] >= cfg.epochs and ctx.is_main:
            warnings.warn(f"{run.last_path}: already trained for {state['epoch']} epochs (--epochs {cfg.epochs}): "
                          "nothing to train; pass a larger --epochs to continue", DataWarning, stacklevel=3)
        run.say(f"{cfg.model}: {sum(p.numel() for p in model.parameters())} parameters, classes {ds.classes}; "
                f"train/val/test = {len(tr)}/{len(va)}/{len(te)} sequences on {device}"
                + (f", {ctx.world_size} processes" if ctx.active else ""))
        self.params = [p for p in model.parameters() if p.requires_grad]

    def _meta(self, state: dict) -> dict:
        return _meta(self.cfg, self.ds, state, self.thresholds)

    def step(self, global_batch, local) -> torch.Tensor:
        """One optimizer step on this rank's share ``local`` of ``global_batch``; returns this
        rank's loss sum."""
        batch = collate(self.ds, self.tr[local]).to(self.device)
        logits = self.net(batch.tokens, batch.lengths, batch.features)
        # This rank's loss sum / global batch size, times W because DDP averages the W
        # gradients: the gradient of the global-batch mean, whatever the shard sizes.
        loss_sum = _loss_sum(logits, batch, self.multi, self.weight)
        loss = loss_sum * (self.ctx.world_size / len(global_batch))
        self.run.optimize(self.optimizer, self.params, loss, self.cfg.clip_norm)
        return loss_sum

    def fit(self, stop_after_steps: int | None) -> dict:
        """Train from the run's position to ``cfg.epochs`` (or ``stop_after_steps`` steps of
        this call); returns the summary."""
        cfg, run, state = self.cfg, self.run, self.state
        steps_done = 0
        interrupted = False
        if self.one_pass and state["epoch"] == 0:
            t0 = time.perf_counter()
            self.model.fit(self.ds, self.tr, class_weight=self._sklearn_weights())
            self.model.to(self.device)
            state["stopped"] = True  # one pass is the whole fit: saved in the checkpoints
            self.end_epoch(0, torch.zeros((), dtype=torch.float64), len(self.tr), time.perf_counter() - t0)
        for epoch in range(state["epoch"], cfg.epochs):
            if state.get("stopped"):
                break
            batches = self.sampler.batches(epoch)
            start_step = state["step"] if epoch == state["epoch"] else 0
            if start_step == 0:
                state["loss_sum"], state["seen"] = 0.0, 0
            loss_acc = torch.zeros((), dtype=torch.float64, device=self.device)  # this rank's loss sum
            seen = local_seen = 0
            bar = self.bars(total=len(batches), initial=start_step, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                            unit="batch", leave=False, dynamic_ncols=True)
            self.model.train()
            step = start_step
            for step, global_batch, local in run.steps(epoch, batches, start_step):
                for group in self.optimizer.param_groups:
                    group["lr"] = learning_rate(cfg, epoch * self.per_epoch + step, epoch, self.total_steps)
                loss_acc += self.step(global_batch, local).detach().double()
                seen += len(global_batch)
                local_seen += len(local)
                steps_done += 1
                bar.step(lambda elapsed: {"loss": f"{float(loss_acc) / local_seen:.4f}",
                                          "seq_s": f"{seen / elapsed:.1f}"})
                if run.due(step + 1, cfg.checkpoint_every) and step + 1 < len(batches):
                    total = global_sum(loss_acc, self.ctx)  # a collective: every rank calls it here
                    mid = dict(state, epoch=epoch, step=step + 1, loss_sum=state["loss_sum"] + total,
                               seen=state["seen"] + seen)
                    run.save("last", self.model, self._meta(mid), self.optimizer)
                if stop_after_steps is not None and steps_done >= stop_after_steps:
                    interrupted = True
                    break
            bar.close()
            if interrupted:
                run.say(f"stopped after {steps_done} steps (epoch {epoch + 1}, step {step + 1})")
                break
            self.end_epoch(epoch, loss_acc, seen, bar.elapsed())
        return self.summary(interrupted)

    def end_epoch(self, epoch: int, loss_acc: torch.Tensor, seen: int, elapsed: float) -> None:
        """Validation, the history row, ``best`` and ``last``, and the epoch's log line."""
        cfg, ctx, state, va, multi = self.cfg, self.ctx, self.state, self.va, self.multi
        train_loss = (state["loss_sum"] + global_sum(loss_acc, ctx)) / max(1, state["seen"] + seen)
        if self.one_pass:
            train_loss = float(evaluate_model(self.model, self.ds, self.tr, self.device, cfg.eval_batch_size,
                                              ctx)["loss"])  # no steps were taken: the fitted model's
        val = evaluate_model(self.model, self.ds, va, self.device, cfg.eval_batch_size, ctx,
                             threshold_by=cfg.threshold_by, top_one=cfg.top_one) if len(va) else None
        row = {"epoch": epoch + 1, "train_loss": train_loss, "seq_per_s": seen / max(elapsed, 1e-9),
               "time_s": elapsed}
        if val is not None and multi:
            self.thresholds = val["thresholds"]
            if val["untuned"] and not self.warned_untuned and ctx.is_main:
                _warn_untuned(cfg.data, val["untuned"], "validation split")
                self.warned_untuned = True
        if val is not None:
            row.update({f"val_{k}": v for k, v in _figures(val).items()})
        if cfg.test_each_epoch and len(self.te):
            # For measuring selection rules (benchmarks/accuracy): never used to choose.
            test = evaluate_model(self.model, self.ds, self.te, self.device, cfg.eval_batch_size, ctx,
                                  thresholds=self.thresholds if multi else None, top_one=cfg.top_one)
            row.update({f"test_{k}": v for k, v in _figures(test).items()})
        state["history"].append(row)
        state.update(epoch=epoch + 1, step=0, loss_sum=0.0, seen=0)
        score = selection_score(val, self.selection) if val is not None else None
        # Ties in the figure (accuracy plateaus on small validation splits) go to the lower loss.
        best = state.get("best_score", -math.inf)
        improved = score is not None and (score > best or (score == best and val["loss"] < state["best_val_loss"]))
        if improved or (val is None):
            state["best_val_loss"] = val["loss"] if val is not None else state["best_val_loss"]
            state["best_score"] = score if score is not None else state.get("best_score", -math.inf)
            state["best_epoch"] = epoch + 1
            state["since_best"] = 0
            self.run.save("best", self.model, self._meta(state))
        else:
            state["since_best"] = state.get("since_best", 0) + 1
            if cfg.patience and state["since_best"] >= cfg.patience:
                state["stopped"] = True  # early stopping: saved in last, so a resume does not go on
        self.run.save("last", self.model, self._meta(state), self.optimizer)
        barrier(ctx)  # the other ranks read these checkpoints (the final test report)
        msg = f"epoch {epoch + 1}/{cfg.epochs}: train loss {train_loss:.4f}, {row['seq_per_s']:.1f} seq/s"
        if self.one_pass:
            msg = f"{cfg.model}: fitted by scikit-learn on {seen} sequences in {elapsed:.1f} s"
        if val is not None and multi:
            msg += (f"; val loss {val['loss']:.4f}, micro F1 {val['micro_f1']:.4f}, macro F1 {val['macro_f1']:.4f} "
                    f"(thresholds tuned on validation)" + (" (best)" if improved else ""))
        elif val is not None:
            msg += (f"; val loss {val['loss']:.4f}, accuracy {val['accuracy']:.4f}, macro MCC {val['macro_mcc']:.4f}"
                    + (" (best)" if improved else ""))
        self.run.say(msg)
        if state["stopped"] and epoch + 1 < cfg.epochs and not self.one_pass:
            self.run.say(f"early stopping: no gain in validation {self.selection} for {cfg.patience} epochs "
                         f"(best: epoch {state['best_epoch']})")

    def _sklearn_weights(self):
        """The class weights as the k-mer baseline's scikit-learn fit takes them."""
        if self.cfg.class_weight is None:
            return None
        return "balanced" if self.cfg.class_weight == "balanced" else self.weight.cpu().tolist()

    def summary(self, interrupted: bool) -> dict:
        """The run's summary, with the test report of the best checkpoint (written to
        ``summary.json``)."""
        cfg, state, te, say = self.cfg, self.state, self.te, self.run.say
        summary = {"history": state["history"], "best_val_loss": state["best_val_loss"],
                   "best_epoch": state["best_epoch"], "select_by": self.selection,
                   "best_score": state.get("best_score"), "stopped_early": bool(state.get("stopped")) and
                   not self.one_pass and len(state["history"]) < cfg.epochs,
                   "interrupted": interrupted, "out": cfg.out,
                   "splits": {"train": len(self.tr), "val": len(self.va), "test": len(te)}}
        if not interrupted and len(te) and os.path.isfile(os.path.join(cfg.out, "best.json")):
            best = load_checkpoint(os.path.join(cfg.out, "best.json"), self.device)
            report = evaluate_model(best.model, self.ds, te, self.device, cfg.eval_batch_size, self.ctx,
                                    best.meta.get("thresholds"), top_one=cfg.top_one)
            summary["test"] = report
            if self.multi:
                say(f"test (best checkpoint, epoch {state['best_epoch']}, its validation thresholds): micro F1 "
                    f"{report['micro_f1']:.4f}, macro F1 {report['macro_f1']:.4f}, Jaccard {report['jaccard']:.4f}, "
                    f"subset accuracy {report['subset_accuracy']:.4f}, macro AUC {report['macro_auc']:.4f}")
            else:
                say(f"test (best checkpoint, epoch {state['best_epoch']}): accuracy {report['accuracy']:.4f}, "
                    f"macro MCC {report['macro_mcc']:.4f}, macro F1 {report['macro_f1']:.4f}")
            last = os.path.join(cfg.out, "last.json")
            if state["best_epoch"] != len(state["history"]) and os.path.isfile(last):
                # Both are kept: the last epoch's test figures beside the selected one's.
                lck = load_checkpoint(last, self.device)
                summary["test_last"] = evaluate_model(lck.model, self.ds, te, self.device, cfg.eval_batch_size,
                                                      self.ctx, lck.meta.get("thresholds"), top_one=cfg.top_one)
        self.run.write_summary(summary)
        return summary


def _figures(report: dict) -> dict:
    """The headline figures of a validation or test report, for the history."""
    keys = ("loss", "micro_f1", "macro_f1", "jaccard", "subset_accuracy", "hamming_accuracy", "macro_mcc",
            "macro_auc") \
        if report.get("multi_label") else ("loss", "accuracy", "mcc", "macro_mcc", "macro_f1")
    return {k: report[k] for k in keys}
