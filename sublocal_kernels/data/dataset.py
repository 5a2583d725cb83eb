"""Tokenised data sets, middle truncation, length-bucketed batches and the seeded stratified split."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .alphabets import get_alphabet
from .readers import DataFormatError, Record, SeveralLabelsError

__all__ = ["truncate_middle", "kept_positions", "SequenceDataset", "Batch", "collate", "LengthBucketSampler",
           "stratified_split", "load_features", "FeatureView"]


def kept_positions(length: int, max_length: int | None) -> np.ndarray:
    """Indices of the residues the paper's scheme keeps: all of them when ``max_length`` is None
    or not exceeded, else the first ``ceil(max_length/2)`` and the last ``floor(max_length/2)``
    (the middle is removed)."""
    if max_length is None or length <= max_length:
        return np.arange(length)
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2 to keep both termini, got {max_length}")
    head, tail = (max_length + 1) // 2, max_length // 2
    return np.concatenate([np.arange(head), np.arange(length - tail, length)])


def truncate_middle(seq, max_length: int | None):
    """``seq`` (str, array or tensor; residues along the first axis) with its middle removed so
    at most ``max_length`` residues remain: the paper's scheme (first and last ``max_length/2``).

    >>> truncate_middle("ABCDEFGHIJ", 4)
    'ABIJ'
    """
    if max_length is None or len(seq) <= max_length:
        return seq
    head, tail = (max_length + 1) // 2, max_length // 2
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2 to keep both termini, got {max_length}")
    if isinstance(seq, str):
        return seq[:head] + seq[len(seq) - tail:]
    if isinstance(seq, torch.Tensor):
        return torch.cat([seq[:head], seq[len(seq) - tail:]])
    return np.concatenate([seq[:head], seq[len(seq) - tail:]])


def load_features(path, records: Sequence[Record], kind: str = "per-residue", model: str | None = None
                  ) -> "FeatureView":
    """Features from an embedding file (``.h5``/``.hdf5`` or ``.npz``, keyed by record id; see
    :mod:`sublocal_kernels.data.embeddings`) for ``records``, read lazily: the returned
    :class:`FeatureView` checks now, from the file's metadata, that every record is there with
    the right shape (one width ``F`` for all), and reads a record's array only when it is asked
    for. Errors name the file and the record.

    ``kind``: what the model reads. ``"per-residue"`` (the sequence models): the file must hold
    ``(L, F)`` arrays, ``L`` the record's cleaned length; a per-protein file is refused.
    ``"per-protein"`` (``--model mlp``): one ``(F,)`` vector per record; a per-residue file is
    accepted and each record's ``(L, F)`` array is averaged over its residues when read (as
    ``sublocal probe`` does). ``model``: the model's name, for the messages."""
    from .embeddings import open_embeddings

    if kind not in ("per-residue", "per-protein"):
        raise ValueError(f"kind must be 'per-residue' or 'per-protein', got {kind!r}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such features file")
    reader = open_embeddings(path)
    who = f" for --model {model}" if model else ""
    if kind == "per-residue" and reader.kind != "per-residue":
        raise DataFormatError(path, None, None, f"--features needs per-residue embeddings (L, D){who}; this file "
                              f"holds {reader.kind} vectors (D,) (its 'kind' attribute): train --model mlp on "
                              "per-protein embeddings, or write per-residue ones (sublocal embed --per-residue)")
    vector = reader.kind == "per-protein"
    width = None
    for r in records:
        if r.id not in reader:
            what = "feature vector" if vector else "feature array"
            raise DataFormatError(path, None, r.id, f"no {what} for this record id{who}")
        shape = reader.shape(r.id)
        if vector and len(shape) != 1:
            raise DataFormatError(path, None, r.id, f"per-protein feature vector must have shape (F,), got {shape}")
        if not vector and (len(shape) != 2 or shape[0] != len(r.sequence)):
            raise DataFormatError(path, None, r.id, f"feature array must have shape (L={len(r.sequence)}, F), "
                                  f"got {shape}: the embedding's length differs from the sequence's")
        if width is None:
            width = shape[-1]
        elif shape[-1] != width:
            raise DataFormatError(path, None, r.id, f"feature width {shape[-1]} differs from the first "
                                  f"record's {width}")
    return FeatureView(reader, [r.id for r in records], [len(r.sequence) for r in records], width or 0,
                       per_protein=kind == "per-protein", average=kind == "per-protein" and not vector)


