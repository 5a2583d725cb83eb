"""Registers channel-wise attention pooling with the dispatcher: fake kernels, the autograd formula, the CUDA kernels.

The schemas and the CPU kernels come from C++ (csrc/ops.cpp, csrc/cpu/channel_attention_pool.cpp);
on CUDA the Triton kernels (triton.py) run. Both backends return the same workspaces: ``lse``
(the log-sum-exp of the logits per sequence and channel, ``(B, D)`` in the accumulation dtype)
and ``argmax`` (the step of the max-pool, ``(B, D)`` int64); no sizes depend on data.
"""

from __future__ import annotations

import torch

from ..._checks import compute_dtype
from .._common import any_needs_grad, register_autograd


@torch.library.register_fake("sublocal::channel_attention_pool_fwd")
def _channel_attention_pool_fwd_fake(values, logits, lengths, return_alpha):
    B, T, D = values.shape
    context = values.new_empty(B, D)
    maxpool = values.new_empty(B, D)
    alpha = values.new_empty((B, T, D) if return_alpha else (0,))
    lse = values.new_empty(B, D, dtype=compute_dtype(values.dtype))
    argmax = values.new_empty(B, D, dtype=torch.int64)
    return context, maxpool, alpha, lse, argmax


@torch.library.register_fake("sublocal::channel_attention_pool_bwd")
def _channel_attention_pool_bwd_fake(grad_context, grad_maxpool, grad_alpha, values, logits, lengths, context, lse,
                                     argmax, need_grad_values, need_grad_logits):
    def grad(need):
        return values.new_empty(values.shape) if need else values.new_empty(0)

    return grad(need_grad_values), grad(need_grad_logits)


def _setup_context(ctx, inputs, output):
    values, logits, lengths, return_alpha = inputs
    context, _, _, lse, argmax = output
    ctx.save_for_backward(values, logits, lengths, context, lse, argmax)
    ctx.return_alpha = return_alpha


def _backward(ctx, grad_context, grad_maxpool, grad_alpha):
    if not any_needs_grad(ctx):
        return None, None, None, None
    need = ctx.needs_input_grad
    values, logits, lengths, context, lse, argmax = ctx.saved_tensors
    if not ctx.return_alpha:
        # alpha is a (0,) placeholder then; a traced graph may still hand it a (0,) gradient.
        grad_alpha = None
    # None gradients (unused outputs) go to the kernels as they are: they read them as zeros.
    grad_values, grad_logits = torch.ops.sublocal.channel_attention_pool_bwd(
        grad_context, grad_maxpool, grad_alpha, values, logits, lengths, context, lse, argmax, need[0], need[1])
    return grad_values if need[0] else None, grad_logits if need[1] else None, None, None


register_autograd("channel_attention_pool_fwd", _backward, _setup_context, outputs=3)


@torch.library.register_kernel("sublocal::channel_attention_pool_fwd", "cuda")
def _channel_attention_pool_fwd_cuda(values, logits, lengths, return_alpha):
    from .triton import channel_attention_pool_fwd_triton

    return channel_attention_pool_fwd_triton(values, logits, lengths, return_alpha)


@torch.library.register_kernel("sublocal::channel_attention_pool_bwd", "cuda")
def _channel_attention_pool_bwd_cuda(grad_context, grad_maxpool, grad_alpha, values, logits, lengths, context, lse,
                                     argmax, need_grad_values, need_grad_logits):
    from .triton import channel_attention_pool_bwd_triton

    return channel_attention_pool_bwd_triton(grad_context, grad_maxpool, grad_alpha, values, logits, lengths, context,
                                             lse, argmax, need_grad_values, need_grad_logits)
