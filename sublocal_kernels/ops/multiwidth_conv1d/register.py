"""Registers multi-width conv1d with the dispatcher: fake kernels, the autograd formula, the CUDA kernel.

The schemas and the CPU kernels come from C++ (csrc/ops.cpp, csrc/cpu/multiwidth_conv1d.cpp).
On CUDA the kernels are Triton (triton.py); there is no CUDA C++ implementation.
"""

from __future__ import annotations

import torch

from .._common import register_autograd


@torch.library.register_fake("sublocal::multiwidth_conv1d_fwd")
def _fwd_fake(x, lengths, weights, bias, activation, causal, reverse, dilation):
    B, T, _ = x.shape
    return x.new_empty(B, T, sum(w.shape[0] for w in weights))


@torch.library.register_fake("sublocal::multiwidth_conv1d_bwd")
def _bwd_fake(grad_y, x, lengths, weights, y, activation, causal, reverse, dilation, need_grad_x,
              need_grad_weights):
    grad_x = torch.empty_like(x, memory_format=torch.contiguous_format) if need_grad_x else x.new_empty(0)
    if need_grad_weights:
        grad_w = [torch.empty_like(w, memory_format=torch.contiguous_format) for w in weights]
        grad_b = x.new_empty(sum(w.shape[0] for w in weights))
    else:
        grad_w, grad_b = [], x.new_empty(0)
    return grad_x, grad_w, grad_b


def _setup_context(ctx, inputs, output):
    x, lengths, weights, bias, activation, causal, reverse, dilation = inputs
    # Only the output is kept for the activation's derivative (relu y > 0, tanh 1 - y^2,
    # sigmoid y (1 - y)): no per-width float mask is stored.
    ctx.save_for_backward(x, lengths, output if activation != "none" else None, *weights)
    ctx.activation, ctx.causal, ctx.reverse, ctx.dilation = activation, causal, reverse, dilation
    ctx.has_bias = bias is not None


def _backward(ctx, grad_y):
    x, lengths, y, *weights = ctx.saved_tensors
    need_x = ctx.needs_input_grad[0]
    # needs_input_grad[2] is a list (one flag per weight) for the Tensor[] argument.
    need_w = any(ctx.needs_input_grad[2]) or bool(ctx.needs_input_grad[3])
    # The weights' gradient must mirror the Tensor[] argument: a list, of Nones if unused.
    no_weight_grads = [None] * len(weights)
    if grad_y is None or not (need_x or need_w):
        return None, None, no_weight_grads, None, None, None, None, None
    grad_x, grad_w, grad_b = torch.ops.sublocal.multiwidth_conv1d_bwd(
        grad_y, x, lengths, weights, y, ctx.activation, ctx.causal, ctx.reverse, ctx.dilation, need_x, need_w
    )
    return (
        grad_x if need_x else None,
        None,
        list(grad_w) if need_w else no_weight_grads,
        grad_b if need_w and ctx.has_bias else None,
        None,
        None,
        None,
        None,
    )


register_autograd("multiwidth_conv1d_fwd", _backward, _setup_context, outputs=1)


@torch.library.register_kernel("sublocal::multiwidth_conv1d_fwd", "cuda")
def _fwd_cuda(x, lengths, weights, bias, activation, causal, reverse, dilation):
    from .triton import multiwidth_conv1d_fwd_triton

    return multiwidth_conv1d_fwd_triton(x, lengths, weights, bias, activation, causal, reverse, dilation)


@torch.library.register_kernel("sublocal::multiwidth_conv1d_bwd", "cuda")
def _bwd_cuda(grad_y, x, lengths, weights, y, activation, causal, reverse, dilation, need_grad_x,
              need_grad_weights):
    from .triton import multiwidth_conv1d_bwd_triton

    return multiwidth_conv1d_bwd_triton(grad_y, x, lengths, weights, y, activation, causal, reverse, dilation,
                                        need_grad_x, need_grad_weights)
