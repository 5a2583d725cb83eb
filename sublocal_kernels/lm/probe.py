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

Given split (``probe(..., test_embeddings=..., test_labels=..., split_column=...)``; the
command line's ``--test EMBEDDINGS [LABELS]`` and ``--split-column COLUMN``): instead of
cross-validation, the same models are fit once on the train side only (the scaler and ridge's
leave-one-out choice of penalty included) and scored once on the test side only, as a benchmark
with a published split (e.g. TAPE's stability task: Spearman's rho on its test set) is scored.
``folds`` does not apply. The sides come from one of:

- ``test_embeddings`` and ``test_labels``: a second embeddings file and its own labels file; the
  train side is ``labels`` in ``embeddings``, the test side ``test_labels`` in
  ``test_embeddings``, each id looked up in its own file (the two files may reuse ids).
- ``test_embeddings`` alone (or ``test_labels`` naming the ``labels`` file itself): ``labels``
  holds both sides; an id embedded in ``embeddings`` is a training one, an id embedded in
  ``test_embeddings`` a test one. An id in both files, or in neither, is an error.
- ``split_column``: a column of ``labels`` naming each row's side: ``train_values`` (default
  ``train``) for the train side, ``test_values`` (default ``test``, ``valid`` or
  ``validation``; a file holding more than one of these must choose one) for the test side,
  compared without case. Rows with another value are left out with a warning. Both sides are
  read from ``embeddings``, or the test side from ``test_embeddings`` when that is given.

Both embedding files must have the same width. In classification, test sequences of a class
never seen in training are kept and count as wrong predictions (the linear model cannot
predict the class); a warning names the classes. The result says ``protocol``: ``"cv"`` (with
``n`` and ``folds``) or ``"split"`` (with ``n_train`` and ``n_test``).

