"""A classifier run's data: read, tokenise and split (:func:`prepare_data`), and what the data
tells the model (:func:`model_inputs`: alphabet, encoding, feature width; the features file's
provenance, :func:`features_source`, recorded in every checkpoint).
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from ..data import DataFormatError, DataWarning, SequenceDataset, load_features, load_records, stratified_split
from ..models import feature_kind
from .config import TrainConfig

__all__ = ["prepare_data", "model_inputs", "features_source"]


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

