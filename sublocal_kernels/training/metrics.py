"""Classification metrics: from a confusion matrix (accuracy, per-class MCC and F1, macro means), and
for multi-label predictions (micro/macro F1, Jaccard, subset accuracy, per-class thresholds, and
the threshold-free ROC AUC and average precision)."""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np

from .._optional import require
from ..plots import plot_confusion, plot_multilabel_confusion  # noqa: F401  (they lived here)

__all__ = ["confusion_matrix", "classification_report", "format_report", "plot_confusion", "tune_thresholds",
           "predict_labels", "multilabel_report", "format_multilabel_report", "plot_multilabel_confusion",
           "SELECT_BY", "THRESHOLD_BY", "selection_score", "ranking_scores"]

#: what ``--select-by`` may name: the validation figure that picks the best epoch (``loss``: the
#: lowest; every other: the highest). ``accuracy`` is subset accuracy for multi-label data,
#: ``mcc`` the multi-class MCC (single-label) or the mean per-label MCC (multi-label); for
#: single-label data ``micro-f1`` equals accuracy, and ``jaccard`` and ``macro-auc`` (the mean of
#: the labels' ROC AUC, LncLocFormer's selection figure) are refused.
SELECT_BY = ("loss", "accuracy", "mcc", "macro-f1", "micro-f1", "jaccard", "macro-auc")
#: how per-label thresholds are tuned (``--threshold-by``): each label's F1, or its MCC (DeepLoc 2.0).
THRESHOLD_BY = ("f1", "mcc")

_REPORT_KEY = {"accuracy": ("accuracy", "subset_accuracy"), "mcc": ("mcc", "macro_mcc"),
               "macro-f1": ("macro_f1", "macro_f1"), "micro-f1": ("accuracy", "micro_f1"),
               "jaccard": (None, "jaccard"), "macro-auc": (None, "macro_auc")}


def selection_score(report: dict, metric: str) -> float:
    """The figure of ``report`` (a validation report with ``loss``) that ``--select-by metric``
    maximises: ``-loss`` for ``loss``, else the metric (see :data:`SELECT_BY`)."""
    if metric == "loss":
        return -float(report["loss"])
    if metric not in _REPORT_KEY:
        raise ValueError(f"--select-by must be one of {', '.join(SELECT_BY)}, got {metric!r}")
    key = _REPORT_KEY[metric][1 if report.get("multi_label") else 0]
    if key is None:
        raise ValueError(f"--select-by {metric} applies to multi-label data only" + (
            " (with one label per sequence the sample-averaged Jaccard index is the accuracy: use --select-by "
            "accuracy)" if metric == "jaccard" else " (for one label per sequence use --select-by accuracy or mcc)"))
    value = float(report[key])
    # An undefined figure (no label of the validation set has both positives and negatives, for
    # an AUC) never beats a defined one.
    return value if math.isfinite(value) else -math.inf


def _skm():
    return require("sklearn.metrics", "metrics")


def confusion_matrix(true, pred, num_classes: int) -> np.ndarray:
    """``(K, K) int64``: row = true class, column = predicted class."""
    true, pred = np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    if true.size == 0:
        return np.zeros((num_classes, num_classes), dtype=np.int64)
    return _skm().confusion_matrix(true, pred, labels=np.arange(num_classes)).astype(np.int64)