``tsne``: a PNG of the embeddings' t-SNE map (scikit-learn), coloured by label or value (with a
given split, both sides' sequences).
"""

from __future__ import annotations

import csv
import os
import warnings

import numpy as np

from .._optional import require
from ..data.embeddings import open_embeddings
from ..data.readers import DataFormatError, DataWarning, open_text
from ..plots import plot_embedding_tsne as _plot_tsne

__all__ = ["probe", "read_labels", "ProbeError", "TASKS"]

TASKS = ("regression", "classification")
TRAIN_VALUES = ("train",)
TEST_VALUES = ("test", "valid", "validation")


class ProbeError(ValueError):
    """The embeddings and the labels cannot be probed as asked."""


def read_labels(path, task: str) -> tuple[list[str], list]:
    """``(ids, targets)`` from the TSV/CSV ``path`` (see the module docstring); floats for
    ``regression``, strings for ``classification``."""
    ids, targets, _ = _read_labels(path, task)
    return ids, targets


def _read_labels(path, task: str, split_column: str | None = None) -> tuple[list[str], list, list | None]:
    """:func:`read_labels`, and the stripped values of the column ``split_column`` (``None``
    without it)."""
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
        cs, splits = None, None
        if split_column is not None:
            if split_column.strip().lower() not in names:
                raise DataFormatError(path, 1, None, f"--split-column {split_column}: no such column; the header "
                                      f"names {', '.join(names)} (delimiter {delimiter!r})")
            cs, splits = names.index(split_column.strip().lower()), []
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            line = reader.line_num
            if len(row) <= max(ci, cv, -1 if cs is None else cs):
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
            if cs is not None:
                splits.append(row[cs].strip())
    if not ids:
        raise DataFormatError(path, None, None, "no labelled rows after the header")
    return ids, targets, splits


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


def probe(embeddings, labels, task: str, folds: int | None = None, seed: int = 0, tsne: str | None = None, *,
          test_embeddings=None, test_labels=None, split_column: str | None = None,
          train_values=None, test_values=None) -> dict:
    """Linear probe of ``embeddings`` (a file in the layout of docs/embeddings-h5.md) on the labels of ``labels``
    (see the module docstring): ``folds``-fold cross-validated (default 5), or, given
    ``test_embeddings``, ``test_labels`` or ``split_column``, fit on the train side and scored
    on the test side. Returns the metrics (``protocol``; ``n`` and ``folds``, or ``n_train``
    and ``n_test``; ``spearman``/``r2`` or ``accuracy``/``mcc``; ``tsne``: the PNG's path)."""
    if task not in TASKS:
        raise ValueError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    if test_embeddings is not None or test_labels is not None or split_column is not None:
        if folds is not None:
            raise ValueError(f"--folds {folds} does not apply to a given train/test split (--test, --split-column)")
        return _probe_split(embeddings, labels, task, seed, tsne, test_embeddings, test_labels, split_column,
                            train_values, test_values)
    if train_values is not None or test_values is not None:
        raise ValueError("--train-value and --test-value apply only with --split-column")
    folds = 5 if folds is None else folds
    ids, targets = read_labels(labels, task)
    X = _features(os.fspath(embeddings), ids, os.fspath(labels))
    sk_model = require("sklearn.model_selection", "probe")
    metrics = require("sklearn.metrics", "probe")
    n = len(ids)
    result = {"task": task, "protocol": "cv", "n": n, "dim": int(X.shape[1]), "folds": folds}
    if task == "regression":
        y = np.asarray(targets, dtype=np.float64)
        if n < folds or n < 3:
            raise ProbeError(f"{labels}: {n} labelled sequences are too few for {folds}-fold cross-validation")
        if np.ptp(y) == 0:
            raise ProbeError(f"{labels}: every value is {y[0]:g}: nothing to regress")
        est = _estimator(task)
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
        est = _estimator(task)
        cv = sk_model.StratifiedKFold(folds, shuffle=True, random_state=seed)
        pred = sk_model.cross_val_predict(est, X, y, cv=cv)
        result.update(accuracy=float(metrics.accuracy_score(y, pred)),
                      mcc=float(metrics.matthews_corrcoef(y, pred)), classes=classes)
        colour = y
    if tsne:
        result["tsne"] = _plot_tsne(X, colour, task, tsne, seed, result.get("classes"))
    return result


def _values(given, default, flag: str) -> tuple[str, ...]:
    values = default if given is None else ([given] if isinstance(given, str) else list(given))
    values = tuple(dict.fromkeys(v.strip().lower() for v in values))
    if not values or not all(values):
        raise ValueError(f"{flag} needs at least one non-empty value, got {given!r}")
    return values


def _shown(items, limit: int = 5) -> str:
    items = list(items)
    return ", ".join(repr(m) for m in items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _sides_from_column(labels, task, split_column, train_values, test_values):
    """``(train ids, train targets, test ids, test targets, info)`` from the column ``split_column``."""
    ids, targets, splits = _read_labels(labels, task, split_column)
    train_v = _values(train_values, TRAIN_VALUES, "--train-value")
    test_v = _values(test_values, TEST_VALUES, "--test-value")
    both = sorted(set(train_v) & set(test_v))
    if both:
        raise ValueError(f"--train-value and --test-value both name {', '.join(map(repr, both))}")
    found = {}
    for v in splits:
        found[v.lower()] = found.get(v.lower(), 0) + 1
    if test_values is None and sum(v in found for v in test_v) > 1:
        named = [v for v in test_v if v in found]
        raise ProbeError(f"{labels}: column {split_column} holds rows of {' and '.join(map(repr, named))}: choose "
                         f"the test side with --test-value (e.g. --test-value {named[0]}; the others are left out)")
    sides = {"train": ([], []), "test": ([], [])}
    for i, t, v in zip(ids, targets, splits):
        side = "train" if v.lower() in train_v else "test" if v.lower() in test_v else None
        if side:
            sides[side][0].append(i)
            sides[side][1].append(t)
    holds = ", ".join(repr(v) for v in sorted(found)) or "nothing"
    for side, values in (("train", train_v), ("test", test_v)):
        if not sides[side][0]:
            flag = "--train-value" if side == "train" else "--test-value"
            raise ProbeError(f"{labels}: no {side} rows: column {split_column} has no value "
                             f"{' or '.join(map(repr, values))} ({flag}); it holds {holds}")
    left_out = {v: k for v, k in sorted(found.items()) if v not in train_v and v not in test_v}
    if left_out:
        counts = ", ".join(f"{k} {v or '(empty)'!r}" for v, k in left_out.items())
        warnings.warn(f"{labels}: {sum(left_out.values())} rows left out: their {split_column} is neither train "
                      f"({', '.join(train_v)}) nor test ({', '.join(test_v)}): {counts}", DataWarning, stacklevel=3)
    info = {"split_column": split_column, "train_values": list(train_v), "test_values": list(test_v)}
    if left_out:
        info["left_out"] = left_out
    return sides["train"][0], sides["train"][1], sides["test"][0], sides["test"][1], info


def _sides_by_file(embeddings, test_embeddings, labels, task):
    """One labels file for both sides: each id goes to the embedding file that holds it."""
    ids, targets = read_labels(labels, task)
    with open_embeddings(embeddings) as tr, open_embeddings(test_embeddings) as te:
        in_train = [i in tr for i in ids]
        in_test = [i in te for i in ids]
    both = [i for i, a, b in zip(ids, in_train, in_test) if a and b]
    if both:
        raise ProbeError(f"{labels}: {len(both)} ids are embedded in both {embeddings} and {test_embeddings}, so "
                         f"their side is unknown: {_shown(both)} (give --test its own labels file, or a "
                         f"--split-column)")
    neither = [i for i, a, b in zip(ids, in_train, in_test) if not a and not b]
    if neither:
        raise ProbeError(f"{embeddings}, {test_embeddings}: no embedding for {len(neither)} of the {len(ids)} ids "
                         f"in {labels}: {_shown(neither)}")
    for name, path, flags in (("train", embeddings, in_train), ("test", test_embeddings, in_test)):
        if not any(flags):
            raise ProbeError(f"{path}: no id of {labels} is embedded here: the {name} side is empty")
    train = [(i, t) for i, t, a in zip(ids, targets, in_train) if a]
    test = [(i, t) for i, t, a in zip(ids, targets, in_train) if not a]
    return [i for i, _ in train], [t for _, t in train], [i for i, _ in test], [t for _, t in test], {}


def _probe_split(embeddings, labels, task, seed, tsne, test_embeddings, test_labels, split_column, train_values,
                 test_values) -> dict:
    embeddings, labels = os.fspath(embeddings), os.fspath(labels)
    test_embeddings = embeddings if test_embeddings is None else os.fspath(test_embeddings)
    test_labels = None if test_labels is None else os.fspath(test_labels)
    if split_column is None and (train_values is not None or test_values is not None):
        raise ValueError("--train-value and --test-value apply only with --split-column")
    if split_column is not None:
        if test_labels is not None:
            raise ValueError("--split-column takes both sides' labels from LABELS: give --test only the test "
                             "EMBEDDINGS, without a labels file")
        tr_ids, tr_t, te_ids, te_t, info = _sides_from_column(labels, task, split_column, train_values, test_values)
        train_from, test_from = f"{labels} (train rows)", f"{labels} (test rows)"
    elif test_labels is None or _same_file(test_labels, labels):
        if test_embeddings == embeddings or _same_file(test_embeddings, embeddings):
            raise ValueError(f"--test {test_embeddings} is the EMBEDDINGS file: with one labels file, the sides are "
                             f"told apart by their embedding files (or give a --split-column)")
        tr_ids, tr_t, te_ids, te_t, info = _sides_by_file(embeddings, test_embeddings, labels, task)
        train_from = test_from = labels
    else:
        if test_embeddings == embeddings:
            raise ValueError("test labels need their test embeddings file (--test EMBEDDINGS LABELS)")
        tr_ids, tr_t = read_labels(labels, task)
        te_ids, te_t = read_labels(test_labels, task)
        info = {"test_labels": test_labels}
        train_from, test_from = labels, test_labels
    if test_embeddings != embeddings:
        info = {"test_embeddings": test_embeddings, **info}
        with open_embeddings(embeddings) as tr, open_embeddings(test_embeddings) as te:
            widths = tr.dim, te.dim
        if all(widths) and widths[0] != widths[1]:
            raise ProbeError(f"{test_embeddings}: embeddings are {widths[1]} wide, but those of {embeddings} are "
                             f"{widths[0]} wide: both sides must come from the same model")
    X_tr = _features(embeddings, tr_ids, train_from)
    X_te = _features(test_embeddings, te_ids, test_from)
    if X_tr.shape[1] != X_te.shape[1]:
        raise ProbeError(f"{test_embeddings}: embeddings are {X_te.shape[1]} wide, but those of {embeddings} are "
                         f"{X_tr.shape[1]} wide: both sides must come from the same model")
    metrics = require("sklearn.metrics", "probe")
    n_tr, n_te = len(tr_ids), len(te_ids)
    result = {"task": task, "protocol": "split", "n_train": n_tr, "n_test": n_te, "dim": int(X_tr.shape[1]), **info}
    if task == "regression":
        y_tr, y_te = np.asarray(tr_t, dtype=np.float64), np.asarray(te_t, dtype=np.float64)
        if n_tr < 3:
            raise ProbeError(f"{train_from}: {n_tr} training sequences are too few to fit a ridge regression")
        if np.ptp(y_tr) == 0:
            raise ProbeError(f"{train_from}: every training value is {y_tr[0]:g}: nothing to regress")
        if n_te < 2 or np.ptp(y_te) == 0:
            raise ProbeError(f"{test_from}: {n_te} test sequences, " + (f"every value {y_te[0]:g}" if n_te > 1 else
                             "one value") + ": Spearman's rho and R^2 need at least two different test values")
        pred = _estimator(task).fit(X_tr, y_tr).predict(X_te)
        rho = require("scipy.stats", "probe").spearmanr(y_te, pred).statistic
        result.update(spearman=float(rho), r2=float(metrics.r2_score(y_te, pred)))
        colour = np.concatenate([y_tr, y_te])
    else:
        seen = sorted(set(tr_t))
        if len(seen) < 2:
            raise ProbeError(f"{train_from}: every training label is {seen[0]!r}: a classifier needs at least two "
                             f"classes")
        classes = sorted(set(tr_t) | set(te_t))
        unseen = sorted(set(te_t) - set(tr_t))
        y_tr = np.asarray([classes.index(t) for t in tr_t])
        y_te = np.asarray([classes.index(t) for t in te_t])
        if unseen:
            k = sum(t in unseen for t in te_t)
            warnings.warn(f"{test_from}: {k} of the {n_te} test sequences have a class never seen in training "
                          f"({_shown(unseen)}): they count as wrong predictions", DataWarning,
                          stacklevel=2)
        pred = _estimator(task).fit(X_tr, y_tr).predict(X_te)
        result.update(accuracy=float(metrics.accuracy_score(y_te, pred)),
                      mcc=float(metrics.matthews_corrcoef(y_te, pred)), classes=classes)
        if unseen:
            result["unseen_classes"] = unseen
        colour = np.concatenate([y_tr, y_te])
    if tsne:
        result["tsne"] = _plot_tsne(np.concatenate([X_tr, X_te]), colour, task, tsne, seed, result.get("classes"))
    return result


def _estimator(task: str):
    """The model both protocols fit: standardised features, then ridge (its penalty chosen by
    leave-one-out on the data it is fit on) or L2 logistic regression."""
    pipeline = require("sklearn.pipeline", "probe")
    pre = require("sklearn.preprocessing", "probe")
    linear = require("sklearn.linear_model", "probe")
    if task == "regression":
        return pipeline.make_pipeline(pre.StandardScaler(), linear.RidgeCV(alphas=np.logspace(-3, 4, 15)))
    return pipeline.make_pipeline(pre.StandardScaler(), linear.LogisticRegression(C=1.0, max_iter=2000))


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)
