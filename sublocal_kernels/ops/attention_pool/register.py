"""Registers attention pooling with the dispatcher: fake kernels, the autograd formula, the CUDA kernels.

The schemas and the CPU kernels come from C++ (csrc/ops.cpp, csrc/cpu/attention_pool.cpp); on
CUDA the Triton kernels (triton.py) run.

``activations`` (the forward's third output) is where the two backends differ by design: the
CPU kernel keeps ``tanh(h_t W_a + b_a)`` of the valid steps, ``(sum(lengths), A)``, because on
a CPU the GEMMs are the whole cost and recomputing one would cost a third more time; the GPU
kernels recompute it in the backward (tensor cores make that cheap, memory is what runs out)
and return a ``(0, A)`` tensor. The fake mirrors that, with a data-dependent row count on CPU.
``attention_pool_infer`` is the forward without ``activations``, for when no gradient is needed.
"""

from __future__ import annotations

import torch

from ..._checks import compute_dtype
from .._common import any_needs_grad, register_autograd, register_no_backward, zeros_if_none


@torch.library.register_fake("sublocal::attention_pool_fwd")
def _attention_pool_fwd_fake(h, lengths, w_a, v_a, b_a):
    B, T, D = h.shape
    A = w_a.shape[1]
    context = h.new_empty(B, D)
    alpha = h.new_empty(B, T)
    if h.device.type == "cpu":
        rows = torch.library.get_ctx().new_dynamic_size()
    else:
        rows = 0
    activations = h.new_empty(rows, A, dtype=compute_dtype(h.dtype))
    return context, alpha, activations


@torch.library.register_fake("sublocal::attention_pool_infer")
def _attention_pool_infer_fake(h, lengths, w_a, v_a, b_a):
    B, T, D = h.shape
    return h.new_empty(B, D), h.new_empty(B, T)


@torch.library.register_fake("sublocal::attention_pool_bwd")
def _attention_pool_bwd_fake(grad_context, grad_alpha, h, lengths, w_a, v_a, b_a, context, alpha, activations):
    A = w_a.shape[1]
    grad_h = torch.empty_like(h, memory_format=torch.contiguous_format)
    return grad_h, torch.empty_like(w_a, memory_format=torch.contiguous_format), v_a.new_empty(A), \
        v_a.new_empty(A if b_a is not None else 0)


def _setup_context(ctx, inputs, output):
    h, lengths, w_a, v_a, b_a = inputs
    context, alpha, activations = output
    # Unmaterialised gradients (ops/_common.py) save a zero tensor the size of `activations`
    # (and of alpha when only the context is used): 124 MB at `paper` on CPU.
    ctx.save_for_backward(h, lengths, w_a, v_a, b_a, context, alpha, activations)


def _backward(ctx, grad_context, grad_alpha):
    if not any_needs_grad(ctx):
        return None, None, None, None, None
    h, lengths, w_a, v_a, b_a, context, alpha, activations = ctx.saved_tensors
    # grad_alpha stays None when only the context is used: the kernels treat it as zeros.
    grad_h, grad_w, grad_v, grad_b = torch.ops.sublocal.attention_pool_bwd(
        zeros_if_none(grad_context, context), grad_alpha, h, lengths, w_a, v_a, b_a, context, alpha, activations
    )
    need = ctx.needs_input_grad
    return (grad_h if need[0] else None, None, grad_w if need[2] else None, grad_v if need[3] else None,
            grad_b if b_a is not None and need[4] else None)


register_autograd("attention_pool_fwd", _backward, _setup_context, outputs=2)
register_no_backward("attention_pool_infer", "attention_pool_fwd")


@torch.library.register_kernel("sublocal::attention_pool_fwd", "cuda")
def _attention_pool_fwd_cuda(h, lengths, w_a, v_a, b_a):
    from .triton import attention_pool_fwd_triton

    return attention_pool_fwd_triton(h, lengths, w_a, v_a, b_a)


@torch.library.register_kernel("sublocal::attention_pool_bwd", "cuda")
def _attention_pool_bwd_cuda(grad_context, grad_alpha, h, lengths, w_a, v_a, b_a, context, alpha, activations):
    from .triton import attention_pool_bwd_triton

    return attention_pool_bwd_triton(grad_context, grad_alpha, h, lengths, w_a, v_a, b_a, context, alpha)


@torch.library.register_kernel("sublocal::attention_pool_infer", "cuda")
def _attention_pool_infer_cuda(h, lengths, w_a, v_a, b_a):
    from .triton import attention_pool_fwd_triton

    # The GPU forward keeps nothing for its backward already (a (0, A) `activations`).
    context, alpha, _ = attention_pool_fwd_triton(h, lengths, w_a, v_a, b_a)
    return context, alpha
