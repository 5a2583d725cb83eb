"""Flush-to-zero for the layers that are not ours (Linear, Adam, losses) during training.

Our CPU kernels flush subnormal floats themselves (README, Precision). The rest of a training
step runs in PyTorch at the caller's floating-point mode; :func:`flush_denormal` sets
``torch.set_flush_denormal(True)`` for a block and restores the mode found on entry. PyTorch
sets the mode of the calling thread only (the intra-op pool's threads keep theirs), which covers
the small elementwise ops of a classifier head and Adam, run on the calling thread.

A thread inherits the mode of the thread that starts it, and the pool starts its threads at its
first parallel region: started inside the block, they would flush for the rest of the process.
So the pool is started, at its full size, before the mode is set.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["flush_denormal", "flushing_denormal", "flush_denormal_steps"]


def flushing_denormal() -> bool:
    """Whether this thread flushes subnormal floats to zero now (PyTorch has no getter: a
    subnormal float32 product is computed and looked at)."""
    return (torch.tensor(1e-30) * torch.tensor(1e-10)).item() == 0.0


@contextlib.contextmanager
def flush_denormal(enabled: bool = True):
    """Run the block with subnormal floats flushed to zero on this thread (float32 values below
    about 1.2e-38 become 0); the previous mode comes back on exit, exceptions included. A no-op
    where the CPU has no such mode (``torch.set_flush_denormal`` returns False) or when not
    ``enabled``."""
    if not enabled:
        yield
        return
    before = flushing_denormal()
    if not before:
        _start_intra_op_pool()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def _start_intra_op_pool() -> None:
    """Start every intra-op thread now: an elementwise op of two chunks of ATen's grain size
    (32,768 elements) per thread is split over all of them (256 KB a thread, on each entry of a
    block that turns the flush on: once per training loop)."""
    torch.ones(max(1, torch.get_num_threads()) * 65536).mul_(2.0)


def flush_denormal_steps(steps):
    """Iterate over ``steps`` with subnormal floats flushed to zero while the loop body runs
    (between the items), the previous mode restored when the loop ends, breaks or raises: a
    training loop's ``for`` line. (The generator is closed, and the mode restored, as soon as
    the loop lets go of it.)"""
    with flush_denormal():
        yield from steps
