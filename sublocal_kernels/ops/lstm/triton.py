"""LSTM Triton kernels: the whole recurrence in one launch per direction pair.

Design (docs/kernel-notes.md, "LSTM"): the input projection ``x W_ih^T + b`` of every step and
both directions is one matrix product before the kernel (cuBLAS), and the weight and input
gradients are single matrix products after the backward kernel. Only the recurrence walks
time, inside one persistent launch: program ``(tile, direction)`` owns ``BLOCK_B`` sequences
of similar length (the batch is sorted by length on the device, without a host sync) and loops
over its own longest sequence's steps; each step multiplies the tile's ``h_{t-1}`` by
``W_hh`` (read from L2 every step) with ``tl.dot`` in the input dtype and float32
accumulation, applies the cell, and writes ``h``, ``c`` and the gate activations. A barrier
between steps makes the step's ``h`` (written to global memory) visible to every thread of
the program before the next step reads it. Rows past a sequence's end are masked, so a tile
does no work for finished sequences beyond the masked lanes and stops at its own longest one.

Workspace layout on CUDA (csrc/lstm.h): row ``b * T + t`` of ``gates (D, B*T, 4H)`` and
``states (D, B*T, 2H)``, float32 (float64 for float64 inputs).

The launchers take plain tensors (any device), so under ``TRITON_INTERPRET=1`` the same
kernels run on CPU tensors; the test suite does exactly that.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..._checks import compute_dtype
from .._triton_utils import device_lengths, dot, dot_precision, tanh


@triton.jit
def _lstm_fwd_kernel(
    GATES, STATES, OUT, HN, CN, H0, C0, WHH, ORDER, LEN,
    B, T, H,
    NUM_DIRS: tl.constexpr, HAS_H0: tl.constexpr, HAS_C0: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):
    tile = tl.program_id(0)
    d = tl.program_id(1)
    ranks = tile * BLOCK_B + tl.arange(0, BLOCK_B)
    rmask = ranks < B
    b = tl.load(ORDER + ranks, mask=rmask, other=0).to(tl.int64)
    L = tl.load(LEN + b, mask=rmask, other=0).to(tl.int32)
    L = tl.minimum(tl.maximum(L, 0), T)
    L = tl.where(rmask, L, 0)
    n_steps = tl.max(L, axis=0)
    acc_ty = STATES.dtype.element_ty
    w_ty = WHH.dtype.element_ty
    BT = B.to(tl.int64) * T
    g_base = GATES + d * BT * 4 * H
    s_base = STATES + d * BT * 2 * H
    w_base = WHH + d * 4 * H * H
    for s in range(0, n_steps):
        active = s < L
        t = tl.where(d == 0, s, L - 1 - s)
        tp = tl.where(d == 0, t - 1, t + 1)
        row = b * T + t
        prow = b * T + tp
        first = s == 0
        last = active & (s == L - 1)
        for j0 in range(0, H, BLOCK_H):
            cols = j0 + tl.arange(0, BLOCK_H)
            cmask = cols < H
            m2 = active[:, None] & cmask[None, :]
            gp = g_base + row[:, None] * 4 * H + cols[None, :]
            acc_i = tl.load(gp, mask=m2, other=0.0)
            acc_f = tl.load(gp + H, mask=m2, other=0.0)
            acc_g = tl.load(gp + 2 * H, mask=m2, other=0.0)
            acc_o = tl.load(gp + 3 * H, mask=m2, other=0.0)
            for k0 in range(0, H, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                kmask = ks < H
                mk = active[:, None] & kmask[None, :]
                h_prev = tl.load(s_base + prow[:, None] * 2 * H + H + ks[None, :], mask=mk & (s > 0), other=0.0)
                if HAS_H0:
                    h_prev += tl.load(H0 + (d * B + b)[:, None] * H + ks[None, :], mask=mk & first, other=0.0).to(acc_ty)
                hk = h_prev.to(w_ty)
                wm = kmask[:, None] & cmask[None, :]
                wp = w_base + cols[None, :] * H + ks[:, None]
                acc_i += dot(hk, tl.load(wp, mask=wm, other=0.0), PRECISION)
                acc_f += dot(hk, tl.load(wp + H * H, mask=wm, other=0.0), PRECISION)
                acc_g += dot(hk, tl.load(wp + 2 * H * H, mask=wm, other=0.0), PRECISION)
                acc_o += dot(hk, tl.load(wp + 3 * H * H, mask=wm, other=0.0), PRECISION)
            gi = tl.sigmoid(acc_i)
            gf = tl.sigmoid(acc_f)
            gg = tanh(acc_g)
            go = tl.sigmoid(acc_o)
            c_prev = tl.load(s_base + prow[:, None] * 2 * H + cols[None, :], mask=m2 & (s > 0), other=0.0)
            if HAS_C0:
                c_prev += tl.load(C0 + (d * B + b)[:, None] * H + cols[None, :], mask=m2 & first, other=0.0).to(acc_ty)
            c = gf * c_prev + gi * gg
            h = go * tanh(c)
            tl.store(gp, gi.to(acc_ty), mask=m2)
            tl.store(gp + H, gf.to(acc_ty), mask=m2)
            tl.store(gp + 2 * H, gg.to(acc_ty), mask=m2)
            tl.store(gp + 3 * H, go.to(acc_ty), mask=m2)
            sp = s_base + row[:, None] * 2 * H + cols[None, :]
            tl.store(sp, c.to(acc_ty), mask=m2)
            tl.store(sp + H, h.to(acc_ty), mask=m2)
            tl.store(OUT + (row * NUM_DIRS)[:, None] * H + d * H + cols[None, :], h.to(OUT.dtype.element_ty), mask=m2)
            ml = last[:, None] & cmask[None, :]
            tl.store(HN + (d * B + b)[:, None] * H + cols[None, :], h.to(HN.dtype.element_ty), mask=ml)
            tl.store(CN + (d * B + b)[:, None] * H + cols[None, :], c.to(CN.dtype.element_ty), mask=ml)
        # This step's h (global memory) must be visible to every thread before the next step.
        tl.debug_barrier()


@triton.jit
def _lstm_infer_kernel(
    X, WIH, BIAS, OUT, HN, CN, CST, H0, C0, WHH, ORDER, LEN,
    B, T, C, H,
    NUM_DIRS: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr, HAS_C0: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr,
    PRECISION: tl.constexpr, PROJ_PRECISION: tl.constexpr,
):
    # _lstm_fwd_kernel without the workspace: the input projection x_t W_ih^T + b is computed
    # here per step (state dtype, like the training path's projection GEMM), h_{t-1} is read
    # back from OUT (its value in the input dtype is exactly what the W_hh product consumes,
    # h_prev.to(w_ty)), and c lives in CST (D, B, H), each element read and then overwritten
    # by the same thread.
    tile = tl.program_id(0)
    d = tl.program_id(1)
    ranks = tile * BLOCK_B + tl.arange(0, BLOCK_B)
    rmask = ranks < B
    b = tl.load(ORDER + ranks, mask=rmask, other=0).to(tl.int64)
    L = tl.load(LEN + b, mask=rmask, other=0).to(tl.int32)
    L = tl.minimum(tl.maximum(L, 0), T)
    L = tl.where(rmask, L, 0)
    n_steps = tl.max(L, axis=0)
    acc_ty = CST.dtype.element_ty
    w_ty = WHH.dtype.element_ty
    c_base = CST + d * B * H
    w_base = WHH + d * 4 * H * H
    wi_base = WIH + d * 4 * H * C
    for s in range(0, n_steps):
        active = s < L
        t = tl.where(d == 0, s, L - 1 - s)
        tp = tl.where(d == 0, t - 1, t + 1)
        row = b * T + t
        prow = b * T + tp
        first = s == 0
        last = active & (s == L - 1)
        for j0 in range(0, H, BLOCK_H):
            cols = j0 + tl.arange(0, BLOCK_H)
            cmask = cols < H
            m2 = active[:, None] & cmask[None, :]
            acc_i = tl.zeros([BLOCK_B, BLOCK_H], dtype=acc_ty)
            acc_f = tl.zeros([BLOCK_B, BLOCK_H], dtype=acc_ty)
            acc_g = tl.zeros([BLOCK_B, BLOCK_H], dtype=acc_ty)
            acc_o = tl.zeros([BLOCK_B, BLOCK_H], dtype=acc_ty)
            if HAS_BIAS:
                bp = BIAS + d * 4 * H + cols
                acc_i += tl.load(bp, mask=cmask, other=0.0)[None, :]
                acc_f += tl.load(bp + H, mask=cmask, other=0.0)[None, :]
                acc_g += tl.load(bp + 2 * H, mask=cmask, other=0.0)[None, :]
                acc_o += tl.load(bp + 3 * H, mask=cmask, other=0.0)[None, :]
            for q0 in range(0, C, BLOCK_C):
                cs = q0 + tl.arange(0, BLOCK_C)
                qmask = cs < C
                xk = tl.load(X + row[:, None] * C + cs[None, :], mask=active[:, None] & qmask[None, :],
                             other=0.0).to(acc_ty)
                wm = qmask[:, None] & cmask[None, :]
                wp = wi_base + cols[None, :] * C + cs[:, None]
                acc_i += dot(xk, tl.load(wp, mask=wm, other=0.0), PROJ_PRECISION)
                acc_f += dot(xk, tl.load(wp + H * C, mask=wm, other=0.0), PROJ_PRECISION)
                acc_g += dot(xk, tl.load(wp + 2 * H * C, mask=wm, other=0.0), PROJ_PRECISION)
                acc_o += dot(xk, tl.load(wp + 3 * H * C, mask=wm, other=0.0), PROJ_PRECISION)
            for k0 in range(0, H, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                kmask = ks < H
                mk = active[:, None] & kmask[None, :]
                hk = tl.load(OUT + (prow * NUM_DIRS)[:, None] * H + d * H + ks[None, :], mask=mk & (s > 0),
                             other=0.0).to(w_ty)
                if HAS_H0:
                    hk += tl.load(H0 + (d * B + b)[:, None] * H + ks[None, :], mask=mk & first, other=0.0).to(w_ty)
                wm = kmask[:, None] & cmask[None, :]
                wp = w_base + cols[None, :] * H + ks[:, None]
                acc_i += dot(hk, tl.load(wp, mask=wm, other=0.0), PRECISION)
                acc_f += dot(hk, tl.load(wp + H * H, mask=wm, other=0.0), PRECISION)
                acc_g += dot(hk, tl.load(wp + 2 * H * H, mask=wm, other=0.0), PRECISION)
                acc_o += dot(hk, tl.load(wp + 3 * H * H, mask=wm, other=0.0), PRECISION)
            gi = tl.sigmoid(acc_i)
            gf = tl.sigmoid(acc_f)
            gg = tanh(acc_g)
            go = tl.sigmoid(acc_o)
            cp = c_base + b[:, None] * H + cols[None, :]
            c_prev = tl.load(cp, mask=m2 & (s > 0), other=0.0)
            if HAS_C0:
                c_prev += tl.load(C0 + (d * B + b)[:, None] * H + cols[None, :], mask=m2 & first, other=0.0).to(acc_ty)
            c = gf * c_prev + gi * gg
            h = go * tanh(c)
            tl.store(cp, c.to(acc_ty), mask=m2)
            tl.store(OUT + (row * NUM_DIRS)[:, None] * H + d * H + cols[None, :], h.to(OUT.dtype.element_ty), mask=m2)
            ml = last[:, None] & cmask[None, :]
            tl.store(HN + (d * B + b)[:, None] * H + cols[None, :], h.to(HN.dtype.element_ty), mask=ml)
            tl.store(CN + (d * B + b)[:, None] * H + cols[None, :], c.to(CN.dtype.element_ty), mask=ml)
        # This step's h (global memory) must be visible to every thread before the next step.
        tl.debug_barrier()


@triton.jit
def _lstm_bwd_kernel(
    DGATES, DH, DC, GATES, STATES, GRAD_OUT, C0, WHH, ORDER, LEN,
    B, T, H,
    NUM_DIRS: tl.constexpr, HAS_C0: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):
    # DH, DC (D, B, H) hold the gradients reaching h_s and c_s: grad_h_n and grad_c_n on entry
    # (a sequence's rows are untouched until its last step), grad_h0 and grad_c0 on exit.
    tile = tl.program_id(0)
    d = tl.program_id(1)
    ranks = tile * BLOCK_B + tl.arange(0, BLOCK_B)
    rmask = ranks < B
    b = tl.load(ORDER + ranks, mask=rmask, other=0).to(tl.int64)
    L = tl.load(LEN + b, mask=rmask, other=0).to(tl.int32)
    L = tl.minimum(tl.maximum(L, 0), T)
    L = tl.where(rmask, L, 0)
    n_steps = tl.max(L, axis=0)
    acc_ty = STATES.dtype.element_ty
    w_ty = WHH.dtype.element_ty
    BT = B.to(tl.int64) * T
    g_base = GATES + d * BT * 4 * H
    dg_base = DGATES + d * BT * 4 * H
    s_base = STATES + d * BT * 2 * H
    w_base = WHH + d * 4 * H * H
    st_base = (d * B + b) * H
    for i in range(0, n_steps):
        s = n_steps - 1 - i
        active = s < L
        t = tl.where(d == 0, s, L - 1 - s)
        tp = tl.where(d == 0, t - 1, t + 1)
        row = b * T + t
        prow = b * T + tp
        first = s == 0
        # The cell's gradient, one block of hidden units at a time.
        for j0 in range(0, H, BLOCK_H):
            cols = j0 + tl.arange(0, BLOCK_H)
            cmask = cols < H
            m2 = active[:, None] & cmask[None, :]
            gp = g_base + row[:, None] * 4 * H + cols[None, :]
            a_i = tl.load(gp, mask=m2, other=0.0)
            a_f = tl.load(gp + H, mask=m2, other=0.0)
            a_g = tl.load(gp + 2 * H, mask=m2, other=0.0)
            a_o = tl.load(gp + 3 * H, mask=m2, other=0.0)
            c = tl.load(s_base + row[:, None] * 2 * H + cols[None, :], mask=m2, other=0.0)
            c_prev = tl.load(s_base + prow[:, None] * 2 * H + cols[None, :], mask=m2 & (s > 0), other=0.0)
            if HAS_C0:
                c_prev += tl.load(C0 + st_base[:, None] + cols[None, :], mask=m2 & first, other=0.0).to(acc_ty)
            sp = st_base[:, None] + cols[None, :]
            dh = tl.load(DH + sp, mask=m2, other=0.0)
            dh += tl.load(GRAD_OUT + (row * NUM_DIRS)[:, None] * H + d * H + cols[None, :], mask=m2, other=0.0).to(acc_ty)
            dc = tl.load(DC + sp, mask=m2, other=0.0)
            tc = tanh(c)
            dcs = dc + dh * a_o * (1.0 - tc * tc)
            dp = dg_base + row[:, None] * 4 * H + cols[None, :]
            tl.store(dp, (dcs * a_g * a_i * (1.0 - a_i)).to(acc_ty), mask=m2)
            tl.store(dp + H, (dcs * c_prev * a_f * (1.0 - a_f)).to(acc_ty), mask=m2)
            tl.store(dp + 2 * H, (dcs * a_i * (1.0 - a_g * a_g)).to(acc_ty), mask=m2)
            tl.store(dp + 3 * H, (dh * tc * a_o * (1.0 - a_o)).to(acc_ty), mask=m2)
            tl.store(DC + sp, (dcs * a_f).to(acc_ty), mask=m2)
        tl.debug_barrier()
        # dh_{s-1} = dgates_s W_hh for the running rows (finished rows keep grad_h_n until their step).
        for j0 in range(0, H, BLOCK_H):
            cols = j0 + tl.arange(0, BLOCK_H)
            cmask = cols < H
            m2 = active[:, None] & cmask[None, :]
            acc = tl.zeros([BLOCK_B, BLOCK_H], dtype=acc_ty)
            for k0 in range(0, 4 * H, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                kmask = ks < 4 * H
                dg = tl.load(dg_base + row[:, None] * 4 * H + ks[None, :], mask=active[:, None] & kmask[None, :], other=0.0)
                w = tl.load(w_base + ks[:, None] * H + cols[None, :], mask=kmask[:, None] & cmask[None, :], other=0.0)
                acc += dot(dg.to(w_ty), w, PRECISION)
            tl.store(DH + st_base[:, None] + cols[None, :], acc.to(acc_ty), mask=m2)
        tl.debug_barrier()


NUM_STAGES = 3  # Triton's default for sm_90, set explicitly so the static check compiles what runs


def _blocks(H: int, dtype: torch.dtype, block_b: int | None, block_h: int | None, block_k: int | None):
    # tl.dot needs every dimension >= 16. BLOCK_B=16: sorted tiles of 16 similar lengths keep
    # masked lanes few; BLOCK_H=BLOCK_K=64 keeps four (16, 64) float32 accumulators per program.
    # float64 stops at 32: its forward at 64 x 64 with 3 stages needs 294,912 bytes of shared
    # memory, over sm_90's 232,448 per block (it fails at launch); at 32 it needs 81,920
    # (benchmarks/sm90_static.py).
    top = 32 if dtype == torch.float64 else 64
    bh = block_h or max(16, min(top, triton.next_power_of_2(H)))
    bk = block_k or max(16, min(top, triton.next_power_of_2(H)))
    return block_b or 16, bh, bk


def _split(weights, bidirectional: bool):
    D = 2 if bidirectional else 1
    per = len(weights) // D
    return D, per, [weights[d * per:(d + 1) * per] for d in range(D)]


def _sorted_order(lengths: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = device_lengths(lengths, device)
    order = torch.sort(lengths, descending=True, stable=True).indices.contiguous()
    return lengths, order


def lstm_fwd_triton(x, lengths, weights, h0, c0, bidirectional: bool, block_b=None, block_h=None, block_k=None,
                    f32_dot=None):
    """Triton forward; same contract as ``torch.ops.sublocal.lstm_fwd`` (CUDA workspace layout)."""
    x = x.contiguous()
    B, T, C = x.shape
    D, per, wd = _split(list(weights), bidirectional)
    H = weights[1].shape[1]
    sd = compute_dtype(x.dtype)
    dev = x.device
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.int64, device=dev)
    out = torch.zeros(B, T, D * H, dtype=x.dtype, device=dev)
    h_n = torch.empty(D, B, H, dtype=x.dtype, device=dev)
    c_n = torch.empty(D, B, H, dtype=x.dtype, device=dev)
    # The workspace rows at padding are never written: the backward masks them (torch.where)
    # before any product reads them, so they need no zero fill.
    gates = torch.empty(D, B * T, 4 * H, dtype=sd, device=dev)
    states = torch.empty(D, B * T, 2 * H, dtype=sd, device=dev)
    if B == 0 or T == 0:
        return out, h_n, c_n, gates, states
    x2 = x.reshape(B * T, C).to(sd)
    for d in range(D):
        w_ih = wd[d][0].to(sd)
        if per == 4:
            torch.addmm((wd[d][2].to(sd) + wd[d][3].to(sd)), x2, w_ih.t(), out=gates[d])
        else:
            torch.mm(x2, w_ih.t(), out=gates[d])
    whh = torch.stack([wd[d][1] for d in range(D)]).contiguous()
    lengths, order = _sorted_order(lengths, dev)
    bb, bh, bk = _blocks(H, x.dtype, block_b, block_h, block_k)
    h0c = h0.contiguous() if h0 is not None else gates
    c0c = c0.contiguous() if c0 is not None else gates
    _lstm_fwd_kernel[(triton.cdiv(B, bb), D)](
        gates, states, out, h_n, c_n, h0c, c0c, whh, order, lengths,
        B, T, H,
        NUM_DIRS=D, HAS_H0=h0 is not None, HAS_C0=c0 is not None,
        BLOCK_B=bb, BLOCK_H=bh, BLOCK_K=bk, PRECISION=dot_precision(x.dtype, f32_dot), num_warps=4,
        num_stages=NUM_STAGES,
    )
    return out, h_n, c_n, gates, states


def lstm_infer_triton(x, lengths, weights, h0, c0, bidirectional: bool, block_b=None, block_h=None, block_k=None,
                      f32_dot=None):
    """Triton inference forward; same contract as ``torch.ops.sublocal.lstm_infer``.

    Allocates only the outputs and a ``(D, B, H)`` cell state: no gates, no states, no
    ``(D, B*T, 4H)`` projection (it is computed per step inside the kernel).
    """
    x = x.contiguous()
    B, T, C = x.shape
    D, per, wd = _split(list(weights), bidirectional)
    H = weights[1].shape[1]
    sd = compute_dtype(x.dtype)
    dev = x.device
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.int64, device=dev)
    out = torch.zeros(B, T, D * H, dtype=x.dtype, device=dev)
    h_n = torch.empty(D, B, H, dtype=x.dtype, device=dev)
    c_n = torch.empty(D, B, H, dtype=x.dtype, device=dev)
    if B == 0 or T == 0:
        return out, h_n, c_n
    cst = torch.empty(D, B, H, dtype=sd, device=dev)
    wih = torch.stack([wd[d][0] for d in range(D)]).to(sd).contiguous()
    bias = (torch.stack([wd[d][2].to(sd) + wd[d][3].to(sd) for d in range(D)]).contiguous() if per == 4 else cst)
    whh = torch.stack([wd[d][1] for d in range(D)]).contiguous()
    lengths, order = _sorted_order(lengths, dev)
    bb, bh, bk = _blocks(H, x.dtype, block_b, block_h, block_k)
    bc = max(16, min(64, triton.next_power_of_2(C)))
    h0c = h0.contiguous() if h0 is not None else cst
    c0c = c0.contiguous() if c0 is not None else cst
    _lstm_infer_kernel[(triton.cdiv(B, bb), D)](
        x, wih, bias, out, h_n, c_n, cst, h0c, c0c, whh, order, lengths,
        B, T, C, H,
        NUM_DIRS=D, HAS_BIAS=per == 4, HAS_H0=h0 is not None, HAS_C0=c0 is not None,
        BLOCK_B=bb, BLOCK_H=bh, BLOCK_K=bk, BLOCK_C=bc, PRECISION=dot_precision(x.dtype, f32_dot),
        PROJ_PRECISION=dot_precision(sd, f32_dot), num_warps=4, num_stages=NUM_STAGES,
    )
    return out, h_n, c_n


def lstm_bwd_triton(grad_out, grad_h_n, grad_c_n, x, lengths, weights, h0, c0, gates, states,
                    bidirectional: bool, block_b=None, block_h=None, block_k=None, f32_dot=None):
    """Triton backward; same contract as ``torch.ops.sublocal.lstm_bwd`` (CUDA workspace layout)."""
    x = x.contiguous()
    B, T, C = x.shape
    weights = list(weights)
    D, per, wd = _split(weights, bidirectional)
    H = weights[1].shape[1]
    sd = compute_dtype(x.dtype)
    dev = x.device
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.int64, device=dev)
    dh = grad_h_n.to(sd).contiguous().clone()
    dc = grad_c_n.to(sd).contiguous().clone()
    dgates = torch.zeros(D, B * T, 4 * H, dtype=sd, device=dev)
    if B > 0 and T > 0:
        lengths, order = _sorted_order(lengths, dev)
        bb, bh, bk = _blocks(H, x.dtype, block_b, block_h, block_k)
        whh = torch.stack([wd[d][1] for d in range(D)]).contiguous()
        c0c = c0.contiguous() if c0 is not None else gates
        _lstm_bwd_kernel[(triton.cdiv(B, bb), D)](
            dgates, dh, dc, gates.contiguous(), states.contiguous(), grad_out.contiguous(), c0c, whh, order, lengths,
            B, T, H,
            NUM_DIRS=D, HAS_C0=c0 is not None,
            BLOCK_B=bb, BLOCK_H=bh, BLOCK_K=bk, PRECISION=dot_precision(x.dtype, f32_dot), num_warps=4,
            num_stages=NUM_STAGES,
        )
    else:
        lengths = lengths.to(device=dev, dtype=torch.int64)
    # Everything else is one batched matrix product over all (b, t) rows; dgates is zero on
    # padded rows, and x and h_prev are masked there so that no NaN in padding leaks in.
    steps = torch.arange(T, device=dev)
    valid = (steps[None, :] < lengths[:, None])  # (B, T)
    xv = torch.where(valid[:, :, None], x, torch.zeros((), dtype=x.dtype, device=dev)).reshape(B * T, C).to(sd)
    hs = states.view(D, B, T, 2 * H)[..., H:]
    h0s = h0.to(sd) if h0 is not None else torch.zeros(D, B, H, dtype=sd, device=dev)
    prev = [torch.cat([h0s[0][:, None], hs[0][:, :-1]], dim=1)]
    if D == 2:
        nxt = torch.cat([hs[1][:, 1:], torch.zeros(B, 1, H, dtype=sd, device=dev)], dim=1)
        at_last = steps[None, :] == (lengths[:, None] - 1)
        prev.append(torch.where(at_last[:, :, None], h0s[1][:, None], nxt))
    h_prev = torch.where(valid[None, :, :, None], torch.stack(prev), torch.zeros((), dtype=sd, device=dev))
    dg_t = dgates.transpose(1, 2)  # (D, 4H, B*T)
    grad_w_ih = torch.matmul(dg_t, xv)  # (D, 4H, C)
    grad_w_hh = torch.bmm(dg_t, h_prev.reshape(D, B * T, H))  # (D, 4H, H)
    w_ih = torch.stack([wd[d][0] for d in range(D)]).to(sd)
    grad_x = torch.bmm(dgates, w_ih).sum(0).reshape(B, T, C).to(x.dtype)
    grads = []
    for d in range(D):
        grads += [grad_w_ih[d].to(x.dtype), grad_w_hh[d].to(x.dtype)]
        if per == 4:
            db = dgates[d].sum(0).to(x.dtype)
            grads += [db, db.clone()]
    return grad_x, grads, dh.to(x.dtype), dc.to(x.dtype)


# ---- the multiplicative cell (mLSTM) ------------------------------------------------------------
# The same persistent design. Per step the two dependent products run one after the other inside
# the program, a barrier between them: first mh = h_{t-1} W_mh^T (stored in the workspace), then
# the gates' m W_hh^T with m = mx * mh formed on the fly from the workspace. Workspace on CUDA:
# row b * T + t of gates (D, B*T, 5H) = [i f g o | mx = W_mx x_t] (the projection of every step is
# one matrix product before the kernel, [W_ih ; W_mx] stacked) and states (D, B*T, 3H) =
# [c | h | mh].


@triton.jit
def _mlstm_fwd_kernel(
    GATES, STATES, OUT, HN, CN, H0, C0, WHH, WMH, ORDER, LEN,
    B, T, H,
    NUM_DIRS: tl.constexpr, HAS_H0: tl.constexpr, HAS_C0: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):
    tile = tl.program_id(0)
    d = tl.program_id(1)
    ranks = tile * BLOCK_B + tl.arange(0, BLOCK_B)
    rmask = ranks < B
    b = tl.load(ORDER + ranks, mask=rmask, other=0).to(tl.int64)
    L = tl.load(LEN + b, mask=rmask, other=0).to(tl.int32)
    L = tl.minimum(tl.maximum(L, 0), T)
    L = tl.where(rmask, L, 0)
    n_steps = tl.max(L, axis=0)
    acc_ty = STATES.dtype.element_ty
    w_ty = WHH.dtype.element_ty
    BT = B.to(tl.int64) * T
    g_base = GATES + d * BT * 5 * H
    s_base = STATES + d * BT * 3 * H
    w_base = WHH + d * 4 * H * H
    wm_base = WMH + d * H * H
    for s in range(0, n_steps):
        active = s < L
        t = tl.where(d == 0, s, L - 1 - s)
        tp = tl.where(d == 0, t - 1, t + 1)
        row = b * T + t
        prow = b * T + tp
        first = s == 0
        last = active & (s == L - 1)
        # mh = h_{t-1} W_mh^T
        for j0 in range(0, H, BLOCK_H):
            cols = j0 + tl.arange(0, BLOCK_H)
            cmask = cols < H
            m2 = active[:, None] & cmask[None, :]
            acc = tl.zeros([BLOCK_B, BLOCK_H], dtype=acc_ty)
            for k0 in range(0, H, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                kmask = ks < H
                mk = active[:, None] & kmask[None, :]
                h_prev = tl.load(s_base + prow[:, None] * 3 * H + H + ks[None, :], mask=mk & (s > 0), other=0.0)
                if HAS_H0:
                    h_prev += tl.load(H0 + (d * B + b)[:, None] * H + ks[None, :], mask=mk & first, other=0.0).to(acc_ty)
                wp = wm_base + cols[None, :] * H + ks[:, None]
                acc += dot(h_prev.to(w_ty), tl.load(wp, mask=kmask[:, None] & cmask[None, :], other=0.0), PRECISION)
            tl.store(s_base + row[:, None] * 3 * H + 2 * H + cols[None, :], acc, mask=m2)
        tl.debug_barrier()
        # gates += m W_hh^T, m = mx * mh; then the cell
        for j0 in range(0, H, BLOCK_H):
            cols = j0 + tl.arange(0, BLOCK_H)
            cmask = cols < H
            m2 = active[:, None] & cmask[None, :]
            gp = g_base + row[:, None] * 5 * H + cols[None, :]
            acc_i = tl.load(gp, mask=m2, other=0.0)
            acc_f = tl.load(gp + H, mask=m2, other=0.0)
            acc_g = tl.load(gp + 2 * H, mask=m2, other=0.0)
            acc_o = tl.load(gp + 3 * H, mask=m2, other=0.0)
            for k0 in range(0, H, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                kmask = ks < H
                mk = active[:, None] & kmask[None, :]
                mx = tl.load(g_base + row[:, None] * 5 * H + 4 * H + ks[None, :], mask=mk, other=0.0)
                mh = tl.load(s_base + row[:, None] * 3 * H + 2 * H + ks[None, :], mask=mk, other=0.0)
                mm = (mx * mh).to(w_ty)
                wm = kmask[:, None] & cmask[None, :]
                wp = w_base + cols[None, :] * H + ks[:, None]
                acc_i += dot(mm, tl.load(wp, mask=wm, other=0.0), PRECISION)
                acc_f += dot(mm, tl.load(wp + H * H, mask=wm, other=0.0), PRECISION)
                acc_g += dot(mm, tl.load(wp + 2 * H * H, mask=wm, other=0.0), PRECISION)
                acc_o += dot(mm, tl.load(wp + 3 * H * H, mask=wm, other=0.0), PRECISION)
            gi = tl.sigmoid(acc_i)
            gf = tl.sigmoid(acc_f)
            gg = tanh(acc_g)
            go = tl.sigmoid(acc_o)
            c_prev = tl.load(s_base + prow[:, None] * 3 * H + cols[None, :], mask=m2 & (s > 0), other=0.0)
            if HAS_C0:
                c_prev += tl.load(C0 + (d * B + b)[:, None] * H + cols[None, :], mask=m2 & first, other=0.0).to(acc_ty)
            c = gf * c_prev + gi * gg
            h = go * tanh(c)
            tl.store(gp, gi.to(acc_ty), mask=m2)
            tl.store(gp + H, gf.to(acc_ty), mask=m2)
            tl.store(gp + 2 * H, gg.to(acc_ty), mask=m2)
            tl.store(gp + 3 * H, go.to(acc_ty), mask=m2)
            sp = s_base + row[:, None] * 3 * H + cols[None, :]
            tl.store(sp, c.to(acc_ty), mask=m2)
            tl.store(sp + H, h.to(acc_ty), mask=m2)
            tl.store(OUT + (row * NUM_DIRS)[:, None] * H + d * H + cols[None, :], h.to(OUT.dtype.element_ty), mask=m2)
            ml = last[:, None] & cmask[None, :]
            tl.store(HN + (d * B + b)[:, None] * H + cols[None, :], h.to(HN.dtype.element_ty), mask=ml)
            tl.store(CN + (d * B + b)[:, None] * H + cols[None, :], c.to(CN.dtype.element_ty), mask=ml)
        tl.debug_barrier()


@triton.jit
def _mlstm_bwd_kernel(
    DGATES, DMH, DH, DC, GATES, STATES, GRAD_OUT, C0, WHH, WMH, ORDER, LEN,
    B, T, H,
    NUM_DIRS: tl.constexpr, HAS_C0: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):
    # DGATES (D, B*T, 5H) gets [dgates | dmx], DMH (D, B*T, H) dmh; DH, DC as in _lstm_bwd_kernel.
    tile = tl.program_id(0)
    d = tl.program_id(1)
    ranks = tile * BLOCK_B + tl.arange(0, BLOCK_B)
    rmask = ranks < B
    b = tl.load(ORDER + ranks, mask=rmask, other=0).to(tl.int64)
    L = tl.load(LEN + b, mask=rmask, other=0).to(tl.int32)
    L = tl.minimum(tl.maximum(L, 0), T)
    L = tl.where(rmask, L, 0)
    n_steps = tl.max(L, axis=0)
    acc_ty = STATES.dtype.element_ty
    w_ty = WHH.dtype.element_ty
    BT = B.to(tl.int64) * T
    g_base = GATES + d * BT * 5 * H
    dg_base = DGATES + d * BT * 5 * H
    dm_base = DMH + d * BT * H
    s_base = STATES + d * BT * 3 * H
    w_base = WHH + d * 4 * H * H
    wm_base = WMH + d * H * H
    st_base = (d * B + b) * H
    for i in range(0, n_steps):
        s = n_steps - 1 - i
        active = s < L
        t = tl.where(d == 0, s, L - 1 - s)
        tp = tl.where(d == 0, t - 1, t + 1)
        row = b * T + t
        prow = b * T + tp
        first = s == 0
        # The cell's gradient (the LSTM's).
        for j0 in range(0, H, BLOCK_H):
            cols = j0 + tl.arange(0, BLOCK_H)
            cmask = cols < H
            m2 = active[:, None] & cmask[None, :]
            gp = g_base + row[:, None] * 5 * H + cols[None, :]
            a_i = tl.load(gp, mask=m2, other=0.0)
            a_f = tl.load(gp + H, mask=m2, other=0.0)
            a_g = tl.load(gp + 2 * H, mask=m2, other=0.0)
            a_o = tl.load(gp + 3 * H, mask=m2, other=0.0)
            c = tl.load(s_base + row[:, None] * 3 * H + cols[None, :], mask=m2, other=0.0)
            c_prev = tl.load(s_base + prow[:, None] * 3 * H + cols[None, :], mask=m2 & (s > 0), other=0.0)
            if HAS_C0:
                c_prev += tl.load(C0 + st_base[:, None] + cols[None, :], mask=m2 & first, other=0.0).to(acc_ty)
            sp = st_base[:, None] + cols[None, :]
            dh = tl.load(DH + sp, mask=m2, other=0.0)
            dh += tl.load(GRAD_OUT + (row * NUM_DIRS)[:, None] * H + d * H + cols[None, :], mask=m2, other=0.0).to(acc_ty)
            dc = tl.load(DC + sp, mask=m2, other=0.0)
            tc = tanh(c)
            dcs = dc + dh * a_o * (1.0 - tc * tc)
            dp = dg_base + row[:, None] * 5 * H + cols[None, :]
            tl.store(dp, (dcs * a_g * a_i * (1.0 - a_i)).to(acc_ty), mask=m2)
            tl.store(dp + H, (dcs * c_prev * a_f * (1.0 - a_f)).to(acc_ty), mask=m2)
            tl.store(dp + 2 * H, (dcs * a_i * (1.0 - a_g * a_g)).to(acc_ty), mask=m2)
            tl.store(dp + 3 * H, (dh * tc * a_o * (1.0 - a_o)).to(acc_ty), mask=m2)
            tl.store(DC + sp, (dcs * a_f).to(acc_ty), mask=m2)
        tl.debug_barrier()
        # dm = dgates W_hh; dmx = dm * mh, dmh = dm * mx.
        for j0 in range(0, H, BLOCK_H):
            cols = j0 + tl.arange(0, BLOCK_H)
            cmask = cols < H
            m2 = active[:, None] & cmask[None, :]
            acc = tl.zeros([BLOCK_B, BLOCK_H], dtype=acc_ty)
            for k0 in range(0, 4 * H, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                kmask = ks < 4 * H
                dg = tl.load(dg_base + row[:, None] * 5 * H + ks[None, :], mask=active[:, None] & kmask[None, :], other=0.0)
                w = tl.load(w_base + ks[:, None] * H + cols[None, :], mask=kmask[:, None] & cmask[None, :], other=0.0)
                acc += dot(dg.to(w_ty), w, PRECISION)
            mx = tl.load(g_base + row[:, None] * 5 * H + 4 * H + cols[None, :], mask=m2, other=0.0)
            mh = tl.load(s_base + row[:, None] * 3 * H + 2 * H + cols[None, :], mask=m2, other=0.0)
            tl.store(dg_base + row[:, None] * 5 * H + 4 * H + cols[None, :], (acc * mh).to(acc_ty), mask=m2)
            tl.store(dm_base + row[:, None] * H + cols[None, :], (acc * mx).to(acc_ty), mask=m2)
        tl.debug_barrier()
        # dh_{s-1} = dmh W_mh for the running rows.
        for j0 in range(0, H, BLOCK_H):
            cols = j0 + tl.arange(0, BLOCK_H)
            cmask = cols < H
            m2 = active[:, None] & cmask[None, :]
            acc = tl.zeros([BLOCK_B, BLOCK_H], dtype=acc_ty)
            for k0 in range(0, H, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                kmask = ks < H
                v = tl.load(dm_base + row[:, None] * H + ks[None, :], mask=active[:, None] & kmask[None, :], other=0.0)
                w = tl.load(wm_base + ks[:, None] * H + cols[None, :], mask=kmask[:, None] & cmask[None, :], other=0.0)
                acc += dot(v.to(w_ty), w, PRECISION)
            tl.store(DH + st_base[:, None] + cols[None, :], acc.to(acc_ty), mask=m2)
        tl.debug_barrier()


def _mlstm_parts(wd, per: int, sd):
    """Per direction: [W_ih ; W_mx] (5H, C) and [b_ih + b_hh ; 0] (5H,) or None, in ``sd``."""
    w5 = [torch.cat([w[0], w[-2]]).to(sd) for w in wd]
    if per == 6:
        b5 = [torch.cat([w[2].to(sd) + w[3].to(sd), w[0].new_zeros(w[-1].shape[0], dtype=sd)]) for w in wd]
    else:
        b5 = None
    return w5, b5


def mlstm_fwd_triton(x, lengths, weights, h0, c0, bidirectional: bool, block_b=None, block_h=None, block_k=None,
                     f32_dot=None):
    """Triton forward; same contract as ``torch.ops.sublocal.mlstm_fwd`` (CUDA workspace layout)."""
    x = x.contiguous()
    B, T, C = x.shape
    D, per, wd = _split(list(weights), bidirectional)
    H = weights[1].shape[1]
    sd = compute_dtype(x.dtype)
    dev = x.device
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.int64, device=dev)
    out = torch.zeros(B, T, D * H, dtype=x.dtype, device=dev)
    h_n = torch.empty(D, B, H, dtype=x.dtype, device=dev)
    c_n = torch.empty(D, B, H, dtype=x.dtype, device=dev)
    gates = torch.empty(D, B * T, 5 * H, dtype=sd, device=dev)
    states = torch.empty(D, B * T, 3 * H, dtype=sd, device=dev)
    if B == 0 or T == 0:
        return out, h_n, c_n, gates, states
    x2 = x.reshape(B * T, C).to(sd)
    w5, b5 = _mlstm_parts(wd, per, sd)
    for d in range(D):
        if b5 is not None:
            torch.addmm(b5[d], x2, w5[d].t(), out=gates[d])
        else:
            torch.mm(x2, w5[d].t(), out=gates[d])
    whh = torch.stack([wd[d][1] for d in range(D)]).contiguous()
    wmh = torch.stack([wd[d][-1] for d in range(D)]).contiguous()
    lengths, order = _sorted_order(lengths, dev)
    bb, bh, bk = _blocks(H, x.dtype, block_b, block_h, block_k)
    h0c = h0.contiguous() if h0 is not None else gates
    c0c = c0.contiguous() if c0 is not None else gates
    _mlstm_fwd_kernel[(triton.cdiv(B, bb), D)](
        gates, states, out, h_n, c_n, h0c, c0c, whh, wmh, order, lengths,
        B, T, H,
        NUM_DIRS=D, HAS_H0=h0 is not None, HAS_C0=c0 is not None,
        BLOCK_B=bb, BLOCK_H=bh, BLOCK_K=bk, PRECISION=dot_precision(x.dtype, f32_dot), num_warps=4,
        num_stages=NUM_STAGES,
    )
    return out, h_n, c_n, gates, states


def mlstm_infer_triton(x, lengths, weights, h0, c0, bidirectional: bool, **blocks):
    """Triton inference forward; same contract as ``torch.ops.sublocal.mlstm_infer``.

    Runs the training forward and drops its workspace when it returns: the results are the
    training kernel's, but the (D, B*T, 5H + 3H) workspace exists during the call (a kernel
    that keeps only the state, like ``_lstm_infer_kernel``, is not written yet).
    """
    out, h_n, c_n, _, _ = mlstm_fwd_triton(x, lengths, weights, h0, c0, bidirectional, **blocks)
    return out, h_n, c_n


def mlstm_bwd_triton(grad_out, grad_h_n, grad_c_n, x, lengths, weights, h0, c0, gates, states,
                     bidirectional: bool, block_b=None, block_h=None, block_k=None, f32_dot=None):
    """Triton backward; same contract as ``torch.ops.sublocal.mlstm_bwd`` (CUDA workspace layout)."""
    x = x.contiguous()
    B, T, C = x.shape
    weights = list(weights)
    D, per, wd = _split(weights, bidirectional)
    H = weights[1].shape[1]
    sd = compute_dtype(x.dtype)
    dev = x.device
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.int64, device=dev)
    dh = grad_h_n.to(sd).contiguous().clone()
    dc = grad_c_n.to(sd).contiguous().clone()
    dgates = torch.zeros(D, B * T, 5 * H, dtype=sd, device=dev)
    dmh = torch.zeros(D, B * T, H, dtype=sd, device=dev)
    gates = gates.contiguous()
    states = states.contiguous()
    if B > 0 and T > 0:
        lengths, order = _sorted_order(lengths, dev)
        bb, bh, bk = _blocks(H, x.dtype, block_b, block_h, block_k)
        whh = torch.stack([wd[d][1] for d in range(D)]).contiguous()
        wmh = torch.stack([wd[d][-1] for d in range(D)]).contiguous()
        c0c = c0.contiguous() if c0 is not None else gates
        _mlstm_bwd_kernel[(triton.cdiv(B, bb), D)](
            dgates, dmh, dh, dc, gates, states, grad_out.contiguous(), c0c, whh, wmh, order, lengths,
            B, T, H,
            NUM_DIRS=D, HAS_C0=c0 is not None,
            BLOCK_B=bb, BLOCK_H=bh, BLOCK_K=bk, PRECISION=dot_precision(x.dtype, f32_dot), num_warps=4,
            num_stages=NUM_STAGES,
        )
    else:
        lengths = lengths.to(device=dev, dtype=torch.int64)
    # The weight and input gradients: batched matrix products over all (b, t) rows. dgates and
    # dmh are zero on padded rows; x, h_prev and m are masked there (the workspace rows at
    # padding are never written).
    steps = torch.arange(T, device=dev)
    valid = (steps[None, :] < lengths[:, None])  # (B, T)
    zero = torch.zeros((), dtype=sd, device=dev)
    xv = torch.where(valid[:, :, None], x, torch.zeros((), dtype=x.dtype, device=dev)).reshape(B * T, C).to(sd)
    st = states.view(D, B, T, 3 * H)
    hs = st[..., H:2 * H]
    h0s = h0.to(sd) if h0 is not None else torch.zeros(D, B, H, dtype=sd, device=dev)
    prev = [torch.cat([h0s[0][:, None], hs[0][:, :-1]], dim=1)]
    if D == 2:
        nxt = torch.cat([hs[1][:, 1:], torch.zeros(B, 1, H, dtype=sd, device=dev)], dim=1)
        at_last = steps[None, :] == (lengths[:, None] - 1)
        prev.append(torch.where(at_last[:, :, None], h0s[1][:, None], nxt))
    h_prev = torch.where(valid[None, :, :, None], torch.stack(prev), zero).reshape(D, B * T, H)
    m = torch.where(valid.reshape(1, B * T, 1), gates[..., 4 * H:] * states[..., 2 * H:], zero)
    dg_t = dgates.transpose(1, 2)  # (D, 5H, B*T)
    grad_wx = torch.matmul(dg_t, xv)  # (D, 5H, C): [W_ih ; W_mx]
    grad_w_hh = torch.bmm(dg_t[:, :4 * H], m)  # (D, 4H, H)
    grad_w_mh = torch.bmm(dmh.transpose(1, 2), h_prev)  # (D, H, H)
    w5, _ = _mlstm_parts(wd, per, sd)
    grad_x = torch.bmm(dgates, torch.stack(w5)).sum(0).reshape(B, T, C).to(x.dtype)
    grads = []
    for d in range(D):
        grads += [grad_wx[d, :4 * H].to(x.dtype), grad_w_hh[d].to(x.dtype)]
        if per == 6:
            db = dgates[d, :, :4 * H].sum(0).to(x.dtype)
            grads += [db, db.clone()]
        grads += [grad_wx[d, 4 * H:].to(x.dtype), grad_w_mh[d].to(x.dtype)]
    return grad_x, grads, dh.to(x.dtype), dc.to(x.dtype)
