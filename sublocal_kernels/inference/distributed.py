"""Prediction under ``torchrun`` (``WORLD_SIZE`` > 1): each rank predicts its shard, rank 0
merges.

Rank ``r`` of ``W`` predicts the windows ``k`` with ``k mod W == r`` (the same round-robin as the
CPU workers, :func:`~sublocal_kernels.inference.run.shard_of`) into its own part,
``OUT.rank<r>-of-<W>.partial``, whose sidecar also lists each window's records and bytes. When
every rank is done (a barrier over the process group: gloo on CPU, NCCL on GPUs), rank 0 copies
the windows from the parts in window order into ``OUT`` (through ``OUT.partial``, renamed when
complete) and removes the parts. A rank that fails stops the job (torchrun ends the others);
``--resume`` on the same command continues every rank's part and then merges.
"""

from __future__ import annotations

import os

from ..data.readers import DataFormatError
from .engine import Predictor, PredictorSpec, checkpoint_identity
from .output import FileOutput, partial_paths
from .reader import file_digest
from .run import FAULT_STATUS, PredictSummary, _Duplicates, _fail_at, _hits, shard_of, windows

__all__ = ["world", "part_path", "predict_rank", "merge_parts"]


def world() -> tuple[int, int]:
    """``(rank, world size)`` from torchrun's environment (``(0, 1)`` outside it)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def part_path(out: str, rank: int, world_size: int) -> str:
    return f"{out}.rank{rank}-of-{world_size}"


def _barrier(device) -> None:
    import torch.distributed as dist

    from ..training.distributed import distributed_context

    distributed_context(device)
    dist.barrier()


def merge_parts(out: str, world_size: int, header: str, overwrite: bool = False) -> int:
    """Copy every rank's windows, in window order, into ``out``; remove the parts. Returns the rows.
    Raises when the parts do not cover the input without a gap (a rank did not finish)."""
    import json

    parts = []
    for r in range(world_size):
        partial, sidecar = partial_paths(part_path(out, r, world_size))
        with open(sidecar) as fh:
            parts.append((partial, json.load(fh)))
    entries = sorted((w[0], r, w) for r, (_, doc) in enumerate(parts) for w in doc["windows"])
    tmp, _ = partial_paths(out)
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"--out {out} exists: pass --overwrite to replace it")
    rows = 0
    handles = [open(p, "rb") for p, _ in parts]
    try:
        offsets = [0] * world_size
        # The first byte of each part's first window: 0 (parts have no header).
        with open(tmp, "wb") as dst:
            dst.write(header.encode())
            for k, r, (_, _, end, n) in entries:
                if shard_of(k, world_size) != r:
                    raise ValueError(f"{parts[r][0]}: window {k} does not belong to rank {r}")
                handles[r].seek(offsets[r])
                dst.write(handles[r].read(end - offsets[r]))
                offsets[r] = end
                rows += n
            dst.flush()
            os.fsync(dst.fileno())
    finally:
        for h in handles:
            h.close()
    os.replace(tmp, out)
    for r in range(world_size):
        for p in partial_paths(part_path(out, r, world_size)):
            os.unlink(p)
    return rows


def predict_rank(spec: PredictorSpec, fasta, out: str, rank: int, world_size: int, *, window: int = 1024,
                 resume: bool = False, overwrite: bool = False, on_error: str = "stop") -> PredictSummary:
    """This rank's shard of ``fasta`` into its part; after the barrier, rank 0 merges into ``out``."""
    if out == "-":
        raise ValueError("under torchrun, -o/--out is needed (the ranks' parts are merged into it)")
    fasta = os.fspath(fasta)
    if os.path.exists(out) and not (overwrite or resume):
        raise FileExistsError(f"--out {out} exists: pass --overwrite to replace it")
    predictor = Predictor(spec)
    size, digest = file_digest(fasta)
    identity = {"input": {"path": os.path.abspath(fasta), "size": size, "sha256": digest},
                "checkpoints": checkpoint_identity(spec.paths),
                "output": {"format": spec.format, "attention_window": spec.attention, "rank": rank,
                           "world_size": world_size, "window": window}}
    part = part_path(out, rank, world_size)
    # A rank stopped before it wrote its part (torchrun ends the others when one fails, and this
    # one may still have been starting) has nothing to continue: when a sibling's part shows that
    # the run was interrupted, --resume starts this rank's part afresh.
    fresh = resume and not os.path.exists(partial_paths(part)[1]) and any(
        os.path.exists(partial_paths(part_path(out, r, world_size))[1]) for r in range(world_size) if r != rank)
    sink = FileOutput(part, identity, resume=resume and not fresh, overwrite=overwrite, track_windows=True)
    start = sink.start("")
    duplicates = _Duplicates()
    stop = None
    at = _fail_at()
    try:
        for w in windows(fasta, predictor.alphabet, window, start, on_error, duplicates if rank == 0 else None):
            if shard_of(w.index, world_size) == rank:
                text = predictor.predict_window(w.records)
                if _hits(w, at):  # fault injection (tests): a crash in the middle of a write
                    sink.write_cut(text[: len(text) // 2])
                    os._exit(FAULT_STATUS)
                sink.write_window(text, w.end, len(w.records), w.skipped, w.index)
            if w.error is not None:
                stop = w.error
                break
    finally:
        sink.close()  # every rank keeps its part, even with no window yet, for --resume
    if stop is not None:
        raise DataFormatError(stop.path, stop.line, stop.record, f"{stop.reason}; each rank's rows before it are "
                              f"kept in {part_path(out, 0, world_size)}.partial and its siblings: continue with "
                              "--resume --on-error skip (skipping the bad record)")
    _barrier(predictor.device)
    rows = 0
    if rank == 0:
        rows = merge_parts(out, world_size, predictor.header(), overwrite=overwrite or resume)
        duplicates.warn(fasta)
    _barrier(predictor.device)
    return PredictSummary(rows, start, 0, out)