class FeatureView:
    """The features of a list of records, read from an embedding file one record at a time.

    ``view[i]`` is record ``i``'s ``(L, F)`` float32 array (read now), or with ``per_protein``
    its ``(F,)`` vector (``average``: the mean over the rows of a per-residue array);
    ``view.take(indices)`` a view of some of the records (nothing read); ``positions``, when
    given, the residues kept per record (middle truncation; per-residue views only)."""

    def __init__(self, reader, ids, lengths, width: int, positions=None, per_protein: bool = False,
                 average: bool = False):
        self.reader, self.ids, self.lengths, self.width = reader, list(ids), list(lengths), int(width)
        self.per_protein, self.average = bool(per_protein), bool(average)
        self.positions = None if self.per_protein else positions

    @property
    def kind(self) -> str:
        """``"per-protein"`` (items are ``(F,)``) or ``"per-residue"`` (items are ``(L, F)``)."""
        return "per-protein" if self.per_protein else "per-residue"

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i) -> np.ndarray:
        a = self.reader.get(self.ids[i], self.lengths[i])
        if self.average:
            return a.mean(0, dtype=np.float64).astype(np.float32)
        if self.positions is not None and len(self.positions[i]) != len(a):
            a = a[self.positions[i]]
        return a

    def take(self, indices) -> "FeatureView":
        idx = [int(i) for i in indices]
        return FeatureView(self.reader, [self.ids[i] for i in idx], [self.lengths[i] for i in idx], self.width,
                           None if self.positions is None else [self.positions[i] for i in idx], self.per_protein,
                           self.average)


class SequenceDataset:
    """Records as token arrays with integer labels.

    Args:
        records: :class:`Record` list (``label`` may be None for prediction).
        classes: the class names (index = label); default: the sorted labels of ``records``.
        alphabet: the records' alphabet (sequences are already cleaned by the readers).
        max_length: None (default, full length) or the paper's middle truncation length.
        features: None, an embedding file (``.h5``/``.hdf5``/``.npz``, read lazily per item: see
            :func:`load_features`), a :class:`FeatureView`, or a list of arrays aligned with
            ``records``: ``(L, F)`` per residue, or ``(F,)`` per protein.
        feature_kind: what a features *file* must give (see :func:`load_features`):
            ``"per-residue"`` (default) or ``"per-protein"`` (``--model mlp``).

        multi_label: records may have several labels (``record.labels``); ``targets`` is then the
            ``(N, K)`` float32 0/1 matrix of them and ``labels`` each record's *label set* index
            into ``label_sets`` (what the stratified split balances), -1 when unlabelled.

    Item ``i``: ``(tokens (L,) uint8, label int (-1 when unlabelled), features (L, F), (F,) or None)``;
    ``feature_kind`` is ``"per-protein"`` when the features are one vector per record (then
    :func:`collate` stacks them into ``(B, F)``), else ``"per-residue"`` (or None: no features).
    """

    def __init__(self, records: Sequence[Record], classes: Sequence[str] | None = None, alphabet="protein",
                 max_length: int | None = None, features=None, multi_label: bool = False,
                 feature_kind: str = "per-residue"):
        self.alphabet = get_alphabet(alphabet)
        self.records = list(records)
        self.multi_label = bool(multi_label)
        if classes is None:
            classes = sorted({c for r in self.records for c in r.labels})
        self.classes = list(classes)
        index = {c: i for i, c in enumerate(self.classes)}
        self.targets = self.label_sets = None
        if self.multi_label:
            self.targets = np.zeros((len(self.records), len(self.classes)), dtype=np.float32)
            sets: dict[tuple, int] = {}
            set_index = []
            for i, r in enumerate(self.records):
                for c in r.labels:
                    if c not in index:
                        p, line = r.source or (None, None)
                        raise DataFormatError(p, line, r.id, f"unknown label {c!r}; known: {', '.join(self.classes)}")
                    self.targets[i, index[c]] = 1
                set_index.append(sets.setdefault(r.labels, len(sets)) if r.labels else -1)
            self.label_sets = list(sets)
        else:
            several = next((r for r in self.records if len(r.labels) > 1), None)
            if several is not None:
                p, line = several.source or (None, None)
                raise SeveralLabelsError(p, line, several.id, several.label,
                                         "pass --multi-label to train on several labels per record")
        if max_length is not None and max_length < 2:
            raise ValueError(f"max_length must be None or >= 2, got {max_length}")
        self.max_length = max_length
        if isinstance(features, (str, os.PathLike)):
            features = load_features(features, self.records, feature_kind)
        lazy = isinstance(features, FeatureView)
        per_protein = features.per_protein if lazy else (
            features is not None and len(self.records) > 0 and np.ndim(features[0]) == 1)
        self.tokens, self.labels, self.positions = [], [], []
        self.features = [] if features is not None and not lazy else None
        for i, r in enumerate(self.records):
            if not self.multi_label and r.label is not None and r.label not in index:
                p, line = r.source or (None, None)
                raise DataFormatError(p, line, r.id, f"unknown label {r.label!r}; known: {', '.join(self.classes)}")
            keep = kept_positions(len(r.sequence), max_length)
            self.positions.append(keep)
            self.tokens.append(self.alphabet.encode(r.sequence)[keep])
            if not self.multi_label:
                self.labels.append(index[r.label] if r.label is not None else -1)
            if self.features is not None:
                a = np.asarray(features[i], dtype=np.float32)
                self.features.append(a if per_protein else a[keep])
        self.lengths = np.array([len(t) for t in self.tokens], dtype=np.int64)
        self.labels = np.array(set_index if self.multi_label else self.labels, dtype=np.int64)
        if lazy:
            # Read per batch (collate), never all at once: 20,000 x 500 x 1024 floats is 40 GB.
            self.features = FeatureView(features.reader, features.ids, features.lengths, features.width,
                                        self.positions, features.per_protein, features.average)
            self.num_features = features.width
        else:
            self.num_features = 0 if features is None or not self.features else self.features[0].shape[-1]
        self.feature_kind = None if features is None else "per-protein" if per_protein else "per-residue"

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i):
        return self.tokens[i], int(self.labels[i]), None if self.features is None else self.features[i]

    def subset(self, indices) -> "SequenceDataset":
        """A view with the given records (same classes, truncation and features)."""
        new = object.__new__(SequenceDataset)
        new.alphabet, new.classes, new.max_length, new.num_features = (self.alphabet, self.classes, self.max_length,
                                                                        self.num_features)
        new.feature_kind = getattr(self, "feature_kind", None)
        idx = [int(i) for i in indices]
        new.multi_label, new.label_sets = self.multi_label, self.label_sets
        new.targets = None if self.targets is None else self.targets[idx]
        new.records = [self.records[i] for i in idx]
        new.tokens = [self.tokens[i] for i in idx]
        new.positions = [self.positions[i] for i in idx]
        if isinstance(self.features, FeatureView):
            new.features = self.features.take(idx)
        else:
            new.features = None if self.features is None else [self.features[i] for i in idx]
        new.lengths, new.labels = self.lengths[idx], self.labels[idx]
        return new


