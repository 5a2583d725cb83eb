"""Attention pooling Triton kernels: scores on tensor cores, split-T online softmax, fused backward.

Forward (docs/kernel-notes.md, flash-decoding style). One program per (sequence, tile of BLOCK_T
steps), so one long sequence spreads over the whole GPU:

1. ``_attention_pool_fwd_kernel``: for each block of BLOCK_A attention units, ``u = h W_a`` for
   the tile's steps accumulates over blocks of D with ``tl.dot`` (tensor cores), then
   ``e += tanh(u + b_a) . v_a``; the ``(BLOCK_T, BLOCK_A)`` activations never leave the chip.
   The tile's local softmax gives its max ``m_i``, sum ``s_i = sum exp(e - m_i)`` and partial
   context ``sum exp(e - m_i) h``; the raw scores (B x T floats) are kept to write alpha.
   Tiles past a sequence's length do nothing.
2. ``_attention_pool_combine_kernel``: per (sequence, block of D), merges the tiles with
   ``exp(m_i - m)`` rescaling into the context and the log-sum-exp.
3. ``_attention_pool_alpha_kernel``: ``alpha = exp(e - lse)``, 0 at padded steps.

Backward, with ``g_b = sum_t alpha_t dalpha_t + dc . context`` (``_attention_pool_bwd_prep_kernel``):

1. ``_attention_pool_bwd_r_kernel``: per tile, ``de_t = alpha_t (dalpha_t + dc . h_t - g_b)``;
   ``u`` is recomputed with ``tl.dot`` block by block, ``r = de (1 - tanh^2 u) v_a`` is written
   for the valid steps, and the tile's partial ``dv_a = sum de tanh u``, ``db_a = sum r``.
2. ``_attention_pool_bwd_dh_kernel``: ``dh = r W_a^T + alpha dc`` (zero at padded steps).
3. ``_attention_pool_bwd_dw_kernel``: ``dW_a = sum h^T r`` over valid tiles, split over
   programs and summed afterwards (deterministic; no atomics).

Nothing of shape (B, T, A) is kept between forward and backward: ``activations`` is a
``(0, A)`` tensor here. ``r`` is a transient of the backward, produced for at most
``R_CHUNK_ELEMENTS`` elements at a time (a slice of the batch), so its size is bounded whatever
B and T are.

Dtypes: float16/bfloat16 inputs go to ``tl.dot`` as they are, with float32 accumulation;
float32 follows the dot policy every op shares (``ops/_triton_utils.py``: ``tf32x3`` unless
PyTorch allows TF32, overridable per call with ``f32_dot=``); float64 (tests, gradcheck)
multiplies with a broadcast-and-sum, since ``tl.dot`` has no float64 lowering on every target.

The launchers take plain tensors (any device), so under ``TRITON_INTERPRET=1`` the same kernels
run on CPU tensors; the test suite does exactly that.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ..._checks import compute_dtype
from .._triton_utils import device_lengths, dot, dot_precision, sm_count, tanh

# The largest transient r tensor of the backward, in elements (64 MB in bfloat16).
R_CHUNK_ELEMENTS = 1 << 25

@triton.jit
def _mm(a, b, acc, FP64: tl.constexpr, PRECISION: tl.constexpr):
    # acc + a @ b; float64 by broadcast-and-sum (small blocks), everything else on tensor cores.
    if FP64:
        return acc + tl.sum(a[:, :, None] * b[None, :, :], axis=1)
    else:
        return acc + dot(a, b, PRECISION)


@triton.jit
def _scores_block(h_rows, rmask, W, BIAS, a0, D, A, acc_ty: tl.constexpr,
                  HAS_BIAS: tl.constexpr, FP64: tl.constexpr, PRECISION: tl.constexpr,
                  BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_A: tl.constexpr):
    # tanh(h W_a[:, a0:a0+BLOCK_A] + b_a) for the tile's rows, (BLOCK_T, BLOCK_A) in acc_ty.
    offs_a = a0 + tl.arange(0, BLOCK_A)
    amask = offs_a < A
    u = tl.zeros([BLOCK_T, BLOCK_A], acc_ty)
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        dmask = offs_d < D
        hb = tl.load(h_rows[:, None] + offs_d[None, :], mask=rmask[:, None] & dmask[None, :], other=0.0)
        wb = tl.load(W + offs_d.to(tl.int64)[:, None] * A + offs_a[None, :], mask=dmask[:, None] & amask[None, :],
                     other=0.0)
        u = _mm(hb, wb, u, FP64, PRECISION)
    if HAS_BIAS:
        u += tl.load(BIAS + offs_a, mask=amask, other=0.0).to(acc_ty)[None, :]
    return tanh(u)


@triton.jit
def _attention_pool_fwd_kernel(
    H, LEN, W, V, BIAS, SCORES, PART_M, PART_S, PART_CTX,
    T, D, A, NT,
    HAS_BIAS: tl.constexpr, FP64: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_A: tl.constexpr,
):
    pid = tl.program_id(0)
    b = (pid // NT).to(tl.int64)
    tile = pid % NT
    acc_ty = SCORES.dtype.element_ty
    L = tl.minimum(tl.maximum(tl.load(LEN + b).to(tl.int32), 1), T)
    if tile * BLOCK_T < L:
        rows = tile * BLOCK_T + tl.arange(0, BLOCK_T)
        rmask = rows < L
        h_rows = H + (b * T + rows.to(tl.int64)) * D
        e = tl.zeros([BLOCK_T], acc_ty)
        for a0 in range(0, A, BLOCK_A):
            offs_a = a0 + tl.arange(0, BLOCK_A)
            th = _scores_block(h_rows, rmask, W, BIAS, a0, D, A, acc_ty, HAS_BIAS, FP64, PRECISION,
                               BLOCK_T, BLOCK_D, BLOCK_A)
            v = tl.load(V + offs_a, mask=offs_a < A, other=0.0).to(acc_ty)
            e += tl.sum(th * v[None, :], axis=1)
        e = tl.where(rmask, e, float("-inf"))
        m = tl.max(e, axis=0)
        p = tl.exp(e - m)  # 0 at padded rows
        tl.store(SCORES + b * T + rows, e, mask=rmask)
        tl.store(PART_M + b * NT + tile, m)
        tl.store(PART_S + b * NT + tile, tl.sum(p, axis=0))
        part = PART_CTX + (b * NT + tile) * D
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            dmask = offs_d < D
            hb = tl.load(h_rows[:, None] + offs_d[None, :], mask=rmask[:, None] & dmask[None, :], other=0.0)
            tl.store(part + offs_d, tl.sum(p[:, None] * hb.to(acc_ty), axis=0), mask=dmask)


@triton.jit
def _attention_pool_combine_kernel(
    LEN, PART_M, PART_S, PART_CTX, CONTEXT, LSE,
    T, D, NT,
    TILE_T: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    pd = tl.program_id(1)
    acc_ty = PART_CTX.dtype.element_ty
    L = tl.minimum(tl.maximum(tl.load(LEN + b).to(tl.int32), 1), T)
    nt = tl.cdiv(L, TILE_T)
    offs_d = pd * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = offs_d < D
    m = tl.full([BLOCK_N], float("-inf"), acc_ty)
    for i0 in range(0, nt, BLOCK_N):
        offs_n = i0 + tl.arange(0, BLOCK_N)
        m = tl.maximum(m, tl.load(PART_M + b * NT + offs_n, mask=offs_n < nt, other=float("-inf")))
    m_all = tl.max(m, axis=0)
    s = tl.zeros([BLOCK_N], acc_ty)
    c = tl.zeros([BLOCK_D], acc_ty)
    for i0 in range(0, nt, BLOCK_N):
        offs_n = i0 + tl.arange(0, BLOCK_N)
        nmask = offs_n < nt
        scale = tl.exp(tl.load(PART_M + b * NT + offs_n, mask=nmask, other=float("-inf")) - m_all)
        s += scale * tl.load(PART_S + b * NT + offs_n, mask=nmask, other=0.0)
        pc = tl.load(PART_CTX + (b * NT + offs_n)[:, None] * D + offs_d[None, :],
                     mask=nmask[:, None] & dmask[None, :], other=0.0)
        c += tl.sum(scale[:, None] * pc, axis=0)
    s_all = tl.sum(s, axis=0)
    tl.store(CONTEXT + b * D + offs_d, (c / s_all).to(CONTEXT.dtype.element_ty), mask=dmask)
    if pd == 0:
        tl.store(LSE + b, m_all + tl.log(s_all))


@triton.jit
def _attention_pool_alpha_kernel(LEN, SCORES, LSE, ALPHA, T, BLOCK: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    L = tl.minimum(tl.maximum(tl.load(LEN + b).to(tl.int32), 1), T)
    valid = offs < L
    e = tl.load(SCORES + b * T + offs, mask=valid, other=float("-inf"))
    alpha = tl.where(valid, tl.exp(e - tl.load(LSE + b)), 0.0)
    tl.store(ALPHA + b * T + offs, alpha.to(ALPHA.dtype.element_ty), mask=offs < T)


@triton.jit
def _attention_pool_bwd_prep_kernel(LEN, ALPHA, GA, DC, CTX, G, T, D, HAS_GA: tl.constexpr, BLOCK: tl.constexpr):
    # g_b = sum_t alpha_t grad_alpha_t + dc_b . context_b
    b = tl.program_id(0).to(tl.int64)
    acc_ty = G.dtype.element_ty
    L = tl.minimum(tl.maximum(tl.load(LEN + b).to(tl.int32), 1), T)
    s = tl.zeros([BLOCK], acc_ty)
    if HAS_GA:
        for t0 in range(0, L, BLOCK):
            offs = t0 + tl.arange(0, BLOCK)
            m = offs < L
            s += tl.load(ALPHA + b * T + offs, mask=m, other=0.0).to(acc_ty) * \
                tl.load(GA + b * T + offs, mask=m, other=0.0).to(acc_ty)
    for d0 in range(0, D, BLOCK):
        offs = d0 + tl.arange(0, BLOCK)
        m = offs < D
        s += tl.load(DC + b * D + offs, mask=m, other=0.0).to(acc_ty) * \
            tl.load(CTX + b * D + offs, mask=m, other=0.0).to(acc_ty)
    tl.store(G + b, tl.sum(s, axis=0))


@triton.jit
def _attention_pool_bwd_r_kernel(
    H, LEN, W, V, BIAS, ALPHA, GA, DC, G, R, PART_DV, PART_DB,
    T, D, A, NT,
    HAS_BIAS: tl.constexpr, HAS_GA: tl.constexpr, FP64: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_A: tl.constexpr,
):
    pid = tl.program_id(0)
    b = (pid // NT).to(tl.int64)
    tile = pid % NT
    acc_ty = G.dtype.element_ty
    L = tl.minimum(tl.maximum(tl.load(LEN + b).to(tl.int32), 1), T)
    if tile * BLOCK_T < L:
        rows = tile * BLOCK_T + tl.arange(0, BLOCK_T)
        rmask = rows < L
        h_rows = H + (b * T + rows.to(tl.int64)) * D
        alpha = tl.load(ALPHA + b * T + rows, mask=rmask, other=0.0).to(acc_ty)
        dalpha = tl.zeros([BLOCK_T], acc_ty)
        if HAS_GA:
            dalpha += tl.load(GA + b * T + rows, mask=rmask, other=0.0).to(acc_ty)
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            dmask = offs_d < D
            hb = tl.load(h_rows[:, None] + offs_d[None, :], mask=rmask[:, None] & dmask[None, :], other=0.0)
            dc = tl.load(DC + b * D + offs_d, mask=dmask, other=0.0).to(acc_ty)
            dalpha += tl.sum(hb.to(acc_ty) * dc[None, :], axis=1)
        de = alpha * (dalpha - tl.load(G + b))  # 0 at padded rows (alpha = 0 there)
        r_rows = R + (b * T + rows.to(tl.int64)) * A
        part = (b * NT + tile) * A
        for a0 in range(0, A, BLOCK_A):
            offs_a = a0 + tl.arange(0, BLOCK_A)
            amask = offs_a < A
            th = _scores_block(h_rows, rmask, W, BIAS, a0, D, A, acc_ty, HAS_BIAS, FP64, PRECISION,
                               BLOCK_T, BLOCK_D, BLOCK_A)
            v = tl.load(V + offs_a, mask=amask, other=0.0).to(acc_ty)
            r = de[:, None] * (1.0 - th * th) * v[None, :]
            tl.store(r_rows[:, None] + offs_a[None, :], r.to(R.dtype.element_ty), mask=rmask[:, None] & amask[None, :])
            tl.store(PART_DV + part + offs_a, tl.sum(de[:, None] * th, axis=0), mask=amask)
            tl.store(PART_DB + part + offs_a, tl.sum(r, axis=0), mask=amask)


@triton.jit
def _attention_pool_bwd_dh_kernel(
    R, LEN, W, ALPHA, DC, G, DH,
    T, D, A, NT,
    FP64: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_A: tl.constexpr,
):
    pid = tl.program_id(0)
    b = (pid // NT).to(tl.int64)
    tile = pid % NT
    acc_ty = G.dtype.element_ty
    L = tl.minimum(tl.maximum(tl.load(LEN + b).to(tl.int32), 1), T)
    rows = tile * BLOCK_T + tl.arange(0, BLOCK_T)
    rmask = rows < L
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = offs_d < D
    acc = tl.zeros([BLOCK_T, BLOCK_D], acc_ty)
    if tile * BLOCK_T < L:
        r_rows = R + (b * T + rows.to(tl.int64)) * A
        for a0 in range(0, A, BLOCK_A):
            offs_a = a0 + tl.arange(0, BLOCK_A)
            amask = offs_a < A
            r = tl.load(r_rows[:, None] + offs_a[None, :], mask=rmask[:, None] & amask[None, :], other=0.0)
            wt = tl.load(W + offs_d.to(tl.int64)[None, :] * A + offs_a[:, None], mask=amask[:, None] & dmask[None, :],
                         other=0.0)
            acc = _mm(r, wt, acc, FP64, PRECISION)
        alpha = tl.load(ALPHA + b * T + rows, mask=rmask, other=0.0).to(acc_ty)
        dc = tl.load(DC + b * D + offs_d, mask=dmask, other=0.0).to(acc_ty)
        acc += alpha[:, None] * dc[None, :]
    # padded steps get exact zeros (acc stays 0 there)
    tl.store(DH + (b * T + rows.to(tl.int64))[:, None] * D + offs_d[None, :], acc.to(DH.dtype.element_ty),
             mask=(rows < T)[:, None] & dmask[None, :])


@triton.jit
def _attention_pool_bwd_dw_kernel(
    H, R, LEN, G, PART_DW,
    T, D, A, NT, JOBS, SPLIT,
    FP64: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_A: tl.constexpr,
):
    # PART_DW[split] = sum over this split's (sequence, tile) jobs of h_tile^T r_tile.
    offs_d = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_a = tl.program_id(1) * BLOCK_A + tl.arange(0, BLOCK_A)
    split = tl.program_id(2)
    dmask = offs_d < D
    amask = offs_a < A
    acc_ty = G.dtype.element_ty
    acc = tl.zeros([BLOCK_D, BLOCK_A], acc_ty)
    for job in range(split, JOBS, SPLIT):
        b = (job // NT).to(tl.int64)
        tile = job % NT
        L = tl.minimum(tl.maximum(tl.load(LEN + b).to(tl.int32), 1), T)
        if tile * BLOCK_T < L:
            rows = (b * T + tile * BLOCK_T + tl.arange(0, BLOCK_T)).to(tl.int64)
            rmask = tile * BLOCK_T + tl.arange(0, BLOCK_T) < L
            hb = tl.load(H + rows[:, None] * D + offs_d[None, :], mask=rmask[:, None] & dmask[None, :], other=0.0)
            r = tl.load(R + rows[:, None] * A + offs_a[None, :], mask=rmask[:, None] & amask[None, :], other=0.0)
            acc = _mm(tl.trans(hb), r, acc, FP64, PRECISION)
    tl.store(PART_DW + (split * D + offs_d.to(tl.int64))[:, None] * A + offs_a[None, :], acc,
             mask=dmask[:, None] & amask[None, :])


# ---- launchers ---------------------------------------------------------------------------------

def _config(dtype: torch.dtype, block_t, block_d, block_a, f32_dot=None):
    """Block sizes and dot precision for one dtype; explicit sizes (tests) override."""
    if dtype == torch.float64:
        # broadcast-and-sum products: (16, 16, 16) keeps the 3-D temporary small
        default = (16, 16, 16)
    elif dtype == torch.float32:
        default = (64, 32, 64)
    else:
        default = (64, 64, 64)
    precision = dot_precision(dtype, f32_dot)
    bt, bd, ba = (x if x is not None else d for x, d in zip((block_t, block_d, block_a), default))
    for name, x in (("block_t", bt), ("block_d", bd), ("block_a", ba)):
        if x < 16 or x & (x - 1):
            raise ValueError(f"attention_pool (Triton): `{name}` must be a power of two >= 16, got {x}")
    return bt, bd, ba, precision


def _prepare(h, lengths, w_a, v_a, b_a):
    h, w_a, v_a = h.contiguous(), w_a.contiguous(), v_a.contiguous()
    b_a = b_a.contiguous() if b_a is not None else None
    lengths = device_lengths(lengths, h.device, h.shape[0], h.shape[1])
    return h, lengths, w_a, v_a, b_a


def attention_pool_fwd_triton(h, lengths, w_a, v_a, b_a, *, block_t=None, block_d=None, block_a=None, f32_dot=None):
    """Triton forward; same contract as ``torch.ops.sublocal.attention_pool_fwd`` (activations: ``(0, A)``)."""
    h, lengths, w_a, v_a, b_a = _prepare(h, lengths, w_a, v_a, b_a)
    B, T, D = h.shape
    A = w_a.shape[1]
    cd = compute_dtype(h.dtype)
    dev = h.device
    context = torch.empty(B, D, dtype=h.dtype, device=dev)
    alpha = torch.empty(B, T, dtype=h.dtype, device=dev)
    activations = torch.empty(0, A, dtype=cd, device=dev)
    if B == 0 or T == 0:
        return context, alpha, activations
    bt, bd, ba, precision = _config(h.dtype, block_t, block_d, block_a, f32_dot)
    NT = triton.cdiv(T, bt)
    scores = torch.empty(B, T, dtype=cd, device=dev)
    part_m = torch.empty(B, NT, dtype=cd, device=dev)
    part_s = torch.empty(B, NT, dtype=cd, device=dev)
    part_ctx = torch.empty(B, NT, D, dtype=cd, device=dev)
    lse = torch.empty(B, dtype=cd, device=dev)
    fp64 = h.dtype == torch.float64
    _attention_pool_fwd_kernel[(B * NT,)](
        h, lengths, w_a, v_a, b_a if b_a is not None else v_a, scores, part_m, part_s, part_ctx,
        T, D, A, NT, HAS_BIAS=b_a is not None, FP64=fp64, PRECISION=precision,
        BLOCK_T=bt, BLOCK_D=bd, BLOCK_A=ba, num_warps=4)
    block_dc = 16 if fp64 else 128
    _attention_pool_combine_kernel[(B, triton.cdiv(max(D, 1), block_dc))](
        lengths, part_m, part_s, part_ctx, context, lse, T, D, NT,
        TILE_T=bt, BLOCK_N=16, BLOCK_D=block_dc, num_warps=4)
    _attention_pool_alpha_kernel[(B, triton.cdiv(T, 1024))](lengths, scores, lse, alpha, T, BLOCK=1024, num_warps=4)
    return context, alpha, activations


def attention_pool_bwd_triton(grad_context, grad_alpha, h, lengths, w_a, v_a, b_a, context, alpha, *,
                              block_t=None, block_d=None, block_a=None, dw_split=None,
                              r_chunk_elements=R_CHUNK_ELEMENTS, f32_dot=None):
    """Triton backward; same contract as ``torch.ops.sublocal.attention_pool_bwd``.

    ``dw_split`` (programs along the reduction of dW_a) and ``r_chunk_elements`` (size of the
    transient r) are for tests; None picks them from the GPU's size.
    """
    h, lengths, w_a, v_a, b_a = _prepare(h, lengths, w_a, v_a, b_a)
    grad_context, alpha, context = grad_context.contiguous(), alpha.contiguous(), context.contiguous()
    grad_alpha = grad_alpha.contiguous() if grad_alpha is not None else None
    B, T, D = h.shape
    A = w_a.shape[1]
    cd = compute_dtype(h.dtype)
    dev = h.device
    grad_h = torch.empty_like(h)
    grad_w = torch.zeros(D, A, dtype=cd, device=dev)
    grad_v = torch.zeros(A, dtype=cd, device=dev)
    grad_b = torch.zeros(A if b_a is not None else 0, dtype=cd, device=dev)
    if B == 0 or T == 0:
        return grad_h, grad_w.to(h.dtype), grad_v.to(h.dtype), grad_b.to(h.dtype)
    bt, bd, ba, precision = _config(h.dtype, block_t, block_d, block_a, f32_dot)
    fp64 = h.dtype == torch.float64
    NT = triton.cdiv(T, bt)
    g = torch.empty(B, dtype=cd, device=dev)
    _attention_pool_bwd_prep_kernel[(B,)](
        lengths, alpha, grad_alpha if grad_alpha is not None else alpha, grad_context, context, g, T, D,
        HAS_GA=grad_alpha is not None, BLOCK=256, num_warps=4)
    nd, na = triton.cdiv(max(D, 1), bd), triton.cdiv(max(A, 1), ba)
    # Sequences per slice: r for one slice is at most r_chunk_elements (at least one sequence).
    per_slice = max(1, min(B, r_chunk_elements // max(T * A, 1)))
    r = torch.empty(per_slice, T, A, dtype=h.dtype, device=dev)
    for b0 in range(0, B, per_slice):
        b1 = min(B, b0 + per_slice)
        nb = b1 - b0
        jobs = nb * NT
        if dw_split is None:
            split = 1
            if dev.type == "cuda":
                sms = sm_count(dev)
                split = max(1, min(jobs, math.ceil(4 * sms / (nd * na))))
        else:
            split = max(1, min(jobs, dw_split))
        part_dv = torch.zeros(nb, NT, A, dtype=cd, device=dev)
        part_db = torch.zeros(nb, NT, A, dtype=cd, device=dev)
        part_dw = torch.empty(split, D, A, dtype=cd, device=dev)
        hs, ls = h[b0:b1], lengths[b0:b1]
        ga = grad_alpha[b0:b1] if grad_alpha is not None else alpha[b0:b1]
        _attention_pool_bwd_r_kernel[(jobs,)](
            hs, ls, w_a, v_a, b_a if b_a is not None else v_a, alpha[b0:b1], ga, grad_context[b0:b1], g[b0:b1],
            r, part_dv, part_db, T, D, A, NT,
            HAS_BIAS=b_a is not None, HAS_GA=grad_alpha is not None, FP64=fp64, PRECISION=precision,
            BLOCK_T=bt, BLOCK_D=bd, BLOCK_A=ba, num_warps=4)
        _attention_pool_bwd_dh_kernel[(jobs, nd)](
            r, ls, w_a, alpha[b0:b1], grad_context[b0:b1], g, grad_h[b0:b1], T, D, A, NT,
            FP64=fp64, PRECISION=precision, BLOCK_T=bt, BLOCK_D=bd, BLOCK_A=ba, num_warps=4)
        _attention_pool_bwd_dw_kernel[(nd, na, split)](
            hs, r, ls, g, part_dw, T, D, A, NT, jobs, split,
            FP64=fp64, PRECISION=precision, BLOCK_T=bt, BLOCK_D=bd, BLOCK_A=ba, num_warps=4)
        grad_w += part_dw.sum(0)
        grad_v += part_dv.sum((0, 1))
        if b_a is not None:
            grad_b += part_db.sum((0, 1))
    return grad_h, grad_w.to(h.dtype), grad_v.to(h.dtype), grad_b.to(h.dtype)
