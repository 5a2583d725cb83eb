"""Registers the LSTM (both cells) with the dispatcher: fake kernels, the autograd formula, the CUDA kernel.

The schemas and the CPU kernels come from C++ (csrc/ops.cpp, csrc/cpu/lstm/); on CUDA the
Triton kernels (triton.py) run. The forward's two workspace outputs (``gates``, ``states``)
are saved for the backward and follow the autograd convention of ``ops/_common.py``.
``lstm_infer`` is the forward without them, for when no gradient is needed. The multiplicative
cell's ops (``mlstm_fwd``, ``mlstm_bwd``, ``mlstm_infer``) have the same schemas and conventions.
"""

from __future__ import annotations

import torch

from ..._checks import compute_dtype
from .._common import any_needs_grad, register_autograd, register_no_backward, zeros_if_none


def _out_like(x: torch.Tensor, width: int, sequences: bool) -> torch.Tensor:
    """The forward's ``out``: ``(B, T, width)``, or the empty ``(0,)`` placeholder when
    ``sequences`` is False (only the final states were asked for)."""
    return x.new_empty(x.shape[0], x.shape[1], width) if sequences else x.new_empty(0)


def _register_cell(cell: str, gate_width: int, state_width: int) -> None:
    """Fake kernels and the autograd formula of ``sublocal::<cell>_fwd / _bwd / _infer``.

    The workspaces are ``gates (D, rows, gate_width * H)`` and ``states (D, rows, state_width * H)``
    (LSTM 4 and 2; mLSTM 5 and 3, see csrc/cpu/lstm/).
    """
    ops = torch.ops.sublocal

    @torch.library.register_fake(f"sublocal::{cell}_fwd")
    def _fwd_fake(x, lengths, weights, h0, c0, bidirectional, sequences=True):
        B, T, _ = x.shape
        H = weights[1].shape[1]
        D = 2 if bidirectional else 1
        sd = compute_dtype(x.dtype)
        # CPU: the workspace has one row per valid step, sum(lengths) (data-dependent); CUDA keeps
        # the (B, T) row layout, whose size needs no host sync.
        rows = torch.library.get_ctx().new_dynamic_size() if x.device.type == "cpu" else B * T
        return (
            _out_like(x, D * H, sequences),
            x.new_empty(D, B, H),
            x.new_empty(D, B, H),
            x.new_empty(D, rows, gate_width * H, dtype=sd),
            x.new_empty(D, rows, state_width * H, dtype=sd),
        )

    @torch.library.register_fake(f"sublocal::{cell}_infer")
    def _infer_fake(x, lengths, weights, h0, c0, bidirectional, sequences=True, mean=False):
        B = x.shape[0]
        H = weights[1].shape[1]
        D = 2 if bidirectional else 1
        out = x.new_empty(B, D * H) if mean else _out_like(x, D * H, sequences)
        return out, x.new_empty(D, B, H), x.new_empty(D, B, H)

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
        x, lengths, weights, h0, c0, bidirectional = inputs[:6]
        _, _, _, gates, states = output
        ctx.save_for_backward(x, lengths, h0, c0, gates, states, *weights)
        ctx.bidirectional = bidirectional
        ctx.sequences = inputs[6] if len(inputs) > 6 else True

    def _backward(ctx, grad_out, grad_h_n, grad_c_n):
        # One gradient per argument the call passed (`sequences` may have been left out), which
        # is what ctx.needs_input_grad holds.
        nothing = (None, None, [None] * (len(ctx.saved_tensors) - 6), None, None, None, None)[:len(ctx.needs_input_grad)]
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
        if not ctx.sequences:
            grad_out = None  # `out` was the empty placeholder
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
            None,
        )[:len(ctx.needs_input_grad)]

    register_autograd(f"{cell}_fwd", _backward, _setup_context, outputs=3)
    register_no_backward(f"{cell}_infer", f"{cell}_fwd")


_register_cell("lstm", 4, 2)
_register_cell("mlstm", 5, 3)


def mean_over_steps(out: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """``(B, F)``: the mean of ``out (B, T, F)`` over each sequence's ``lengths[b]`` valid steps
    (its padded steps are zero), summed in float64 as the CPU kernel's ``mean=True`` does."""
    B, T = out.shape[:2]
    steps = torch.full((B,), T, device=out.device) if lengths is None else lengths.to(out.device)
    return (out.double().sum(1) / steps.double()[:, None]).to(out.dtype)


def _drop_out(results: tuple, sequences: bool) -> tuple:
    """The Triton kernels always write ``out``; with ``sequences=False`` it is replaced by the
    empty placeholder the CPU kernel returns (no memory is saved on the GPU yet)."""
    if sequences:
        return results
    return (results[0].new_empty(0), *results[1:])


def _cuda_kernels(cell: str) -> dict:
    """The GPU kernels of ``sublocal::<cell>_fwd / _bwd / _infer``: the Triton kernels (imported
    on first use), which always write ``out`` and read a ``grad_out`` tensor."""

    def fwd(x, lengths, weights, h0, c0, bidirectional, sequences=True):
        from . import triton as kernels

        return _drop_out(getattr(kernels, f"{cell}_fwd_triton")(x, lengths, weights, h0, c0, bidirectional), sequences)

    def infer(x, lengths, weights, h0, c0, bidirectional, sequences=True, mean=False):
        from . import triton as kernels

        results = getattr(kernels, f"{cell}_infer_triton")(x, lengths, weights, h0, c0, bidirectional)
        if mean:  # the Triton kernels write the sequence; it is reduced here
            return (mean_over_steps(results[0], lengths), *results[1:])
        return _drop_out(results, sequences)

    def bwd(grad_out, grad_h_n, grad_c_n, x, lengths, weights, h0, c0, gates, states, bidirectional):
        from . import triton as kernels

        if grad_out is None:  # an unused `out`: zeros
            H = weights[1].shape[1]
            grad_out = x.new_zeros(x.shape[0], x.shape[1], (2 if bidirectional else 1) * H)
        return getattr(kernels, f"{cell}_bwd_triton")(grad_out, grad_h_n, grad_c_n, x, lengths, weights, h0, c0, gates,
                                                      states, bidirectional)

    return {"fwd": fwd, "bwd": bwd, "infer": infer}


CUDA_KERNELS = {cell: _cuda_kernels(cell) for cell in ("lstm", "mlstm")}
for _cell, _kernels in CUDA_KERNELS.items():
    for _kind, _fn in _kernels.items():
        torch.library.register_kernel(f"sublocal::{_cell}_{_kind}", "cuda", _fn)
