"""``sublocal train --cv``: one run per held-out fold, and the fold ensemble.

The folds are the data's partition column (DeepLoc 2.0's ``Partition``, a ``fold`` column) or
``cfg.folds`` stratified folds (:func:`~.data.cv_folds`). For fold ``k`` the run in
``OUT/fold-<name>`` (an ordinary :func:`~.trainer.train` run, ``cfg.cv_fold = k``) tests on
fold ``k``, validates on the next fold and trains on the rest: the held-out fold never
chooses the checkpoint, and DeepLoc 2.0's homology partitions stay apart.

Then, on rank 0:

- the out-of-fold predictions: every record of fold ``k`` scored by fold ``k``'s best model
  (``OUT/oof.tsv``); for multi-label data the ensemble's thresholds are tuned on them (per
  label, by ``cfg.threshold_by``);
- ``OUT/ensemble``: the folds' best models as one checkpoint (an
  :class:`~sublocal_kernels.models.Ensemble` averaging their probabilities), which ``predict``
  and ``evaluate`` take as ``OUT``;
- ``OUT/cv.json``: each fold's test report, the mean and standard deviation of the headline
  figures over folds, the pooled out-of-fold report, and, where records are held out of every
  fold (flagged ``test``, or ``--test-partition``), the ensemble's and every fold model's
  report on them.

Resume: each fold resumes from its own ``last.json``; a finished fold (its ``summary.json``
complete) is skipped; settings that differ from the saved ones (``config.json``, each fold's
``last.json``) are refused. Under ``torchrun`` the folds left are dealt to the ranks in turn,
each trained in one process; rank 0 waits for the others' folds by their files (a fold may
take longer than a process group's timeout) and assembles the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from typing import Callable

import numpy as np

from .checkpoint import atomic_write, load_checkpoint, read_checkpoint_meta, save_checkpoint
from .config import TrainConfig, resume_differences
from .data import cv_folds, prepare_data
from .distributed import DistributedContext, barrier, distributed_context, resolve_device
from .evaluation import evaluate_model, run_model
from .metrics import classification_report, confusion_matrix, multilabel_report, ranking_scores, tune_thresholds
from .rundir import RUN_FILES
from .run import _json_ready, hold_run_directory

__all__ = ["cross_validate", "HEADLINE"]

#: the figures averaged over folds (single-label, multi-label)
HEADLINE = {False: ("accuracy", "mcc", "macro_mcc", "macro_f1"),
            True: ("subset_accuracy", "jaccard", "micro_f1", "macro_f1", "macro_mcc", "hamming_accuracy",
                   "macro_auc")}


def fold_dir(out: str, name: str) -> str:
    return os.path.join(out, f"fold-{name}")


def cross_validate(cfg: TrainConfig, resume: bool = False, overwrite: bool = False,
                   log: Callable[[str], None] | None = None, poll_seconds: float = 5.0) -> dict:
    """Train one model per fold of ``cfg.data`` (see the module docstring) in ``cfg.out``;
    returns the cross-validation summary (``cv.json``; empty on ranks other than 0)."""
    from .trainer import _train, check_config

    cfg = dataclasses.replace(cfg, cv=True, cv_fold=None)
    check_config(cfg)
    if cfg.val_partition is not None:
        raise ValueError("--val-partition does not apply to --cv: each fold is validated by the next one")
    device = resolve_device(cfg.device)
    ctx = distributed_context(device)
    say = log or (lambda m: print(m, flush=True) if ctx.is_main else None)
    with hold_run_directory(cfg.out, resume, overwrite, ctx, barrier=True):
        if resume:
            _same_run(cfg, os.path.join(cfg.out, "config.json"), "the cross-validation's")
        ds, _ = prepare_data(dataclasses.replace(cfg, cv_fold=0), warn=False)
        names, folds = cv_folds(ds, cfg)
        chosen = _chosen(cfg, names)
        # Every rank checks every chosen fold before any trains, so a refusal stops them all at once.
        todo = [k for k in chosen if not (resume and _finished(_fold_cfg(cfg, names, k), k))]
        if ctx.is_main:
            if overwrite:
                _clear_folds(cfg.out)  # the previous run's folds must not join this run's ensemble
            saved = dataclasses.replace(cfg, only_folds=None)
            atomic_write(os.path.join(cfg.out, "config.json"), (json.dumps(saved.to_json(), indent=1) + "\n").encode())
        barrier(ctx)
        say(f"cross-validation: {len(names)} folds ({', '.join(f'{n}: {len(f)}' for n, f in zip(names, folds))} "
            f"sequences)" + (f", {ctx.world_size} processes taking folds in turn" if ctx.active else ""))
        alone = DistributedContext()  # a fold trains in one process
        for k in chosen:
            if k not in todo:
                say(f"fold {names[k]}: finished ({fold_dir(cfg.out, names[k])}), skipped")
        for j, k in enumerate(todo):
            if j % ctx.world_size != ctx.rank:
                continue
            fold_cfg = _fold_cfg(cfg, names, k)
            again = resume and os.path.isfile(os.path.join(fold_cfg.out, "last.json"))
            say(f"fold {names[k]} ({k + 1}/{len(names)}): tests on fold {names[k]}, validates on fold "
                f"{names[(k + 1) % len(names)]} -> {fold_cfg.out}")
            with hold_run_directory(fold_cfg.out, again, not again, alone):
                _train(fold_cfg, again, log, None, device, alone)
        if not ctx.is_main:
            return {}
        # Rank 0 waits for the other ranks' folds by their files, not by a collective: a fold can
        # take hours, longer than a process group's timeout.
        others = [fold_dir(cfg.out, names[k]) for j, k in enumerate(todo) if j % ctx.world_size != ctx.rank]
        while not all(_complete(d) for d in others):
            time.sleep(poll_seconds)
        return _assemble(cfg, ds, names, folds, device, say)


def _fold_cfg(cfg: TrainConfig, names, k: int) -> TrainConfig:
    return dataclasses.replace(cfg, out=fold_dir(cfg.out, names[k]), cv_fold=k, only_folds=None)


def _same_run(cfg: TrainConfig, path: str, whose: str) -> None:
    """Refuse (``ValueError``, one line) settings that differ from those saved in ``path`` outside
    what a resume may change."""
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    saved = TrainConfig.from_json(doc.get("train_config", doc))
    diffs = resume_differences(dataclasses.replace(cfg, cv_fold=saved.cv_fold), saved)
    if diffs:
        raise ValueError(f"{path}: --resume with settings that differ from {whose}: {'; '.join(diffs)}")


def _clear_folds(out: str) -> None:
    """Remove the run files of every ``fold-*`` directory in ``out`` (only the files runs write)."""
    for entry in sorted(os.listdir(out)):
        path = os.path.join(out, entry)
        if entry.startswith("fold-") and os.path.isdir(path):
            for f in RUN_FILES:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(path, f))


def _chosen(cfg: TrainConfig, names) -> list[int]:
    """The folds to train now: ``cfg.only_folds`` (names), or every fold."""
    if not cfg.only_folds:
        return list(range(len(names)))
    unknown = [str(f) for f in cfg.only_folds if str(f) not in names]
    if unknown:
        raise ValueError(f"--only-folds {','.join(map(str, cfg.only_folds))}: no fold {', '.join(unknown)} "
                         f"(folds: {', '.join(names)})")
    return sorted({names.index(str(f)) for f in cfg.only_folds})


def _complete(out: str) -> bool:
    """Whether the fold run in ``out`` ran to its end: its summary is not an interrupted run's
    and covers every epoch of its ``last`` checkpoint (a resumed run that was killed leaves the
    previous summary behind)."""
    if not all(os.path.isfile(os.path.join(out, f)) for f in ("summary.json", "best.json", "last.json")):
        return False
    with open(os.path.join(out, "summary.json")) as fh:
        summary = json.load(fh)
    _, meta = read_checkpoint_meta(os.path.join(out, "last.json"))
    return not summary.get("interrupted", True) and len(summary["history"]) == meta["train_state"]["epoch"]


def _finished(cfg: TrainConfig, k: int) -> bool:
    """Whether fold ``k``'s run in ``cfg.out`` has trained ``cfg.epochs`` epochs (or stopped
    early); one trained with other settings is refused, as a resume of it would be."""
    if not _complete(cfg.out):
        return False
    last = os.path.join(cfg.out, "last.json")
    _same_run(cfg, last, f"fold {k}'s")
    state = read_checkpoint_meta(last)[1]["train_state"]
    return state["epoch"] >= cfg.epochs or bool(state.get("stopped"))


def _assemble(cfg: TrainConfig, ds, names, folds, device, say) -> dict:
    multi = cfg.multi_label
    K = len(ds.classes)
    oof = np.zeros((len(ds), K), dtype=np.float32)
    fold_of = np.full(len(ds), -1, dtype=np.int64)
    members, rows = [], []
    test = np.flatnonzero(np.array([r.partition == "test" for r in ds.records]))
    ready = [k for k, name in enumerate(names) if _complete(fold_dir(cfg.out, name))]
    if not ready:
        raise ValueError(f"{cfg.out}: no fold has finished training yet (train them with --resume, or "
                         "--only-folds NAME,...)")
    for k in ready:
        # Every member must come from this run's settings (a resume may change only the epochs...).
        _same_run(_fold_cfg(cfg, names, k), os.path.join(fold_dir(cfg.out, names[k]), "last.json"),
                  f"fold {names[k]}'s")
    missing = [names[k] for k in range(len(names)) if k not in ready]
    if missing:
        say(f"folds not trained yet: {', '.join(missing)} (train them with --resume --only-folds ...); the "
            "ensemble and the figures below cover the others")
    for k in ready:
        name, idx = names[k], folds[k]
        out = fold_dir(cfg.out, name)
        ck = load_checkpoint(os.path.join(out, "best.json"), device)
        with open(os.path.join(out, "summary.json")) as fh:
            fold_summary = json.load(fh)
        probs, _, _ = run_model(ck.model, ds, idx, device, cfg.eval_batch_size)
        oof[idx], fold_of[idx] = probs, k
        history = fold_summary["history"]
        row = {"fold": name, "dir": out, "train": fold_summary["splits"]["train"],
               "val": fold_summary["splits"]["val"], "test": fold_summary["splits"]["test"],
               "epochs": len(history), "best_epoch": fold_summary["best_epoch"],
               "stopped_early": fold_summary.get("stopped_early", False),
               "time_per_epoch_s": float(np.mean([h["time_s"] for h in history])) if history else None,
               "report": _headline(fold_summary.get("test"), multi)}
        if fold_summary.get("test_last"):
            row["report_last"] = _headline(fold_summary["test_last"], multi)
        if multi and row["report"] is not None and "macro_auc" not in row["report"]:
            # A fold trained before the reports had ROC AUC: its best model's test probabilities
            # are these, so its figures are computed here.
            ranking = ranking_scores(ds.targets[idx], probs, ds.classes)
            row["report"]["macro_auc"] = ranking["macro_auc"]
            for c, v in ranking["per_class"].items():
                row["report"]["per_class"][c]["auc"] = v["auc"]
        rows.append(row)
        members.append(ck)
    done = np.flatnonzero(fold_of >= 0)
    summary = {"data": cfg.data, "folds": rows, "folds_missing": missing, "select_by": cfg.selection,
               "multi_label": multi, "classes": ds.classes}
    summary["mean"], summary["std"] = _spread([r["report"] for r in rows], multi)
    meta = {k: v for k, v in members[0].meta.items() if k in ("classes", "alphabet", "max_length", "encoding",
                                                              "num_features", "features_source")}
    meta["train_config"] = cfg.to_json()
    meta["cv"] = {"folds": [r["fold"] for r in rows], "members": [r["dir"] for r in rows]}
    if multi:
        thresholds, untuned = tune_thresholds(ds.targets[done], oof[done], ds.classes, by=cfg.threshold_by)
        fallback = np.mean([ck.meta["thresholds"] for ck in members], axis=0)
        thresholds = [float(fallback[j]) if c in untuned else t for j, (c, t) in enumerate(zip(ds.classes, thresholds))]
        summary["oof"] = multilabel_report(ds.targets[done], oof[done], thresholds, ds.classes, cfg.top_one)
        meta.update(multi_label=True, thresholds=thresholds, threshold_by=cfg.threshold_by, top_one=cfg.top_one,
                    thresholds_tuned="out-of-fold")
    else:
        summary["oof"] = classification_report(confusion_matrix(ds.labels[done], oof[done].argmax(1), K), ds.classes)
    from ..models import Ensemble

    ensemble = Ensemble([ck.model for ck in members], multi_label=multi).eval()
    summary["ensemble"] = save_checkpoint(cfg.out, "ensemble", ensemble, meta)
    if len(test):
        # Data no fold trained, validated or tested on: the ensemble against each of its members.
        thresholds = meta.get("thresholds")
        summary["test"] = {"n": int(len(test)), "ensemble": _headline(evaluate_model(
            ensemble, ds, test, device, cfg.eval_batch_size, thresholds=thresholds, top_one=cfg.top_one), multi),
            "members": [_headline(evaluate_model(ck.model, ds, test, device, cfg.eval_batch_size,
                                                 thresholds=ck.meta.get("thresholds"), top_one=cfg.top_one), multi)
                        for ck in members]}
    _write_oof(os.path.join(cfg.out, "oof.tsv"), ds, done, fold_of, names, oof)
    atomic_write(os.path.join(cfg.out, "cv.json"), (json.dumps(_json_ready(summary), indent=1) + "\n").encode())
    say(_describe(summary, multi))
    return summary


def _headline(report: dict | None, multi: bool) -> dict | None:
    """A report's headline figures and its per-class MCC, F1 and ROC AUC (no confusion matrices)."""
    if report is None:
        return None
    # A figure undefined on its data (an AUC where a label has one class only) is NaN here; the
    # run's JSON files store it as null.
    out = {k: _nan(report[k]) for k in HEADLINE[multi] + ("loss", "n") if k in report}
    out["per_class"] = {c: {k: _nan(v[k]) for k in ("mcc", "f1", "support", "auc") if k in v}
                        for c, v in report["per_class"].items()}
    return out


