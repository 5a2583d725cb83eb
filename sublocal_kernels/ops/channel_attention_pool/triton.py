"""Channel-wise attention pooling Triton kernels: an online softmax per channel, fused backward.

One program per (sequence, block of BLOCK_D channels); it walks the sequence's valid steps in
tiles of BLOCK_T rows, each tile a (BLOCK_T, BLOCK_D) block of values and logits whose rows
are contiguous in memory (coalesced loads).

Forward (``_channel_attention_pool_fwd_kernel``): per tile, the running maximum logit ``m``
of each channel is raised to the tile's maximum, the running sum ``s = sum exp(l - m)`` and
weighted sum ``c = sum exp(l - m) v`` are rescaled once by ``exp(m_old - m_new)``, and the
tile's terms are added; the running maximum of the values and its step are tracked in the
same pass. ``values`` and ``logits`` are read once; ``context = c / s``, and only
``lse = m + log s`` and the arg-max step ((B, D) each) are written for the backward. With
``RETURN_ALPHA`` a second pass over the logits writes ``alpha = exp(l - lse)`` (0 at padding).

Backward (``_channel_attention_pool_bwd_kernel``), alpha recomputed as ``exp(l - lse)``:
``d logits = alpha (dalpha - G + dctx (v - context))`` with ``G = sum_t alpha dalpha`` (a first
pass over logits and grad_alpha, only when alpha's gradient is given), and
``d values = alpha dctx + [t == argmax] dmax``; padded steps get exact zeros.

Dtypes: float16/bfloat16/float32 inputs accumulate in float32, float64 in float64 (the
accumulation dtype is ``LSE``'s). There are no matrix products, so every dtype takes the same
path. The launchers take plain tensors (any device), so under ``TRITON_INTERPRET=1`` the same
kernels run on CPU tensors; the test suite does exactly that.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..._checks import compute_dtype
from .._triton_utils import device_lengths


@triton.jit
def _channel_attention_pool_fwd_kernel(
    V, E, LEN, CTX, MAXP, ALPHA, LSE, ARG,
    T, D,
    RETURN_ALPHA: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = offs_d < D
    acc_ty = LSE.dtype.element_ty
    L = tl.minimum(tl.maximum(tl.load(LEN + b).to(tl.int32), 1), T)
    base = b * T * D
    m = tl.full([BLOCK_D], float("-inf"), acc_ty)
    s = tl.zeros([BLOCK_D], acc_ty)
    c = tl.zeros([BLOCK_D], acc_ty)
    vmax = tl.full([BLOCK_D], float("-inf"), acc_ty)
    arg = tl.zeros([BLOCK_D], tl.int64)
    for t0 in range(0, L, BLOCK_T):
        rows = t0 + tl.arange(0, BLOCK_T)
        mask = (rows < L)[:, None] & dmask[None, :]
        ptr = base + rows.to(tl.int64)[:, None] * D + offs_d[None, :]
        e = tl.load(E + ptr, mask=mask, other=float("-inf")).to(acc_ty)
        v = tl.load(V + ptr, mask=mask, other=float("-inf")).to(acc_ty)
        m_new = tl.maximum(m, tl.max(e, axis=0))
        # Channels past D stay at -inf; shifting by 0 there keeps every exp an exp(-inf) = 0.
        shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        r = tl.exp(m - shift)
        p = tl.exp(e - shift[None, :])  # 0 at masked elements
        s = s * r + tl.sum(p, axis=0)
        c = c * r + tl.sum(p * tl.where(mask, v, 0.0), axis=0)
        m = m_new
        tile_max, tile_arg = tl.max(v, axis=0, return_indices=True, return_indices_tie_break_left=True)
        # strictly greater: on ties the earlier tile's (earlier) step is kept
        better = tile_max > vmax
        vmax = tl.where(better, tile_max, vmax)
        arg = tl.where(better, t0 + tile_arg.to(tl.int64), arg)
    s = tl.where(dmask, s, 1.0)
    lse = m + tl.log(s)
    out = b * D + offs_d
    tl.store(CTX + out, (c / s).to(CTX.dtype.element_ty), mask=dmask)
    tl.store(MAXP + out, vmax.to(MAXP.dtype.element_ty), mask=dmask)
    tl.store(LSE + out, lse, mask=dmask)
    tl.store(ARG + out, arg, mask=dmask)
    if RETURN_ALPHA:
        lse_safe = tl.where(dmask, lse, 0.0)
        for t0 in range(0, T, BLOCK_T):
            rows = t0 + tl.arange(0, BLOCK_T)
            valid = (rows < L)[:, None] & dmask[None, :]
            ptr = base + rows.to(tl.int64)[:, None] * D + offs_d[None, :]
            e = tl.load(E + ptr, mask=valid, other=float("-inf")).to(acc_ty)
            alpha = tl.where(valid, tl.exp(e - lse_safe[None, :]), 0.0)
            tl.store(ALPHA + ptr, alpha.to(ALPHA.dtype.element_ty), mask=(rows < T)[:, None] & dmask[None, :])


@triton.jit
def _channel_attention_pool_bwd_kernel(
    V, E, LEN, DC, DM, GA, CTX, LSE, ARG, DV, DE,
    T, D,
    HAS_DC: tl.constexpr, HAS_DM: tl.constexpr, HAS_GA: tl.constexpr, NEED_DV: tl.constexpr,
    NEED_DE: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = offs_d < D
    acc_ty = LSE.dtype.element_ty
    L = tl.minimum(tl.maximum(tl.load(LEN + b).to(tl.int32), 1), T)
    base = b * T * D
    out = b * D + offs_d
    lse = tl.load(LSE + out, mask=dmask, other=0.0)
    dc = tl.zeros([BLOCK_D], acc_ty)
    if HAS_DC:
        dc += tl.load(DC + out, mask=dmask, other=0.0).to(acc_ty)
    cx = tl.load(CTX + out, mask=dmask, other=0.0).to(acc_ty)
    dm = tl.zeros([BLOCK_D], acc_ty)
    if HAS_DM:
        dm += tl.load(DM + out, mask=dmask, other=0.0).to(acc_ty)
    arg = tl.load(ARG + out, mask=dmask, other=-1)
    g = tl.zeros([BLOCK_D], acc_ty)
    if HAS_GA and NEED_DE:
        for t0 in range(0, L, BLOCK_T):
            rows = t0 + tl.arange(0, BLOCK_T)
            valid = (rows < L)[:, None] & dmask[None, :]
            ptr = base + rows.to(tl.int64)[:, None] * D + offs_d[None, :]
            e = tl.load(E + ptr, mask=valid, other=float("-inf")).to(acc_ty)
            ga = tl.load(GA + ptr, mask=valid, other=0.0).to(acc_ty)
            g += tl.sum(tl.exp(e - lse[None, :]) * ga, axis=0)
    for t0 in range(0, T, BLOCK_T):
        rows = t0 + tl.arange(0, BLOCK_T)
        valid = (rows < L)[:, None] & dmask[None, :]
        inside = (rows < T)[:, None] & dmask[None, :]
        ptr = base + rows.to(tl.int64)[:, None] * D + offs_d[None, :]
        e = tl.load(E + ptr, mask=valid, other=float("-inf")).to(acc_ty)
        alpha = tl.exp(e - lse[None, :])  # 0 at padded steps
        if NEED_DE:
            v = tl.load(V + ptr, mask=valid, other=0.0).to(acc_ty)
            da = dc[None, :] * (v - cx[None, :])
            if HAS_GA:
                da += tl.load(GA + ptr, mask=valid, other=0.0).to(acc_ty) - g[None, :]
            tl.store(DE + ptr, tl.where(valid, alpha * da, 0.0).to(DE.dtype.element_ty), mask=inside)
        if NEED_DV:
            dv = alpha * dc[None, :]
            if HAS_DM:
                dv += tl.where(rows.to(tl.int64)[:, None] == arg[None, :], dm[None, :], 0.0)
            tl.store(DV + ptr, tl.where(valid, dv, 0.0).to(DV.dtype.element_ty), mask=inside)


# ---- launchers ---------------------------------------------------------------------------------

def _config(dtype: torch.dtype, block_t, block_d):
    """Tile sizes for one dtype; explicit sizes (tests) override."""
    # 32 x 64 tiles: 8 KB per float32 operand tile, enough loads in flight per program; float64
    # halves the channels to keep the same bytes per tile.
    default = (32, 32) if dtype == torch.float64 else (32, 64)
    bt, bd = (x if x is not None else d for x, d in zip((block_t, block_d), default))
    for name, x in (("block_t", bt), ("block_d", bd)):
        if x < 1 or x & (x - 1):
            raise ValueError(f"channel_attention_pool (Triton): `{name}` must be a power of two, got {x}")
    return bt, bd


def _prepare(values, logits, lengths):
    B, T, _ = values.shape
    return values.contiguous(), logits.contiguous(), device_lengths(lengths, values.device, B, T)


def channel_attention_pool_fwd_triton(values, logits, lengths, return_alpha, *, block_t=None, block_d=None):
    """Triton forward; same contract as ``torch.ops.sublocal.channel_attention_pool_fwd``."""
    values, logits, lengths = _prepare(values, logits, lengths)
    B, T, D = values.shape
    dev = values.device
    context = torch.empty(B, D, dtype=values.dtype, device=dev)
    maxpool = torch.empty(B, D, dtype=values.dtype, device=dev)
    alpha = torch.empty((B, T, D) if return_alpha else (0,), dtype=values.dtype, device=dev)
    lse = torch.empty(B, D, dtype=compute_dtype(values.dtype), device=dev)
    argmax = torch.empty(B, D, dtype=torch.int64, device=dev)
    if B == 0 or T == 0 or D == 0:
        return context, maxpool, alpha, lse, argmax
    bt, bd = _config(values.dtype, block_t, block_d)
    _channel_attention_pool_fwd_kernel[(B, triton.cdiv(D, bd))](
        values, logits, lengths, context, maxpool, alpha if return_alpha else context, lse, argmax, T, D,
        RETURN_ALPHA=return_alpha, BLOCK_T=bt, BLOCK_D=bd, num_warps=4)
    return context, maxpool, alpha, lse, argmax


def channel_attention_pool_bwd_triton(grad_context, grad_maxpool, grad_alpha, values, logits, lengths, context, lse,
                                      argmax, need_grad_values, need_grad_logits, *, block_t=None, block_d=None):
    """Triton backward; same contract as ``torch.ops.sublocal.channel_attention_pool_bwd``."""
    values, logits, lengths = _prepare(values, logits, lengths)
    B, T, D = values.shape
    dev = values.device
    grad_values = torch.empty_like(values) if need_grad_values else values.new_empty(0)
    grad_logits = torch.empty_like(values) if need_grad_logits else values.new_empty(0)
    if B == 0 or T == 0 or D == 0 or not (need_grad_values or need_grad_logits):
        return grad_values, grad_logits
    bt, bd = _config(values.dtype, block_t, block_d)
    dc = grad_context.contiguous() if grad_context is not None else None
    dm = grad_maxpool.contiguous() if grad_maxpool is not None else None
    ga = grad_alpha.contiguous() if grad_alpha is not None else None
    _channel_attention_pool_bwd_kernel[(B, triton.cdiv(D, bd))](
        values, logits, lengths, dc if dc is not None else context, dm if dm is not None else context,
        ga if ga is not None else values, context.contiguous(), lse.contiguous(), argmax.to(dev).contiguous(),
        grad_values if need_grad_values else values, grad_logits if need_grad_logits else values, T, D,
        HAS_DC=dc is not None, HAS_DM=dm is not None, HAS_GA=ga is not None, NEED_DV=need_grad_values,
        NEED_DE=need_grad_logits, BLOCK_T=bt, BLOCK_D=bd, num_warps=4)
    return grad_values, grad_logits