def classification_report(cm: np.ndarray, classes: Sequence[str]) -> dict:
    """Accuracy, per-class (one-vs-rest) MCC, F1, precision, recall and support, their macro
    means, and the multi-class MCC (Gorodkin's R_K, which is what ``matthews_corrcoef`` computes
    for more than two classes). A class that is never predicted and never present has MCC and
    F1 0 and is left out of the macro means (support 0)."""
    skm = _skm()
    cm = np.asarray(cm, dtype=np.int64)
    K = len(classes)
    n = int(cm.sum())
    # The (true, predicted) pairs the confusion matrix counts, for sklearn's label-based API.
    true = np.repeat(np.repeat(np.arange(K), K), cm.reshape(-1))
    pred = np.repeat(np.tile(np.arange(K), K), cm.reshape(-1))
    labels = np.arange(K)
    if n:
        precision, recall, f1, support = skm.precision_recall_fscore_support(
            true, pred, labels=labels, zero_division=0)
    else:
        precision = recall = f1 = np.zeros(K)
        support = np.zeros(K, dtype=np.int64)
    per = {}
    with warnings.catch_warnings():
        # matthews_corrcoef has no `labels`: where one label is all there is (a class never
        # predicted and never present, a one-class split) it warns, and returns 0, as documented.
        warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
        for k, name in enumerate(classes):
            mcc = float(skm.matthews_corrcoef(true == k, pred == k)) if n else 0.0
            per[name] = {"mcc": mcc, "f1": float(f1[k]), "precision": float(precision[k]),
                         "recall": float(recall[k]), "support": int(support[k])}
        multi_mcc = float(skm.matthews_corrcoef(true, pred)) if n else 0.0
    present = [v for v in per.values() if v["support"] > 0]
    return {
        "n": n,
        "accuracy": float(skm.accuracy_score(true, pred)) if n else 0.0,
        "mcc": multi_mcc,
        "macro_mcc": float(np.mean([v["mcc"] for v in present])) if present else 0.0,
        "macro_f1": float(np.mean([v["f1"] for v in present])) if present else 0.0,
        "per_class": per,
        "confusion": cm.tolist(),
        "classes": list(classes),
    }


def format_report(report: dict) -> str:
    """The report as text: summary line, per-class table, confusion matrix."""
    classes = report["classes"]
    width = max(8, max(len(c) for c in classes))
    lines = [f"n={report['n']}  accuracy={report['accuracy']:.4f}  MCC={report['mcc']:.4f}  "
             f"macro MCC={report['macro_mcc']:.4f}  macro F1={report['macro_f1']:.4f}", "",
             f"{'class':<{width}}  {'MCC':>7}  {'F1':>7}  {'prec':>7}  {'recall':>7}  {'n':>6}"]
    for c in classes:
        v = report["per_class"][c]
        lines.append(f"{c:<{width}}  {v['mcc']:7.4f}  {v['f1']:7.4f}  {v['precision']:7.4f}  {v['recall']:7.4f}  "
                     f"{v['support']:6d}")
    cm = np.asarray(report["confusion"])
    cell = max(5, len(str(cm.max())) + 1)
    lines += ["", "confusion matrix (rows: true, columns: predicted)",
              " " * (width + 4) + "".join(f"{i:>{cell}d}" for i in range(len(classes)))]
    for i, c in enumerate(classes):
        lines.append(f"{c:<{width}} {i:>3d}" + "".join(f"{v:>{cell}d}" for v in cm[i]))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Multi-label: several classes per sequence, one sigmoid probability and threshold per class


def tune_thresholds(targets, probs, classes: Sequence[str], default: float = 0.5, by: str = "f1"
                    ) -> tuple[list[float], list[str]]:
    """Per class, the probability threshold that maximises that class's F1 (``by="f1"``, from
    ``sklearn.metrics.precision_recall_curve``) or its Matthews correlation (``by="mcc"``, as
    DeepLoc 2.0 tunes its thresholds; from ``sklearn.metrics.roc_curve``) on ``(targets,
    probs)`` (``(N, K)`` 0/1 and probabilities; a sequence is predicted in class ``k`` when
    ``probs[:, k] >= thresholds[k]``). Ties go to the highest threshold. A class with no
    positive in ``targets`` (for MCC: or no negative) keeps ``default``. Returns
    ``(thresholds, classes kept at the default)``."""
    if by not in THRESHOLD_BY:
        raise ValueError(f"--threshold-by must be one of {', '.join(THRESHOLD_BY)}, got {by!r}")
    skm = _skm()
    targets, probs = np.asarray(targets) > 0.5, np.asarray(probs, dtype=np.float64)
    thresholds, untuned = [], []
    for k, name in enumerate(classes):
        if not targets[:, k].any() or (by == "mcc" and targets[:, k].all()):
            thresholds.append(float(default))
            untuned.append(name)
            continue
        if by == "mcc":
            thresholds.append(_mcc_threshold(skm, targets[:, k], probs[:, k]))
            continue
        precision, recall, cuts = skm.precision_recall_curve(targets[:, k], probs[:, k])
        # precision/recall have one more entry than cuts (the final (1, 0) point): drop it.
        p, r = precision[:-1], recall[:-1]
        f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0.0)
        best = np.flatnonzero(f1 == f1.max())[-1]
        thresholds.append(float(cuts[best]))
    return thresholds, untuned