def _nan(value):
    return math.nan if value is None else value


def _spread(reports, multi: bool) -> tuple[dict, dict]:
    """Mean and standard deviation (the sample's, ``ddof=1``; 0 for one fold) over folds of each
    headline figure and of each class's MCC (and, multi-label, ROC AUC), over the folds where
    it is defined."""
    reports = [r for r in reports if r is not None]
    mean, std = {}, {}
    if not reports:
        return mean, std

    def both(values):
        # Over the folds where the figure is defined (a label's AUC is not, in a test fold that
        # lacks it); NaN where no fold has it.
        values = np.asarray(values, dtype=np.float64)
        values = values[~np.isnan(values)]
        if not len(values):
            return math.nan, math.nan
        return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0

    for key in HEADLINE[multi]:
        mean[key], std[key] = both([r[key] for r in reports])
    for key in ("mcc", "auc"):
        if not all(key in v for r in reports for v in r["per_class"].values()):
            continue  # single-label reports have no per-class AUC
        mean[f"{key}_per_class"], std[f"{key}_per_class"] = {}, {}
        for c in reports[0]["per_class"]:
            mean[f"{key}_per_class"][c], std[f"{key}_per_class"][c] = both([r["per_class"][c][key] for r in reports])
    return mean, std


def _write_oof(path: str, ds, done, fold_of, names, probs) -> None:
    """``id, fold, label, p_<class>...``: the out-of-fold probabilities, one row per record."""
    lines = ["\t".join(["id", "fold", "label", *(f"p_{c}" for c in ds.classes)])]
    for i in done:
        r = ds.records[int(i)]
        lines.append("\t".join([r.id, names[int(fold_of[i])], r.label or "", *(f"{p:.6f}" for p in probs[i])]))
    atomic_write(path, ("\n".join(lines) + "\n").encode())


