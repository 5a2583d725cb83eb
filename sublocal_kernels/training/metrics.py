"""Classification metrics from a confusion matrix: accuracy, per-class MCC and F1, macro means."""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from .._optional import require

__all__ = ["confusion_matrix", "classification_report", "format_report", "plot_confusion"]


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


def plot_confusion(report: dict, path: str, title: str = "Confusion matrix") -> str:
    """Write the confusion matrix as a PNG (row-normalised colours, counts written in)."""
    matplotlib = require("matplotlib", "plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(report["confusion"], dtype=np.float64)
    classes = report["classes"]
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = 1.6 + 0.55 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} (accuracy {report['accuracy']:.3f})")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
