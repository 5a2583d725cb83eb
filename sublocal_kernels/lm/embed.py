"""``sublocal embed``: embeddings of every record of a FASTA file from a pretrained checkpoint.

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

from ..data import LengthBucketSampler, SequenceDataset, collate, iter_fasta
from ..data.embeddings import EmbeddingWriter
from ..data.readers import DataFormatError
from ..models import PRETRAIN_MODELS
from ..models.language_model import POOLS
from ..training.checkpoint import CheckpointError, load_checkpoint

__all__ = ["embed_fasta", "load_pretrained"]


def load_pretrained(path, device="cpu"):
    """A checkpoint written by ``sublocal pretrain`` (a run directory means its ``best``); a
    classifier's checkpoint is refused, naming the file."""
    ck = load_checkpoint(path, device)
    if ck.meta["model"] not in PRETRAIN_MODELS:
        raise CheckpointError(f"{ck.path}: holds a {ck.meta['model']!r} classifier, not a pretrained model "
                              f"({', '.join(PRETRAIN_MODELS)}): embed reads checkpoints of sublocal pretrain")
    return ck


def embed_fasta(checkpoint, fasta, out, pool: str = "mean", per_residue: bool = False, device="cpu",
                max_tokens: int = 16384, chunk: int = 1024, dtype: str = "float32", overwrite: bool = False,
                log=None) -> int:
    """Write the embedding of every record of ``fasta`` to ``out`` (``.h5``/``.hdf5`` or
    ``.npz``, the shared layout) and return the number of records.

    ``pool``: ``mean``, ``final`` or ``unirep`` per protein (``(D,)`` arrays); ``per_residue``:
    the ``(L, H)`` states after each residue instead (``pool`` "none"). ``checkpoint``: a path
    or a loaded checkpoint. Ids seen twice are an error naming both lines; the file appears
    only when complete (an error leaves nothing under ``out``)."""
    if pool not in POOLS:
        raise ValueError(f"--pool must be one of {', '.join(POOLS)}, got {pool!r}")
    ck = load_pretrained(checkpoint, device) if isinstance(checkpoint, str) else checkpoint
    model = ck.model.to(device).eval()
    dim = model.residue_dim if per_residue else model.dim(pool)
    records = iter_fasta(fasta, "protein", "plain")
    first = next(records)  # the file is checked before the output is created
    seen: dict[str, int] = {}
    n = 0
    kind = "per-residue" if per_residue else "per-protein"
    with EmbeddingWriter(out, kind=kind, model=ck.path, pool="none" if per_residue else pool, dim=dim,
                         dtype=dtype, overwrite=overwrite) as writer:
        pending = []

        def flush():
            ds = SequenceDataset(pending, classes=[], alphabet="protein")
            sampler = LengthBucketSampler(ds.lengths, batch_size=len(ds), shuffle=False, max_tokens=max_tokens)
            rows: list = [None] * len(pending)
            with torch.inference_mode():
                for items in sampler.batches():
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
