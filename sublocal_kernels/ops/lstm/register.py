"""Registers the LSTM (both cells) with the dispatcher: fake kernels, the autograd formula, the CUDA kernel.

The schemas and the CPU kernels come from C++ (csrc/ops.cpp, csrc/cpu/lstm.cpp); on CUDA the
Triton kernels (triton.py) run. The forward's two workspace outputs (``gates``, ``states``)
are saved for the backward and follow the autograd convention of ``ops/_common.py``.
``lstm_infer`` is the forward without them, for when no gradient is needed. The multiplicative
cell's ops (``mlstm_fwd``, ``mlstm_bwd``, ``mlstm_infer``) have the same schemas and conventions.
"""

from __future__ import annotations

import torch

from ..._checks import compute_dtype
from .._common import any_needs_grad, register_autograd, register_no_backward, zeros_if_none


def _register_cell(cell: str, gate_width: int, state_width: int) -> None:
    """Fake kernels and the autograd formula of ``sublocal::<cell>_fwd / _bwd / _infer``.

    The workspaces are ``gates (D, rows, gate_width * H)`` and ``states (D, rows, state_width * H)``
    (LSTM 4 and 2; mLSTM 5 and 3, see csrc/cpu/lstm.cpp).
    """
    ops = torch.ops.sublocal

    @torch.library.register_fake(f"sublocal::{cell}_fwd")
    def _fwd_fake(x, lengths, weights, h0, c0, bidirectional):
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
            x.new_empty(D, rows, gate_width * H, dtype=sd),
            x.new_empty(D, rows, state_width * H, dtype=sd),
        )

    @torch.library.register_fake(f"sublocal::{cell}_infer")
    def _infer_fake(x, lengths, weights, h0, c0, bidirectional):
        B, T, _ = x.shape
        H = weights[1].shape[1]
        D = 2 if bidirectional else 1
        return x.new_empty(B, T, D * H), x.new_empty(D, B, H), x.new_empty(D, B, H)

    @torch.library.register_fake(f"sublocal::{cell}_bwd")
    def _bwd_fake(grad_out, grad_h_n, grad_c_n, x, lengths, weights, h0, c0, gates, states, bidirectional):
        B, T, C = x.shape
        H = weights[1].shape[1]
        D = 2 if bidirectional else 1
        return (
            x.new_empty(B, T, C),
            [w.new_empty(w.shape) for w in weights],
            x.new_empty(D, B, H),
            x.new_empty(D, B, H),
        )

    bwd_op = getattr(ops, f"{cell}_bwd")

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
        B = x.shape[0]
        H = weights[1].shape[1]
        D = 2 if ctx.bidirectional else 1
        # The fused kernel computes every gradient in one pass over the recurrence; what no input
        # needs is dropped here.
        # grad_out stays None when `out` was unused (the kernels read None as zeros, so no
        # (B, T, D H) zero tensor is made); h_n's and c_n's are small.
        grad_x, grad_w, grad_h0, grad_c0 = bwd_op(
            grad_out, zeros_if_none(grad_h_n, x, (D, B, H)), zeros_if_none(grad_c_n, x, (D, B, H)), x, lengths,
            weights, h0, c0, gates, states, ctx.bidirectional
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

    register_autograd(f"{cell}_fwd", _backward, _setup_context, outputs=3)
    register_no_backward(f"{cell}_infer", f"{cell}_fwd")


_register_cell("lstm", 4, 2)
_register_cell("mlstm", 5, 3)


@torch.library.register_kernel("sublocal::lstm_fwd", "cuda")
def _lstm_fwd_cuda(x, lengths, weights, h0, c0, bidirectional):
    from .triton import lstm_fwd_triton

    return lstm_fwd_triton(x, lengths, weights, h0, c0, bidirectional)


@torch.library.register_kernel("sublocal::lstm_bwd", "cuda")
def _lstm_bwd_cuda(grad_out, grad_h_n, grad_c_n, x, lengths, weights, h0, c0, gates, states, bidirectional):
    from .triton import lstm_bwd_triton

    if grad_out is None:  # the Triton kernels read a tensor
        H = weights[1].shape[1]
        grad_out = x.new_zeros(x.shape[0], x.shape[1], (2 if bidirectional else 1) * H)
    return lstm_bwd_triton(grad_out, grad_h_n, grad_c_n, x, lengths, weights, h0, c0, gates, states, bidirectional)


@torch.library.register_kernel("sublocal::lstm_infer", "cuda")
def _lstm_infer_cuda(x, lengths, weights, h0, c0, bidirectional):
    from .triton import lstm_infer_triton

    return lstm_infer_triton(x, lengths, weights, h0, c0, bidirectional)


@torch.library.register_kernel("sublocal::mlstm_fwd", "cuda")
def _mlstm_fwd_cuda(x, lengths, weights, h0, c0, bidirectional):
    from .triton import mlstm_fwd_triton

    return mlstm_fwd_triton(x, lengths, weights, h0, c0, bidirectional)


@torch.library.register_kernel("sublocal::mlstm_bwd", "cuda")
def _mlstm_bwd_cuda(grad_out, grad_h_n, grad_c_n, x, lengths, weights, h0, c0, gates, states, bidirectional):
    from .triton import mlstm_bwd_triton

    if grad_out is None:  # the Triton kernels read a tensor
        H = weights[1].shape[1]
        grad_out = x.new_zeros(x.shape[0], x.shape[1], (2 if bidirectional else 1) * H)
    return mlstm_bwd_triton(grad_out, grad_h_n, grad_c_n, x, lengths, weights, h0, c0, gates, states, bidirectional)


@torch.library.register_kernel("sublocal::mlstm_infer", "cuda")
def _mlstm_infer_cuda(x, lengths, weights, h0, c0, bidirectional):
    from .triton import mlstm_infer_triton

    return mlstm_infer_triton(x, lengths, weights, h0, c0, bidirectional)