@dataclass
class Batch:
    """A padded batch. ``tokens (B, T) int64`` (0 past each length), ``lengths (B,) int64``,
    ``labels (B,) int64`` (-1 unlabelled), ``features (B, T, F) float32`` (zero past each
    length), ``(B, F)`` for per-protein features, or None, ``index (B,)`` the items' indices in
    the data set, ``targets (B, K) float32`` the 0/1 labels of a multi-label data set (else None)."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    features: torch.Tensor | None
    index: torch.Tensor
    targets: torch.Tensor | None = None

    def to(self, device, non_blocking: bool = True) -> "Batch":
        f = None if self.features is None else self.features.to(device, non_blocking=non_blocking)
        t = None if self.targets is None else self.targets.to(device, non_blocking=non_blocking)
        return Batch(self.tokens.to(device, non_blocking=non_blocking),
                     self.lengths.to(device, non_blocking=non_blocking),
                     self.labels.to(device, non_blocking=non_blocking), f, self.index, t)

    def __len__(self) -> int:
        return self.tokens.shape[0]


def collate(dataset: SequenceDataset, indices: Sequence[int]) -> Batch:
    """Pad the items ``indices`` of ``dataset`` to the longest of them (never to a fixed length)."""
    idx = np.asarray(indices, dtype=np.int64)
    lengths = dataset.lengths[idx]
    T = int(lengths.max()) if len(idx) else 0
    tokens = np.zeros((len(idx), T), dtype=np.int64)
    feats = None
    per_protein = getattr(dataset, "feature_kind", None) == "per-protein"
    if dataset.features is not None:
        shape = (len(idx), dataset.num_features) if per_protein else (len(idx), T, dataset.num_features)
        feats = np.zeros(shape, dtype=np.float32)
    for row, i in enumerate(idx):
        n = lengths[row]
        tokens[row, :n] = dataset.tokens[i]
        if feats is not None:
            if per_protein:
                feats[row] = dataset.features[i]
            else:
                feats[row, :n] = dataset.features[i]
    targets = getattr(dataset, "targets", None)
    return Batch(torch.from_numpy(tokens), torch.from_numpy(lengths.copy()), torch.from_numpy(dataset.labels[idx]),
                 None if feats is None else torch.from_numpy(feats), torch.from_numpy(idx),
                 None if targets is None else torch.from_numpy(targets[idx]))


class LengthBucketSampler:
    """Batches of similar length, so padding stays small, reshuffled every epoch from a seed.

    Each epoch: a permutation from ``(seed, epoch)``; it is cut into pools of
    ``pool_batches * batch_size`` items; each pool is sorted by length and cut into batches of
    ``batch_size`` items (or, with ``max_tokens``, of at most ``max_tokens`` padded residues);
    the batches are shuffled. Without ``shuffle``, one pool: batches in length order.

    :meth:`batches` gives the *global* batches of an epoch; in distributed training rank ``r``
    of ``W`` takes ``batch[r::W]`` of each (see :meth:`shard`), so the global batch, and hence the
    gradient, is the same for any number of processes. Iterating yields this process's shards
    (``rank``/``num_replicas``) for the epoch set with :meth:`set_epoch`.
    """

    def __init__(self, lengths, batch_size: int = 32, shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 max_tokens: int | None = None, pool_batches: int = 50, num_replicas: int = 1, rank: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be None or >= 1, got {max_tokens}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas) = [0, {num_replicas}), got {rank}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.max_tokens, self.pool_batches = max_tokens, pool_batches
        self.num_replicas, self.rank, self.epoch = num_replicas, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _cut(self, order: np.ndarray) -> list[list[int]]:
        out, cur, longest = [], [], 0
        for i in order:
            n = int(self.lengths[i])
            too_many = len(cur) >= self.batch_size
            too_long = self.max_tokens is not None and cur and max(longest, n) * (len(cur) + 1) > self.max_tokens
            if too_many or too_long:
                out.append(cur)
                cur, longest = [], 0
            cur.append(int(i))
            longest = max(longest, n)
        if cur:
            out.append(cur)
        return out

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """The global batches of ``epoch`` (default: the one set with :meth:`set_epoch`)."""
        epoch = self.epoch if epoch is None else epoch
        n = len(self.lengths)
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            batches = self._cut(order)
        else:
            rng = np.random.default_rng([self.seed, epoch])
            perm = rng.permutation(n)
            pool = self.batch_size * self.pool_batches
            batches = []
            for s in range(0, n, pool):
                chunk = perm[s:s + pool]
                batches.extend(self._cut(chunk[np.argsort(self.lengths[chunk], kind="stable")]))
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size or self.max_tokens is not None]
        if self.num_replicas > 1:
            # Every rank must get at least one item of every global batch, or the ranks would run
            # different numbers of steps (and DistributedDataParallel would wait forever).
            batches = [b for b in batches if len(b) >= self.num_replicas]
        return batches

    def shard(self, batch: Sequence[int]) -> list[int]:
        """This rank's part of a global batch: every ``num_replicas``-th item from ``rank``
        (batches are length-sorted, so the parts have similar lengths)."""
        return list(batch[self.rank::self.num_replicas])

    def __iter__(self):
        for b in self.batches():
            yield self.shard(b)

    def __len__(self) -> int:
        return len(self.batches())


def stratified_split(labels, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
                     ) -> tuple[np.ndarray, ...]:
    """Split indices into parts (e.g. train/validation/test) with each class in the given
    proportions, reproducibly from ``seed``.

    Per class, the items are shuffled and cut by the largest-remainder rounding of
    ``fractions * count``; every part that has a positive fraction gets at least one item of a
    class with at least as many items as there are such parts. Returns sorted index arrays.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.ndim != 1 or (fractions < 0).any() or not math.isclose(fractions.sum(), 1.0, abs_tol=1e-6):
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions.tolist()}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts = [[] for _ in fractions]
    positive = np.flatnonzero(fractions > 0)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        want = fractions * len(idx)
        counts = np.floor(want).astype(int)
        for j in np.argsort(-(want - counts), kind="stable")[: len(idx) - counts.sum()]:
            counts[j] += 1
        if len(idx) >= len(positive):
            for j in positive:
                while counts[j] == 0:
                    donor = int(np.argmax(counts))
                    counts[donor] -= 1
                    counts[j] += 1
        start = 0
        for j, k in enumerate(counts):
            parts[j].extend(idx[start:start + k].tolist())
            start += k
    return tuple(np.sort(np.asarray(p, dtype=np.int64)) for p in parts)