def _mcc_threshold(skm, truth: np.ndarray, probs: np.ndarray) -> float:
    """The threshold of highest MCC for one label (ties: the highest threshold): every cut
    between distinct probabilities, its true and false positives from the ROC curve."""
    fpr, tpr, cuts = skm.roc_curve(truth, probs, drop_intermediate=False)
    pos, neg = float(truth.sum()), float((~truth).sum())
    tp, fp = tpr[1:] * pos, fpr[1:] * neg  # cuts[0] is +inf: nothing predicted
    fn, tn = pos - tp, neg - fp
    den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = np.where(den > 0, (tp * tn - fp * fn) / np.maximum(den, 1e-300), 0.0)
    # roc_curve lists thresholds from the highest down: the first maximum is the highest cut.
    return float(cuts[1:][int(np.argmax(mcc))])


def predict_labels(probs, thresholds: Sequence[float], top_one: bool = False) -> np.ndarray:
    """``(N, K) int64`` 0/1 predictions: class ``k`` where ``probs[:, k] >= thresholds[k]``;
    with ``top_one`` (DeepLoc 2.0's rule) a sequence with no class at or above its threshold
    gets its most probable class."""
    probs = np.asarray(probs, dtype=np.float64)
    pred = (probs >= np.asarray(thresholds, dtype=np.float64)[None, :]).astype(np.int64)
    if top_one and pred.size:
        empty = np.flatnonzero(pred.sum(1) == 0)
        pred[empty, probs[empty].argmax(1)] = 1
    return pred


