"""The model side of prediction: one or several checkpoints (an ensemble, averaged), token-budget
batches within a window of records, and the rows of that window in input order.

An ``mlp`` checkpoint (one embedding vector per protein) reads its vectors from ``--features``,
or, without it, embeds each batch of records itself: the checkpoint records the embedder of its
training features (``features_source``: the file's ``model`` and ``pool`` attributes), which is
loaded with :func:`sublocal_kernels.lm.embed.load_pretrained` and run on the batch's residues
just before the classifier (one pass over the FASTA file, nothing written in between)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..data.dataset import LengthBucketSampler, SequenceDataset, collate
from ..data.readers import Record
from ..models import Ensemble, LightAttention, feature_kind
from ..training.checkpoint import CheckpointError, load_predictor, read_checkpoint_meta
from .writers import RowWriter, attention_window

__all__ = ["PredictorSpec", "Predictor", "token_batches", "checkpoint_identity"]


def token_batches(lengths, max_tokens: int, max_records: int) -> list[list[int]]:
    """Indices into ``lengths`` cut into batches in length order, each of at most ``max_records``
    records and at most ``max_tokens`` padded residues (its longest length x its size); a record
    longer than ``max_tokens`` forms a batch of its own."""
    return LengthBucketSampler(lengths, max_records, shuffle=False, max_tokens=max_tokens).batches()


def checkpoint_identity(paths: Sequence[str]) -> list[dict]:
    """For each checkpoint JSON, the hashes it records of itself and of its tensors (checked
    against the tensors when it is loaded): what ``--resume`` compares."""
    out = []
    for path in paths:
        json_path, meta = read_checkpoint_meta(path)
        out.append({"path": json_path, "sha256": meta["sha256"], "tensors_sha256": meta.get("tensors_sha256")})
    return out


def _has_attention(model) -> bool:
    return isinstance(model, LightAttention) or getattr(model, "attention", None) is not None


@dataclass
class PredictorSpec:
    """Everything a process needs to build the same :class:`Predictor` (picklable, for workers).

    ``checkpoints``: one or more paths (each may itself be a comma-separated list or a run
    directory; all of them form one ensemble). ``max_tokens``/``max_records``: the batch limits.
    ``attention``: the width of the attention summary's window, or None for no summary."""

    checkpoints: Sequence[str]
    device: str = "cpu"
    format: str = "tsv"
    attention: int | None = None
    max_tokens: int = 32768
    max_records: int = 256
    features: str | None = None
    paths: list[str] = field(default_factory=list)  # filled in by Predictor: the member JSON paths


