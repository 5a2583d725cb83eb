"""``sublocal probe``: how much of a property a linear model can read from embeddings.

Labels come from a TSV (or CSV) with a header naming ``id`` and either ``value`` (a number:
regression) or ``label`` (a class name: classification); other columns are ignored. Every
labelled id must be in the embedding file (the ids missing from it are an error listing the
first few); embeddings without a label are left out. Per-residue files are averaged over the
residues first.

- ``regression``: standardised features, ridge regression with its penalty chosen by
  leave-one-out inside each training fold (scikit-learn's ``RidgeCV``), ``folds``-fold
  cross-validated predictions; Spearman's rho (scipy) and the R^2 of those predictions.
- ``classification``: standardised features, L2 logistic regression (``C = 1``; an inner
  search over ``C`` with ``LogisticRegressionCV`` cost 20x the time for 300 sequences),
  stratified ``folds``-fold cross-validated predictions; accuracy and Matthews correlation
  (scikit-learn).

``tsne``: a PNG of the embeddings' t-SNE map (scikit-learn), coloured by label or value.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from .._optional import require
from ..data.embeddings import open_embeddings
from ..data.readers import DataFormatError, open_text

__all__ = ["probe", "read_labels", "ProbeError", "TASKS"]

TASKS = ("regression", "classification")


class ProbeError(ValueError):
    """The embeddings and the labels cannot be probed as asked."""


def read_labels(path, task: str) -> tuple[list[str], list]:
    """``(ids, targets)`` from the TSV/CSV ``path`` (see the module docstring); floats for
    ``regression``, strings for ``classification``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such labels file")
    column = "value" if task == "regression" else "label"
    delimiter = "," if path.lower().endswith((".csv", ".csv.gz")) else "\t"
    ids, targets, where = [], [], {}
    with open_text(path, newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        head = next(reader, None)
        if head is None:
            raise DataFormatError(path, 1, None, f"empty file: expected a header row naming id and {column}")
        names = [h.strip().lower() for h in head]
        if "id" not in names or column not in names:
            raise DataFormatError(path, 1, None, f"--task {task} needs columns id and {column}; the header names "
                                  f"{', '.join(names) or 'nothing'} (delimiter {delimiter!r})")
        ci, cv = names.index("id"), names.index(column)
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            line = reader.line_num
            if len(row) <= max(ci, cv):
                raise DataFormatError(path, line, None, f"expected {len(head)} fields, got {len(row)}")
            rid, raw = row[ci].strip(), row[cv].strip()
            if not rid:
                raise DataFormatError(path, line, None, "empty id")
            if rid in where:
                raise DataFormatError(path, line, rid, f"duplicate id (first at line {where[rid]})")
            where[rid] = line
            if task == "regression":
                try:
                    value = float(raw)
                except ValueError:
                    value = float("nan")
                if not np.isfinite(value):
                    raise DataFormatError(path, line, rid, f"value must be a finite number, got {raw!r}")
                targets.append(value)
            else:
                if not raw:
                    raise DataFormatError(path, line, rid, "empty label")
                targets.append(raw)
            ids.append(rid)
    if not ids:
        raise DataFormatError(path, None, None, "no labelled rows after the header")
    return ids, targets


def _features(embeddings: str, ids: list[str], labels_path: str) -> np.ndarray:
    with open_embeddings(embeddings) as emb:
        missing = [i for i in ids if i not in emb]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise ProbeError(f"{embeddings}: no embedding for {len(missing)} of the {len(ids)} ids in {labels_path}: "
                             f"{shown}")
        rows = []
        for i in ids:
            a = emb[i]
            rows.append(a.mean(0) if a.ndim == 2 else a)
    return np.stack(rows).astype(np.float64)


def probe(embeddings, labels, task: str, folds: int = 5, seed: int = 0, tsne: str | None = None) -> dict:
    """Cross-validated linear probe of ``embeddings`` (a file in the shared layout) on the
    labels of ``labels`` (see the module docstring). Returns the metrics (``n``, ``folds``,
    and ``spearman``/``r2`` or ``accuracy``/``mcc``; ``tsne``: the PNG's path)."""
    if task not in TASKS:
        raise ValueError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    ids, targets = read_labels(labels, task)
    X = _features(os.fspath(embeddings), ids, os.fspath(labels))
    sk_model = require("sklearn.model_selection", "probe")
    pipeline = require("sklearn.pipeline", "probe")
    pre = require("sklearn.preprocessing", "probe")
    linear = require("sklearn.linear_model", "probe")
    metrics = require("sklearn.metrics", "probe")
    n = len(ids)
    result = {"task": task, "n": n, "dim": int(X.shape[1]), "folds": folds}
    if task == "regression":
        y = np.asarray(targets, dtype=np.float64)
        if n < folds or n < 3:
            raise ProbeError(f"{labels}: {n} labelled sequences are too few for {folds}-fold cross-validation")
        if np.ptp(y) == 0:
            raise ProbeError(f"{labels}: every value is {y[0]:g}: nothing to regress")
        est = pipeline.make_pipeline(pre.StandardScaler(), linear.RidgeCV(alphas=np.logspace(-3, 4, 15)))
        cv = sk_model.KFold(folds, shuffle=True, random_state=seed)
        pred = sk_model.cross_val_predict(est, X, y, cv=cv)
        rho = require("scipy.stats", "probe").spearmanr(y, pred).statistic
        result.update(spearman=float(rho), r2=float(metrics.r2_score(y, pred)))
        colour = y
    else:
        classes = sorted(set(targets))
        if len(classes) < 2:
            raise ProbeError(f"{labels}: every label is {classes[0]!r}: a classifier needs at least two classes")
        y = np.asarray([classes.index(t) for t in targets])
        smallest = int(np.bincount(y).min())
        if smallest < folds:
            rare = classes[int(np.argmin(np.bincount(y)))]
            raise ProbeError(f"{labels}: class {rare!r} has {smallest} sequences, fewer than --folds {folds}")
        est = pipeline.make_pipeline(pre.StandardScaler(), linear.LogisticRegression(C=1.0, max_iter=2000))
        cv = sk_model.StratifiedKFold(folds, shuffle=True, random_state=seed)
        pred = sk_model.cross_val_predict(est, X, y, cv=cv)
        result.update(accuracy=float(metrics.accuracy_score(y, pred)),
                      mcc=float(metrics.matthews_corrcoef(y, pred)), classes=classes)
        colour = y
    if tsne:
        result["tsne"] = _plot_tsne(X, colour, task, tsne, seed, result.get("classes"))
    return result


def _plot_tsne(X, colour, task, path, seed, classes) -> str:
    manifold = require("sklearn.manifold", "the t-SNE map (--tsne)")
    require("matplotlib", "the t-SNE map (--tsne)").use("Agg")
    plt = require("matplotlib.pyplot", "the t-SNE map (--tsne)")
    perplexity = float(min(30.0, max(2.0, (len(X) - 1) / 3)))
    xy = manifold.TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(X)
    fig, ax = plt.subplots(figsize=(6, 5))
    if task == "regression":
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=colour, s=8, cmap="viridis")
        fig.colorbar(sc, ax=ax, label="value")
    else:
        for k, name in enumerate(classes):
            m = colour == k
            ax.scatter(xy[m, 0], xy[m, 1], s=8, label=name)
        ax.legend(markerscale=2, fontsize="small")
    ax.set_title(f"t-SNE of {X.shape[1]}-dimensional embeddings ({len(X)} sequences)")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
