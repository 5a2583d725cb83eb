"""What every Triton launcher and kernel shares: SM count, the dot-precision policy, tanh, dot.

The float32 dot policy is one rule for every op: ``tf32x3`` (three TF32 tensor-core products,
float32-level accuracy: one TF32 product misses the float32 test tolerance) unless PyTorch's
own switch allows TF32 for float32 matrix products (``torch.backends.cuda.matmul.allow_tf32``,
or ``torch.set_float32_matmul_precision("high" | "medium")``), then plain ``tf32``. A launcher
call may override it (``f32_dot=``). float64 and 16-bit inputs ignore it: float64 multiplies
exactly (``ieee``) and float16/bfloat16 use tensor cores with float32 accumulation.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from .. import _library

F32_DOT_CHOICES = ("tf32x3", "tf32", "ieee")
# The PRECISION value that makes :func:`dot` widen bfloat16 operands to float32 first.
UPCAST = "upcast"


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA ``device`` (cached per device)."""
    return _sm_count(device.index if device.index is not None else torch.cuda.current_device())


def device_lengths(lengths: torch.Tensor | None, device: torch.device, batch: int | None = None,
                   time: int | None = None) -> torch.Tensor | None:
    """``lengths`` as contiguous int64 on ``device``, the form every kernel reads.

    None stays None (the kernels' "all T" path), unless ``batch`` and ``time`` are given: then it
    becomes ``(batch,)`` filled with ``time``, for kernels that read a length per sequence always.
    """
    if lengths is None:
        if batch is None or time is None:
            return None
        return torch.full((batch,), time, dtype=torch.int64, device=device)
    return lengths.to(device=device, dtype=torch.int64).contiguous()


def dot_precision(dtype: torch.dtype, f32_dot: str | None = None) -> str:
    """The ``PRECISION`` constexpr of :func:`dot` for operands of ``dtype``.

    ``f32_dot`` overrides the float32 policy of the module docstring for one call.
    """
    if dtype == torch.float32:
        if f32_dot is None:
            tf32 = torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() in ("high", "medium")
            return "tf32" if tf32 else "tf32x3"
        if f32_dot not in F32_DOT_CHOICES:
            raise ValueError(f"`f32_dot` must be one of {F32_DOT_CHOICES} or None, got {f32_dot!r}")
        return f32_dot
    if dtype == torch.bfloat16 and _library.triton_interpreting():
        # Triton 3.6's interpreter multiplies bfloat16 tl.dot operands as their raw uint16 bits
        # (an error of 2e10 on a 16 x 16 product of normal values; float16 is right). There,
        # and only there, dot widens them to float32 first: bfloat16 products are exact in
        # float32, so the result equals the GPU's bfloat16 MMA up to summation order.
        return UPCAST
    return "ieee"


@triton.jit
def dot(a, b, PRECISION: tl.constexpr):
    """``a @ b`` with float32 (float64 for float64) accumulation; PRECISION from dot_precision."""
    if PRECISION == "upcast":
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def tanh(x):
    """tanh from exp of a non-positive argument: no overflow for any ``|x|``, any float dtype."""
    z = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - z) / (1.0 + z)
    return tl.where(x < 0, -t, t)