class Predictor:
    """The models of ``spec`` on its device, evaluated under :func:`torch.inference_mode` (the ops
    then keep nothing for a backward). Multi-label checkpoints (``"multi_label": true``) go through
    a sigmoid, the others a softmax; an ensemble averages its members' probabilities (and
    attention), and a multi-label ensemble its members' thresholds."""

    def __init__(self, spec: PredictorSpec):
        self.spec = spec
        self.device = torch.device(spec.device)
        paths = [p for entry in spec.checkpoints for p in str(entry).split(",") if p]
        ck = load_predictor(paths, self.device)
        self.members = list(ck.model.members) if isinstance(ck.model, Ensemble) else [ck.model]
        self.paths = ck.meta.get("ensemble", [ck.path])
        spec.paths = list(self.paths)
        metas = [read_checkpoint_meta(p)[1] for p in self.paths] if len(self.paths) > 1 else [ck.meta]
        meta = self.meta = ck.meta
        self.classes = list(meta["classes"])
        self.max_length = meta.get("max_length")
        self.alphabet = meta["alphabet"]
        kinds = {bool(m.get("multi_label", False)) for m in metas}
        if len(kinds) != 1:
            raise CheckpointError(f"{self.paths[0]}: an ensemble cannot mix multi-label and single-label "
                                  "checkpoints")
        self.multi_label = kinds.pop()
        thresholds = None
        if self.multi_label:
            for m, p in zip(metas, self.paths):
                t = m.get("thresholds")
                if not isinstance(t, list) or len(t) != len(self.classes):
                    raise CheckpointError(f"{p}: a multi-label checkpoint needs 'thresholds', one per class "
                                          f"({len(self.classes)}), got {t!r}")
            thresholds = np.mean([m["thresholds"] for m in metas], axis=0)
        self.num_features = int(meta.get("num_features", 0) or 0)
        self.feature_kind = feature_kind(meta)
        self.embedder = None
        if spec.features is not None:
            self._check_features(spec.features, metas)
        elif self.feature_kind == "per-protein":
            self._load_embedder(metas)
        elif self.num_features:
            raise ValueError(f"{self.paths[0]}: this model reads {self.num_features} precomputed features per "
                             "residue: pass --features FILE (.h5 or .npz)")
        if spec.attention is not None:
            for m, p in zip(self.members, self.paths):
                if not _has_attention(m):
                    raise ValueError(f"--attention-summary: {p} is a {getattr(m, 'name', type(m).__name__)} model, "
                                     "which has no attention (use an attention model: alstm, or qrnn/tcn with "
                                     "--pooling attention)")
        top_one = {bool(m.get("top_one")) for m in metas}
        if len(top_one) != 1:
            raise CheckpointError(f"{self.paths[0]}: an ensemble cannot mix checkpoints trained with and without "
                                  "--top-one")
        self.writer = RowWriter(spec.format, self.classes, thresholds, spec.attention is not None, top_one.pop())

    def _check_features(self, path: str, metas) -> None:
        """The ``--features`` file against the checkpoints, before any record is read: its kind
        and width (a mismatch names the file and the checkpoint); a per-protein file whose
        ``pool`` differs from the one the model was trained on is a warning."""
        import warnings

        from ..data.embeddings import open_embeddings

        if not self.num_features:
            raise ValueError(f"--features {path}: {self.paths[0]} was trained without features "
                             "(leave --features out)")
        with open_embeddings(path) as reader:
            kind, dim, pool = reader.kind, reader.dim, reader.attrs.get("pool")
        if self.feature_kind == "per-residue" and kind != "per-residue":
            raise ValueError(f"--features {path}: holds {kind} vectors (D,), but {self.paths[0]} is a "
                             f"{self.meta['model']!r} model, which reads per-residue features (L, D)")
        if dim and dim != self.num_features:
            raise ValueError(f"--features {path}: {dim} features per {'record' if kind == 'per-protein' else 'residue'}"
                             f", but {self.paths[0]} was trained on {self.num_features}")
        trained = {m.get("features_source", {}).get("pool") for m in metas} - {None}
        if self.feature_kind == "per-protein" and pool is not None and trained and pool not in trained:
            warnings.warn(f"--features {path}: {pool!r}-pooled embeddings, but {self.paths[0]} was trained on "
                          f"{'/'.join(sorted(map(repr, trained)))}-pooled ones", UserWarning, stacklevel=3)

    def _load_embedder(self, metas) -> None:
        """The embedder recorded in the checkpoints' ``features_source`` (every member must
        record the same one), loaded with :func:`~sublocal_kernels.lm.embed.load_pretrained`;
        an error that names it and says to pass ``--features`` when it cannot be used."""
        sources = [m.get("features_source") or {} for m in metas]
        src = sources[0]
        name, pool = src.get("model"), src.get("pool")
        hint = "pass --features FILE with the sequences' per-protein embeddings"
        if any((s.get("model"), s.get("pool")) != (name, pool) for s in sources[1:]):
            raise ValueError(f"{self.paths[0]}: the ensemble's members were trained on embeddings of different "
                             f"models or pools, so none can be computed for all of them: {hint}")
        if src.get("kind") != "per-protein":
            what = "features from no file" if not src else f"{src.get('kind')} features averaged over each sequence"
            raise ValueError(f"{self.paths[0]}: an mlp trained on {what}; only per-protein embeddings (sublocal "
                             f"embed --pool) can be recomputed here: {hint}")
        if not name or pool in (None, "none"):
            raise ValueError(f"{self.paths[0]}: its training features record no embedder (the embedding file's "
                             f"'model' and 'pool' attributes): {hint}")
        from ..lm.embed import load_pretrained

        # The absolute path recorded at training time when the embedder was a file there (this
        # process may run elsewhere); otherwise the source as the embedding file names it.
        source = src.get("model_path") if src.get("model_path") and os.path.exists(src["model_path"]) else name
        try:
            ck = load_pretrained(source, self.device)
        except (ValueError, OSError, ImportError, KeyError, RuntimeError) as err:
            why = " ".join(str(err).split()) or type(err).__name__
            raise ValueError(f"{self.paths[0]}: cannot load the embedder {name!r} its training features came from "
                             f"({why}): {hint} (pool {pool!r})") from None
        model = ck.model.to(self.device).eval()
        try:
            dim = int(model.dim(pool))
        except (ValueError, KeyError) as err:
            raise ValueError(f"{self.paths[0]}: the embedder {name!r} has no {pool!r} representation ({err}): "
                             f"{hint}") from None
        if dim != self.num_features:
            raise ValueError(f"{self.paths[0]}: the embedder {name!r} gives {dim}-wide {pool!r} vectors, but the "
                             f"model reads {self.num_features}: {hint}")
        self.embedder, self.pool = model, pool
        # The records are read (and cleaned) in the embedder's alphabet: the mlp reads no residues,
        # and the vectors then equal those `sublocal embed` writes with the same embedder.
        self.alphabet = getattr(model, "alphabet", "protein")

    def header(self) -> str:
        return self.writer.header()

    def _probabilities(self, batch):
        probs = att = None
        for m in self.members:
            if self.spec.attention is not None:
                out = m.forward_details(batch.tokens, batch.lengths, batch.features)
                logits, a = out.logits, out.attention.float()
                att = a if att is None else att + a
            else:
                logits = m(batch.tokens, batch.lengths, batch.features)
            logits = logits.float()
            p = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, -1)
            probs = p if probs is None else probs + p
        n = len(self.members)
        probs = (probs / n).cpu().numpy()
        return probs, None if att is None else (att / n).cpu().numpy()

    @torch.inference_mode()
    def predict_window(self, records: Sequence[Record]) -> str:
        """The rows of ``records`` (in their order) as one string."""
        if not records:
            return ""
        if self.embedder is not None:
            # Embed-and-classify: the residues in the embedder's alphabet, the classifier reads
            # the batch's vectors (and only the batch size of its tokens).
            ds = SequenceDataset(records, self.classes, self.alphabet)
        else:
            ds = SequenceDataset(records, self.classes, self.alphabet, self.max_length, self.spec.features,
                                 feature_kind=self.feature_kind)
        rows: list[str | None] = [None] * len(records)
        for idx in token_batches(ds.lengths, self.spec.max_tokens, self.spec.max_records):
            batch = collate(ds, idx).to(self.device)
            if self.embedder is not None:
                batch.features = self.embedder.represent(batch.tokens, batch.lengths, self.pool).float()
            probs, att = self._probabilities(batch)
            for k, i in enumerate(idx):
                window = None
                if att is not None:
                    window = attention_window(att[k, : ds.lengths[i]], ds.positions[i], records[i].sequence,
                                              self.spec.attention)
                rows[i] = self.writer.row(records[i].id, probs[k], window)
        return "".join(rows)
