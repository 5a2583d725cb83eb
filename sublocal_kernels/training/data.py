"""A classifier run's data: read, tokenise and split (:func:`prepare_data`), and what the data
tells the model (:func:`model_inputs`: alphabet, encoding, feature width; the features file's
provenance, :func:`features_source`, recorded in every checkpoint).
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np

from ..data import DataFormatError, DataWarning, SequenceDataset, load_features, load_records, stratified_split
from ..models import feature_kind
from .config import TrainConfig

__all__ = ["prepare_data", "model_inputs", "features_source", "cv_folds", "class_weights", "single_label_records"]


def prepare_data(cfg: TrainConfig, classes=None, warn: bool = False
                 ) -> tuple[SequenceDataset, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Read ``cfg.data``, tokenise it, and split it (seeded, stratified). Records flagged
    ``test`` (DeepLoc headers or a ``partition`` column) form the test set when there are any;
    the rest is split into training and validation.

    Without ``classes`` (training: the classes come from the data) fewer than two classes is a
    :class:`~sublocal_kernels.data.DataFormatError`. ``warn``: a :class:`DataWarning` for each
    empty split and for each class too small to reach every split."""
    if cfg.single_label_only:
        # Read without the classes: a label found only with others (left out here) is no error;
        # the dataset names any kept record whose label the classes lack.
        records = load_records(cfg.data, cfg.format, cfg.alphabet, None, multi_label=True)
        records = single_label_records(records, cfg.data, warn or classes is not None)
    else:
        records = load_records(cfg.data, cfg.format, cfg.alphabet, classes, multi_label=cfg.multi_label)
    if cfg.test_partition is not None:
        held = str(cfg.test_partition)
        found = sorted({str(r.partition) for r in records if r.partition is not None}, key=lambda v: (len(v), v))
        if held not in found:
            raise ValueError(f"--test-partition {held}: {cfg.data} has "
                             + (f"partitions {', '.join(found)}" if found else "no partition column"))
        records = [dataclasses.replace(r, partition="test") if r.partition == held else r for r in records]
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
    if cfg.cv_fold is not None:
        # One fold of a cross-validation: fold k tests, the next fold validates, the rest train.
        names, parts_k = cv_folds(ds, cfg)
        k = int(cfg.cv_fold)
        if not 0 <= k < len(parts_k):
            raise ValueError(f"cross-validation fold {k}: {cfg.data} has {len(parts_k)} folds")
        val = (k + 1) % len(parts_k)
        rest = [j for j in range(len(parts_k)) if j not in (k, val)]
        parts = (np.sort(np.concatenate([parts_k[j] for j in rest])), parts_k[val], parts_k[k])
        return ds, parts
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


def single_label_records(records, data, warn: bool = False) -> list:
    """The records of ``records`` with exactly one label (``--single-label-only``); ``warn``: a
    :class:`DataWarning` saying how many were left out (training, and evaluating a checkpoint).
    None left is a ``DataFormatError``."""
    kept = [r for r in records if len(r.labels) == 1]
    several = sum(len(r.labels) > 1 for r in records)
    unlabelled = len(records) - len(kept) - several
    if not kept:
        raise DataFormatError(data, None, None, f"--single-label-only: none of its {len(records)} records has "
                              "exactly one label")
    if warn and len(kept) < len(records):
        none = f" and {unlabelled} with none" if unlabelled else ""
        warnings.warn(f"{data}: --single-label-only keeps {len(kept)} of {len(records)} records, leaving out "
                      f"{several} with several labels{none}", DataWarning, stacklevel=3)
    return kept