def ranking_scores(targets, probs, classes: Sequence[str]) -> dict:
    """The threshold-free figures of ``probs (N, K)`` against 0/1 ``targets (N, K)``, from
    scikit-learn: per class the ROC AUC and the average precision (the area under the
    precision-recall curve), their means over the classes where they are defined
    (``macro_auc``, ``macro_ap``) and the ROC AUC of every (sequence, label) pair pooled
    (``micro_auc``). A class with no positive or no negative among the ``N`` has no AUC (NaN;
    no positive: no average precision either), and is left out of the means; NaN if none is
    defined (as for no records at all). They say how well the probabilities rank, which F1 and MCC at a tuned threshold
    hide when a label is rare or the signal weak."""
    skm = _skm()
    targets = (np.asarray(targets) > 0.5).astype(np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    per = {}
    n = len(targets)
    for k, name in enumerate(classes):
        pos = int(targets[:, k].sum())
        per[name] = {"auc": float(skm.roc_auc_score(targets[:, k], probs[:, k])) if 0 < pos < n else math.nan,
                     "ap": float(skm.average_precision_score(targets[:, k], probs[:, k])) if pos > 0 else math.nan}

    def mean(key):
        values = [v[key] for v in per.values() if math.isfinite(v[key])]
        return float(np.mean(values)) if values else math.nan

    flat = targets.ravel()
    micro = float(skm.roc_auc_score(flat, probs.ravel())) if 0 < flat.sum() < flat.size else math.nan
    return {"macro_auc": mean("auc"), "micro_auc": micro, "macro_ap": mean("ap"), "per_class": per}


def multilabel_report(targets, probs, thresholds: Sequence[float], classes: Sequence[str],
                      top_one: bool = False) -> dict:
    """Multi-label metrics of ``probs (N, K)`` against 0/1 ``targets (N, K)`` with per-class
    ``thresholds`` (and ``top_one``: see :func:`predict_labels`), all from scikit-learn: micro
    and macro F1, the sample-averaged Jaccard index, subset accuracy (every label of a sequence
    right), ``hamming_accuracy`` (1 - Hamming loss), the threshold-free ``macro_auc``,
    ``micro_auc`` and ``macro_ap`` (:func:`ranking_scores`), and per class MCC, F1, precision,
    recall, support, ROC AUC, average precision and the 2x2 confusion matrix ``[[tn, fp], [fn,
    tp]]``. The macro F1 averages the classes with support (as :func:`classification_report`
    does)."""
    skm = _skm()
    targets = (np.asarray(targets) > 0.5).astype(np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    n, K = targets.shape if targets.ndim == 2 else (0, len(classes))
    pred = predict_labels(probs, thresholds, top_one) if n else targets
    per = {}
    if n:
        precision, recall, f1, support = skm.precision_recall_fscore_support(targets, pred, average=None,
                                                                             zero_division=0)
        confusion = skm.multilabel_confusion_matrix(targets, pred)
    else:
        precision = recall = f1 = np.zeros(K)
        support = np.zeros(K, dtype=np.int64)
        confusion = np.zeros((K, 2, 2), dtype=np.int64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
        for k, name in enumerate(classes):
            per[name] = {"mcc": float(skm.matthews_corrcoef(targets[:, k], pred[:, k])) if n else 0.0,
                         "f1": float(f1[k]), "precision": float(precision[k]), "recall": float(recall[k]),
                         "support": int(support[k]), "threshold": float(thresholds[k]),
                         "confusion": confusion[k].astype(np.int64).tolist()}
    ranking = ranking_scores(targets.reshape(n, K), probs.reshape(n, K), classes)
    for name in classes:
        per[name].update(ranking["per_class"][name])
    present = [v for v in per.values() if v["support"] > 0]
    return {
        "n": int(n),
        "multi_label": True,
        "micro_f1": float(skm.f1_score(targets, pred, average="micro", zero_division=0)) if n else 0.0,
        "macro_f1": float(np.mean([v["f1"] for v in present])) if present else 0.0,
        "jaccard": float(skm.jaccard_score(targets, pred, average="samples", zero_division=0)) if n else 0.0,
        "subset_accuracy": float(skm.accuracy_score(targets, pred)) if n else 0.0,
        "hamming_accuracy": 1.0 - float(skm.hamming_loss(targets, pred)) if n else 0.0,
        "top_one": bool(top_one),
        "macro_mcc": float(np.mean([v["mcc"] for v in present])) if present else 0.0,
        **{k: ranking[k] for k in ("macro_auc", "micro_auc", "macro_ap")},
        "per_class": per,
        "classes": list(classes),
        "thresholds": [float(t) for t in thresholds],
    }


def format_multilabel_report(report: dict) -> str:
    """A multi-label report as text: summary line and the per-class table."""
    classes = report["classes"]
    width = max(8, max(len(c) for c in classes))
    lines = [f"n={report['n']}  micro F1={report['micro_f1']:.4f}  macro F1={report['macro_f1']:.4f}  "
             f"Jaccard={report['jaccard']:.4f}  subset accuracy={report['subset_accuracy']:.4f}  "
             f"1-Hamming={report.get('hamming_accuracy', float('nan')):.4f}  macro MCC={report['macro_mcc']:.4f}  "
             f"macro AUC={report.get('macro_auc', float('nan')):.4f}  micro AUC={report.get('micro_auc', float('nan')):.4f}",
             "",
             f"{'class':<{width}}  {'MCC':>7}  {'F1':>7}  {'prec':>7}  {'recall':>7}  {'AUC':>7}  {'AP':>7}  "
             f"{'thresh':>7}  {'n':>6}  {'tn':>6} {'fp':>6} {'fn':>6} {'tp':>6}"]
    for c in classes:
        v = report["per_class"][c]
        (tn, fp), (fn, tp) = v["confusion"]
        lines.append(f"{c:<{width}}  {v['mcc']:7.4f}  {v['f1']:7.4f}  {v['precision']:7.4f}  {v['recall']:7.4f}  "
                     f"{v.get('auc', math.nan):7.4f}  {v.get('ap', math.nan):7.4f}  "
                     f"{v['threshold']:7.4f}  {v['support']:6d}  {tn:6d} {fp:6d} {fn:6d} {tp:6d}")
    return "\n".join(lines)
