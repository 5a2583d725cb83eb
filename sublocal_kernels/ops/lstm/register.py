"""Registers the LSTM with the dispatcher: fake kernels, the autograd formula, the CUDA kernel.

The schemas and the CPU kernels come from C++ (csrc/ops.cpp, csrc/cpu/lstm.cpp); on CUDA the
Triton kernels (triton.py) run. The forward's two workspace outputs (``gates``, ``states``)
are saved for the backward and follow the autograd convention of ``ops/_common.py``.
``lstm_infer`` is the forward without them, for when no gradient is needed.
"""

from __future__ import annotations

import torch

from ..._checks import compute_dtype
from .._common import any_needs_grad, register_autograd, register_no_backward, zeros_if_none


@torch.library.register_fake("sublocal::lstm_fwd")
def _lstm_fwd_fake(x, lengths, weights, h0, c0, bidirectional):
    B, T, _ = x.shape
    H = weights[1].shape[1]
    D = 2 if bidirectional else 1
    sd = compute_dtype(x.dtype)
    # CPU: the workspace has one row per valid step, sum(lengths) (data-dependent); CUDA keeps
    # the (B, T) row layout, whose size needs no host sync.
    rows = torch.library.get_ctx().new_dynamic_size() if x.device.type == "cpu" else B * T
    return (
        x.new_empty(B, T, D * H),
        x.new_empty(D, B, H),
        x.new_empty(D, B, H),
        x.new_empty(D, rows, 4 * H, dtype=sd),
        x.new_empty(D, rows, 2 * H, dtype=sd),
    )


@torch.library.register_fake("sublocal::lstm_infer")
def _lstm_infer_fake(x, lengths, weights, h0, c0, bidirectional):
    B, T, _ = x.shape
    H = weights[1].shape[1]
    D = 2 if bidirectional else 1
    return x.new_empty(B, T, D * H), x.new_empty(D, B, H), x.new_empty(D, B, H)


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


def _backward(ctx, grad_out, grad_h_n, grad_c_n):
    nothing = (None, None, [None] * (len(ctx.saved_tensors) - 6), None, None, None)
    if not any_needs_grad(ctx):
        return nothing
    x, lengths, h0, c0, gates, states, *weights = ctx.saved_tensors
    B, T, _ = x.shape
    H = weights[1].shape[1]
    D = 2 if ctx.bidirectional else 1
    # The fused kernel computes every gradient in one pass over the recurrence; what no input
    # needs is dropped here.
    grad_x, grad_w, grad_h0, grad_c0 = torch.ops.sublocal.lstm_bwd(
        zeros_if_none(grad_out, x, (B, T, D * H)), zeros_if_none(grad_h_n, x, (D, B, H)),
        zeros_if_none(grad_c_n, x, (D, B, H)), x, lengths, weights, h0, c0, gates, states, ctx.bidirectional
    )
    need_x, need_w, need_h0, need_c0 = ctx.needs_input_grad[0], ctx.needs_input_grad[2], *ctx.needs_input_grad[3:5]
    return (
        grad_x if need_x else None,
        None,
        [g if n else None for g, n in zip(grad_w, need_w)],
        grad_h0 if need_h0 else None,
        grad_c0 if need_c0 else None,
        None,
    )


register_autograd("lstm_fwd", _backward, _setup_context, outputs=3)
register_no_backward("lstm_infer", "lstm_fwd")


@torch.library.register_kernel("sublocal::lstm_fwd", "cuda")
def _lstm_fwd_cuda(x, lengths, weights, h0, c0, bidirectional):
    from .triton import lstm_fwd_triton

    return lstm_fwd_triton(x, lengths, weights, h0, c0, bidirectional)


@torch.library.register_kernel("sublocal::lstm_bwd", "cuda")
def _lstm_bwd_cuda(grad_out, grad_h_n, grad_c_n, x, lengths, weights, h0, c0, gates, states, bidirectional):
    from .triton import lstm_bwd_triton

    return lstm_bwd_triton(grad_out, grad_h_n, grad_c_n, x, lengths, weights, h0, c0, gates, states, bidirectional)


@torch.library.register_kernel("sublocal::lstm_infer", "cuda")
def _lstm_infer_cuda(x, lengths, weights, h0, c0, bidirectional):
    from .triton import lstm_infer_triton

    return lstm_infer_triton(x, lengths, weights, h0, c0, bidirectional)