def _describe(summary: dict, multi: bool) -> str:
    keys = HEADLINE[multi]
    mean, std = summary["mean"], summary["std"]
    lines = [f"cross-validation over {len(summary['folds'])} folds (best checkpoint by validation "
             f"{summary['select_by']}), test fold of each:"]
    lines += [f"  fold {r['fold']}: " + ", ".join(f"{k} {r['report'][k]:.4f}" for k in keys)
              for r in summary["folds"] if r["report"]]
    if mean:
        lines.append("  mean +- std: " + ", ".join(f"{k} {mean[k]:.4f} +- {std[k]:.4f}" for k in keys))
    oof = summary["oof"]
    lines.append("out-of-fold (pooled" + (", thresholds tuned on it" if multi else "") + "): "
                 + ", ".join(f"{k} {oof[k]:.4f}" for k in keys if k in oof and not math.isnan(oof[k])))
    if "test" in summary:
        t = summary["test"]
        # Each figure of the ensemble beside the range of its members' (the best member differs
        # from one figure to the next).
        lines.append(f"held-out test ({t['n']}), the ensemble against its members (lowest..highest): " + ", ".join(
            f"{k} {t['ensemble'][k]:.4f} ({min(m[k] for m in t['members']):.4f}.."
            f"{max(m[k] for m in t['members']):.4f})" for k in keys if not math.isnan(t["ensemble"][k])))
    lines.append(f"ensemble: {summary['ensemble']}")
    return "\n".join(lines)
