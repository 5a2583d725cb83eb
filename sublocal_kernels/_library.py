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
    """The CPU output cache (csrc/cpu/output_cache.h): bytes held idle, the cap, hits, misses.

    Large CPU outputs of the C++ kernels come from reusable 2 MiB-aligned blocks, so a
    training loop takes no page faults on them in steady state. ``SUBLOCAL_CPU_CACHE_MB``
    (read at the first allocation; default 2048, 0 disables) caps the idle bytes.
    """
    idle, limit, hits, misses = torch.ops.sublocal._cpu_cache_info()
    return {"idle_bytes": idle, "limit_bytes": limit, "hits": hits, "misses": misses}


def empty_cpu_cache() -> None:
    """Returns the idle blocks of the CPU output cache to the system (like torch.cuda.empty_cache)."""
    torch.ops.sublocal._cpu_cache_empty()
