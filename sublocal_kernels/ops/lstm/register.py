"""Registers the LSTM with the dispatcher: fake kernels, the autograd formula, the CUDA kernel.

The schemas and the CPU kernels come from C++ (csrc/ops.cpp, csrc/cpu/lstm.cpp); on CUDA the
Triton kernels (triton.py) run. The forward's two workspace outputs (``gates``, ``states``)
are saved for the backward and are not differentiable.
"""

from __future__ import annotations

import torch

from ..._checks import compute_dtype


@torch.library.register_fake("sublocal::lstm_fwd")
def _lstm_fwd_fake(x, lengths, weights, h0, c0, bidirectional):
    B, T, _ = x.shape
    H = weights[1].shape[1]
    D = 2 if bidirectional else 1
    sd = compute_dtype(x.dtype)
    return (
        x.new_empty(B, T, D * H),
        x.new_empty(D, B, H),
        x.new_empty(D, B, H),
        x.new_empty(D, B * T, 4 * H, dtype=sd),
        x.new_empty(D, B * T, 2 * H, dtype=sd),
    )


@torch.library.register_fake("sublocal::lstm_bwd")
def _lstm_bwd_fake(grad_out, grad_h_n, grad_c_n, x, lengths, weights, h0, c0, gates, states, bidirectional):
    B, T, C = x.shape
    H = weights[1].shape[1]
    D = 2 if bidirectional else 1
    return (
        x.new_empty(B, T, C),
        [w.new_empty(w.shape) for w in weights],
        x.new_empty(D, B, H),
        x.new_empty(D, B, H),
    )


def _setup_context(ctx, inputs, output):
    x, lengths, weights, h0, c0, bidirectional = inputs
    _, _, _, gates, states = output
    ctx.save_for_backward(x, lengths, h0, c0, gates, states, *weights)
    ctx.bidirectional = bidirectional
    ctx.mark_non_differentiable(gates, states)


def _backward(ctx, grad_out, grad_h_n, grad_c_n, _grad_gates, _grad_states):
    x, lengths, h0, c0, gates, states, *weights = ctx.saved_tensors
    B, T, _ = x.shape
    H = weights[1].shape[1]
    D = 2 if ctx.bidirectional else 1
    if grad_out is None:
        grad_out = x.new_zeros(B, T, D * H)
    if grad_h_n is None:
        grad_h_n = x.new_zeros(D, B, H)
    if grad_c_n is None:
        grad_c_n = x.new_zeros(D, B, H)
    grad_x, grad_w, grad_h0, grad_c0 = torch.ops.sublocal.lstm_bwd(
        grad_out, grad_h_n, grad_c_n, x, lengths, weights, h0, c0, gates, states, ctx.bidirectional
    )
    return (
        grad_x,
        None,
        list(grad_w),
        grad_h0 if h0 is not None else None,
        grad_c0 if c0 is not None else None,
        None,
    )


torch.library.register_autograd("sublocal::lstm_fwd", _backward, setup_context=_setup_context)


@torch.library.register_kernel("sublocal::lstm_fwd", "cuda")
def _lstm_fwd_cuda(x, lengths, weights, h0, c0, bidirectional):
    from .triton import lstm_fwd_triton

    return lstm_fwd_triton(x, lengths, weights, h0, c0, bidirectional)


@torch.library.register_kernel("sublocal::lstm_bwd", "cuda")
def _lstm_bwd_cuda(grad_out, grad_h_n, grad_c_n, x, lengths, weights, h0, c0, gates, states, bidirectional):
    from .triton import lstm_bwd_triton

    return lstm_bwd_triton(grad_out, grad_h_n, grad_c_n, x, lengths, weights, h0, c0, gates, states, bidirectional)