def cv_folds(ds: SequenceDataset, cfg: TrainConfig) -> tuple[list[str], list[np.ndarray]]:
    """The cross-validation folds of ``ds``: ``(names, index arrays)``. An integer partition
    column (DeepLoc 2.0's ``Partition``, a ``fold`` column) gives them, in numeric order;
    otherwise ``cfg.folds`` folds stratified by label (by label set for multi-label data),
    seeded by the split seed. Records flagged ``test`` belong to no fold (the ensemble's test)."""
    part = np.array([r.partition for r in ds.records], dtype=object)
    values = {v for v in part if v not in (None, "test")}
    if values and all(str(v).lstrip("-").isdigit() for v in values):
        names = sorted(values, key=int)
        folds = [np.flatnonzero(part == v) for v in names]
    else:
        if values:
            raise ValueError(f"{cfg.data}: the partition column has non-integer values "
                             f"({', '.join(sorted(map(str, values))[:3])}): cross-validation needs integer folds")
        rest = np.flatnonzero(part != "test")
        k = int(cfg.folds)
        if len(rest) < k:
            raise ValueError(f"--folds {k}: {cfg.data} has only {len(rest)} sequences outside the test set")
        seed = cfg.seed if cfg.split_seed is None else cfg.split_seed
        folds = _stratified_folds(ds.labels[rest], k, seed)
        folds = [np.sort(rest[f]) for f in folds]
        names = [str(j) for j in range(k)]
    if len(folds) < 3:
        raise ValueError(f"{cfg.data}: {len(folds)} folds; cross-validation needs at least 3 (one tests, one "
                         "validates, the rest train)")
    return names, folds


def _stratified_folds(labels, k: int, seed: int) -> list[np.ndarray]:
    """``k`` folds of positions into ``labels``: each label's items shuffled and dealt in turn,
    the deal going on from where the previous label's ended, so the folds differ in size by at
    most one and each label (for multi-label data, each label set) is spread over them."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    fold_of = np.empty(len(labels), dtype=np.int64)
    start = 0
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        fold_of[idx] = (start + np.arange(len(idx))) % k
        start = (start + len(idx)) % k
    return [np.flatnonzero(fold_of == j) for j in range(k)]


def class_weights(cfg: TrainConfig, ds: SequenceDataset, train) -> np.ndarray | None:
    """The loss weights of ``cfg.class_weight``: None (unweighted); ``"balanced"``, from the
    training split (single-label: ``n / (K n_k)`` per class, as scikit-learn's; multi-label:
    each label's positive weight ``n_negative / n_positive``); or a file of ``class weight``
    lines (whitespace, tab or comma separated; ``#`` comments), one per class of the data."""
    if cfg.class_weight is None:
        return None
    K = len(ds.classes)
    train = np.asarray(train, dtype=np.int64)
    if cfg.class_weight == "balanced":
        if ds.multi_label:
            pos = ds.targets[train].sum(0).astype(np.float64)
            neg = len(train) - pos
            return np.where(pos > 0, neg / np.maximum(pos, 1.0), 1.0)
        counts = np.bincount(ds.labels[train], minlength=K).astype(np.float64)
        return np.where(counts > 0, len(train) / (K * np.maximum(counts, 1.0)), 0.0)
    return read_class_weights(cfg.class_weight, ds.classes)


def read_class_weights(path: str, classes) -> np.ndarray:
    """Per-class weights from ``path`` (see :func:`class_weights`); every class of the data must
    be given one, a positive finite number; an unknown class is an error naming its line."""
    given: dict[str, float] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as err:
        raise ValueError(f"--class-weight {path}: cannot read it ({err.strerror})") from None
    for n, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        fields = [f for f in text.replace(",", "\t").replace(" ", "\t").split("\t") if f]
        name, value = " ".join(fields[:-1]), fields[-1]
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not name or not np.isfinite(weight) or weight <= 0:
            raise ValueError(f"--class-weight {path}, line {n}: expected 'CLASS WEIGHT' with a positive weight, "
                             f"got {line.strip()!r}")
        if name not in classes:
            raise ValueError(f"--class-weight {path}, line {n}: class {name!r} is not in the data (classes: "
                             f"{', '.join(classes)})")
        given[name] = weight
    missing = [c for c in classes if c not in given]
    if missing:
        raise ValueError(f"--class-weight {path}: no weight for {', '.join(map(repr, missing))} (one line per class)")
    return np.array([given[c] for c in classes], dtype=np.float64)


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
        # (A multi-label data set's labels are label-set indices: count the class's own column.)
        counts = [int(ds.targets[p][:, k].sum()) if ds.multi_label else int((ds.labels[p] == k).sum())
                  for p in parts]
        absent = [names[j] for j in checked if counts[j] == 0]
        if absent:
            present = [names[j] for j in range(3) if counts[j]]
            n = sum(counts)
            warnings.warn(f"{data}: class {c!r} has {n} sequence{'s' if n != 1 else ''}, too few for the split: "
                          f"kept in {' and '.join(present)} only (none in {' or '.join(absent)})", DataWarning,
                          stacklevel=3)


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

