"""Registers fo-pool with the dispatcher: fake kernels, the autograd formula, the CUDA kernel.

The schemas and the CPU kernels come from C++ (csrc/ops.cpp, csrc/cpu/fo_pool.cpp). On CUDA
the Triton kernel is the default; the CUDA C++ kernels (csrc/cuda/fo_pool_fwd.cu, fo_pool_bwd.cu) are
selected with
``SUBLOCAL_FO_POOL_BACKEND=cuda``. The Triton kernel is the default because it is the one the
CPU-only CI verifies (under the Triton interpreter) on every change; the CUDA C++ kernel is
compile-checked there and tested only on a GPU machine.
"""

from __future__ import annotations

import torch

from ... import _library
from ..._checks import compute_dtype
from .._common import any_needs_grad, register_autograd, register_no_backward, zeros_if_none

_OP = "fo_pool"


@torch.library.register_fake("sublocal::fo_pool_fwd")
def _fo_pool_fwd_fake(forget, z, output, lengths, initial, reverse, chunk):
    B, T, D = forget.shape
    h = torch.empty_like(forget, memory_format=torch.contiguous_format)
    c_last = forget.new_empty(B, D)
    ckpt = forget.new_empty(B, T // chunk + 1, D, dtype=compute_dtype(forget.dtype))
    return h, c_last, ckpt


@torch.library.register_fake("sublocal::fo_pool_infer")
def _fo_pool_infer_fake(forget, z, output, lengths, initial, reverse, chunk):
    B, T, D = forget.shape
    return torch.empty_like(forget, memory_format=torch.contiguous_format), forget.new_empty(B, D)


@torch.library.register_fake("sublocal::fo_pool_bwd")
def _fo_pool_bwd_fake(grad_h, grad_c_last, forget, z, output, lengths, checkpoints, reverse, chunk):
    B, T, D = forget.shape
    grad_f = torch.empty_like(forget, memory_format=torch.contiguous_format)
    grad_z = torch.empty_like(forget, memory_format=torch.contiguous_format)
    grad_o = torch.empty_like(forget, memory_format=torch.contiguous_format) if output is not None else forget.new_empty(0)
    return grad_f, grad_z, grad_o, forget.new_empty(B, D)


def _setup_context(ctx, inputs, output):
    forget, z, out_gate, lengths, initial, reverse, chunk = inputs
    _, _, ckpt = output
    ctx.save_for_backward(forget, z, out_gate, lengths, ckpt)
    ctx.reverse, ctx.chunk = reverse, chunk
    ctx.has_initial = initial is not None


def _backward(ctx, grad_h, grad_c_last):
    if not any_needs_grad(ctx):
        return None, None, None, None, None, None, None
    forget, z, out_gate, lengths, ckpt = ctx.saved_tensors
    B, T, D = forget.shape
    # One fused pass yields every gradient; what no input needs is dropped.
    grad_f, grad_z, grad_o, grad_init = torch.ops.sublocal.fo_pool_bwd(
        zeros_if_none(grad_h, forget), zeros_if_none(grad_c_last, forget, (B, D)), forget, z, out_gate, lengths,
        ckpt, ctx.reverse, ctx.chunk
    )
    need = ctx.needs_input_grad
    return (
        grad_f if need[0] else None,
        grad_z if need[1] else None,
        grad_o if out_gate is not None and need[2] else None,
        None,
        grad_init if ctx.has_initial and need[4] else None,
        None,
        None,
    )


register_autograd("fo_pool_fwd", _backward, _setup_context, outputs=2)
register_no_backward("fo_pool_infer", "fo_pool_fwd")


def _use_cuda_cpp() -> bool:
    backend = _library.gpu_backend(_OP)
    has_cpp = _library.has_kernel("_fo_pool_fwd_cuda", "CUDA")
    if backend == "cuda" or not _library.triton_available():
        if not has_cpp:
            raise RuntimeError(
                "fo_pool: the CUDA C++ kernel is not in this build"
                + ("" if _library.triton_available() else " and Triton is not installed")
                + "; rebuild with a CUDA torch and nvcc, or unset SUBLOCAL_FO_POOL_BACKEND to use Triton"
            )
        return True
    return False


@torch.library.register_kernel("sublocal::fo_pool_fwd", "cuda")
def _fo_pool_fwd_cuda(forget, z, output, lengths, initial, reverse, chunk):
    if _use_cuda_cpp():
        return torch.ops.sublocal._fo_pool_fwd_cuda(forget, z, output, lengths, initial, reverse, chunk)
    from .triton import fo_pool_fwd_triton

    return fo_pool_fwd_triton(forget, z, output, lengths, initial, reverse, chunk)


@torch.library.register_kernel("sublocal::fo_pool_bwd", "cuda")
def _fo_pool_bwd_cuda(grad_h, grad_c_last, forget, z, output, lengths, checkpoints, reverse, chunk):
    if _use_cuda_cpp():
        return torch.ops.sublocal._fo_pool_bwd_cuda(
            grad_h, grad_c_last, forget, z, output, lengths, checkpoints, reverse, chunk
        )
    from .triton import fo_pool_bwd_triton

    return fo_pool_bwd_triton(grad_h, grad_c_last, forget, z, output, lengths, checkpoints, reverse, chunk)


@torch.library.register_kernel("sublocal::fo_pool_infer", "cuda")
def _fo_pool_infer_cuda(forget, z, output, lengths, initial, reverse, chunk):
    # The GPU kernels store the checkpoints as they scan; at T // chunk + 1 rows per sequence
    # they are 1/chunk of the input's size, freed here as soon as the call returns.
    h, c_last, _ = _fo_pool_fwd_cuda(forget, z, output, lengths, initial, reverse, chunk)
    return h, c_last
