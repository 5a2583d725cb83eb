"""Argument checks shared by every public op.

Each failure raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong
shape, device, or value) with a message that names the op, the argument, what was expected
and what was given. The C++ kernels repeat the structural checks for direct callers of
``torch.ops.sublocal``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INDEX_DTYPES = (torch.int32, torch.int64)
# The shortest sequence any op accepts (csrc/common.h has the same constant).
MIN_LENGTH = 1


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype references compute in: float64 for float64 inputs, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _compiling() -> bool:
    return torch.compiler.is_compiling()


class ArgChecker:
    """Checks the arguments of one op; messages start with the op's public name."""

    def __init__(self, op: str):
        self.op = op

    def fail(self, message: str, exc: type[Exception] = ValueError):
        raise exc(f"{self.op}: {message}")

    def tensor(self, name: str, t, ndim: int, dtypes=FLOAT_DTYPES, dims: str = "") -> torch.Tensor:
        """``t`` is a tensor with ``ndim`` dimensions and one of ``dtypes``."""
        if not isinstance(t, torch.Tensor):
            self.fail(f"`{name}` must be a torch.Tensor, got {type(t).__name__}", TypeError)
        if t.dim() != ndim:
            self.fail(f"`{name}` must have {ndim} dimensions {dims}, got shape {tuple(t.shape)}".replace("  ", " "))
        if t.dtype not in dtypes:
            names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
            self.fail(f"`{name}` must have dtype in ({names}), got {str(t.dtype).replace('torch.', '')}", TypeError)
        return t

    def like(self, name: str, t, ref_name: str, ref: torch.Tensor, shape: Sequence[int] | None = None,
             dims: str = "") -> torch.Tensor:
        """``t`` is a tensor with ``ref``'s dtype and device and the given shape (default ``ref``'s)."""
        expected = tuple(ref.shape) if shape is None else tuple(shape)
        self.tensor(name, t, len(expected), FLOAT_DTYPES, dims)
        if tuple(t.shape) != expected:
            self.fail(f"`{name}` must have shape {expected} {dims}, got {tuple(t.shape)}".replace("  ", " "))
        if t.dtype != ref.dtype:
            self.fail(f"`{name}` has dtype {t.dtype} but `{ref_name}` has dtype {ref.dtype}; they must match",
                      TypeError)
        if t.device != ref.device:
            self.fail(f"`{name}` is on {t.device} but `{ref_name}` is on {ref.device}; they must be on one device")
        return t

    def lengths(self, lengths, x_name: str, x: torch.Tensor) -> torch.Tensor | None:
        """The `lengths` contract shared by every op (README, "Variable-length sequences").

        ``lengths`` is None (every sequence has length ``T``) or ``(B,)`` int32/int64 (any
        device) or a list of ints, each in ``[MIN_LENGTH, T]`` = ``[1, T]``; ``B, T`` are the
        first two sizes of ``x`` (the op's ``(B, T, ...)`` input named ``x_name``). A sequence
        of length 0 has no step to pool or return a state from, so it is refused by every op.

        Returns None or int64 lengths on ``x``'s device. Values are checked here when they are
        on the CPU (free); device-resident lengths are checked asynchronously (no host sync)
        and the kernels clamp them, so a bad value can never read out of bounds. The C++
        kernels enforce the same rule with the same message (csrc/common.h).
        """
        batch, time = x.shape[0], x.shape[1]
        if lengths is None:
            if time < MIN_LENGTH and batch > 0:
                self.fail(f"`{x_name}` must have at least one step (T >= {MIN_LENGTH}) when `lengths` is None, "
                          f"got shape {tuple(x.shape)}")
            return None
        if not isinstance(lengths, torch.Tensor):
            if isinstance(lengths, Sequence) and all(isinstance(v, int) for v in lengths):
                lengths = torch.tensor(list(lengths), dtype=torch.int64)
            else:
                self.fail(f"`lengths` must be a torch.Tensor or a list of ints, got {type(lengths).__name__}", TypeError)
        if lengths.dtype not in INDEX_DTYPES:
            self.fail(f"`lengths` must have dtype int32 or int64, got {str(lengths.dtype).replace('torch.', '')}",
                      TypeError)
        if lengths.dim() != 1 or lengths.shape[0] != batch:
            self.fail(f"`lengths` must have shape ({batch},) (one length per sequence), got {tuple(lengths.shape)}")
        low = MIN_LENGTH
        if not _compiling():
            if lengths.device.type == "cpu":
                bad = ((lengths < low) | (lengths > time)).nonzero()
                if bad.numel():
                    i = int(bad[0, 0])
                    self.fail(f"`lengths[{i}]` = {int(lengths[i])} is out of range; each length must be in "
                              f"[{low}, T] = [{low}, {time}]")
            else:
                torch._assert_async(((lengths >= low) & (lengths <= time)).all(),
                                    f"{self.op}: a value of `lengths` is out of range [{low}, {time}]")
        return lengths.to(device=x.device, dtype=torch.int64, non_blocking=True)
