"""Loads the compiled operator library and answers what this installation can run."""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

try:
    from . import _C  # noqa: F401  (registers torch.ops.sublocal.* and their CPU/CUDA kernels)
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "sublocal_kernels._C is not built. Build it against the installed torch with "
        "`pip install --no-build-isolation -e .` or `python setup.py build_ext --inplace` "
        f"(original error: {exc})"
    ) from exc


def has_kernel(op: str, dispatch_key: str) -> bool:
    """Whether ``sublocal::<op>`` has a kernel for ``dispatch_key`` ("CPU", "CUDA") in this build."""
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"sublocal::{op}", dispatch_key)


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    """Triton is importable (it is optional: CPU machines run every op through C++)."""
    return importlib.util.find_spec("triton") is not None


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def gpu_backend(op: str, choices: tuple[str, ...] = ("triton", "cuda"), default: str = "triton") -> str:
    """The GPU implementation to run for ``op``: ``SUBLOCAL_<OP>_BACKEND``, else ``SUBLOCAL_BACKEND``, else ``default``.

    Only ops with more than one GPU implementation consult this; the dispatcher has already
    chosen the device.
    """
    value = os.environ.get(f"SUBLOCAL_{op.upper()}_BACKEND") or os.environ.get("SUBLOCAL_BACKEND") or default
    value = value.lower()
    if value not in choices:
        raise ValueError(
            f"SUBLOCAL_{op.upper()}_BACKEND / SUBLOCAL_BACKEND must be one of {choices}, got {value!r}"
        )
    return value


def cpu_cache_info() -> dict[str, int]:
    """The CPU output cache (csrc/cpu/output_cache.h): idle bytes and blocks, the cap, hits,
    misses and evictions.

    Large CPU outputs of the C++ kernels come from 2 MiB-aligned, huge-page-advised blocks.
    With ``SUBLOCAL_CPU_CACHE_MB=N`` (read at the first allocation; default 0, off) freed blocks
    are kept for reuse, at most N MiB: a request takes the smallest idle block that fits (at
    most a quarter larger), and the least recently released blocks are freed first at the cap.
    It pays off when the same shapes come back (fixed-shape benchmarks); a training loop on
    length-bucketed batches measured no gain and twice the peak RSS
    (benchmarks/output_cache_loop.py).
    """
    idle, limit, hits, misses, evictions, blocks = torch.ops.sublocal._cpu_cache_info()
    return {"idle_bytes": idle, "idle_blocks": blocks, "limit_bytes": limit, "hits": hits, "misses": misses,
            "evictions": evictions}


def empty_cpu_cache() -> None:
    """Returns the idle blocks of the CPU output cache to the system (like torch.cuda.empty_cache)."""
    torch.ops.sublocal._cpu_cache_empty()
