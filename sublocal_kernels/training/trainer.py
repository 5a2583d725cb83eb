"""The training loop (the library behind ``sublocal train``); the config, the distributed set-up,
the data and the evaluation are in :mod:`.config`, :mod:`.distributed`, :mod:`.data` and
:mod:`.evaluation` (their names importable from here too).

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
from typing import Callable

import torch

from .._optional import MissingDependency, require
from ..data import DataFormatError, DataWarning, LengthBucketSampler, SequenceDataset, collate
from ..models import build_model
from .checkpoint import Checkpoint, CheckpointError, atomic_write, load_checkpoint, save_checkpoint
from .config import RESUMABLE, TrainConfig, _flag, resume_differences
from .data import _feature_chunks, features_source, model_inputs, prepare_data
from .distributed import DistributedContext, distributed_context, resolve_device, step_seed
from .distributed import global_sum as _global_sum
from .evaluation import _loss_sum, _warn_untuned, evaluate_model, run_model
from .fp_mode import flush_denormal_steps
from .rundir import run_directory

__all__ = ["TrainConfig", "train", "model_inputs", "prepare_data", "evaluate_model", "run_model",
           "DistributedContext", "distributed_context", "step_seed", "RESUMABLE", "resume_differences"]


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


def _json_ready(value):
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
