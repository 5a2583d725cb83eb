"""Triton kernels of the LSTM family: the whole recurrence in one launch per direction pair.

One forward and one backward kernel serve both cells through ``tl.constexpr`` flags:
``MULTIPLICATIVE`` (the mLSTM: the gates see ``m = (W_mx x_t) * (W_mh h_{t-1})``, not
``h_{t-1}``) and, in the forward, ``STORE_WORKSPACE`` (training keeps the gates and states).

Design (docs/kernel-notes.md, "LSTM"): program ``(tile, direction)`` owns ``BLOCK_B`` sequences
of similar length (sorted on the device, no host sync) and loops over its longest one's steps;
each step multiplies the tile's recurrent operand by ``W_hh`` (from L2) with ``tl.dot`` in the
input dtype and float32 accumulation, applies the cell and writes ``h`` and ``c``, a barrier
making ``h`` visible to the whole program before the next step (the mLSTM: ``mh = h_{t-1}
W_mh^T`` first, a barrier, then ``m W_hh^T``). Rows past a sequence's end are masked.

Training: the input projection of every step is one matrix product before the kernel
(``[W_ih ; W_mx]`` for the mLSTM), the weight and input gradients single products after the
backward kernel. Workspace (csrc/lstm.h): row ``b * T + t`` of ``gates`` ``[i f g o (| mx)]``
and ``states`` ``[c | h (| mh)]``, float32 (float64 for float64 inputs). Inference keeps no
workspace: the projection runs per step in the kernel, ``h_{t-1}`` is read back from the output
(in the input dtype, what the product consumes), ``c`` and the mLSTM's ``m`` live in
``(D, B, H)`` buffers.

The launchers take plain tensors (any device): under ``TRITON_INTERPRET=1`` the same kernels run
on CPU tensors, as the test suite does.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from ..._checks import compute_dtype
from .._triton_utils import device_lengths, dot, dot_precision, tanh


@triton.jit
def _tile_rows(ORDER, LEN, B, T, BLOCK_B: tl.constexpr):
    """This program's sequences (batch index, length; 0 past the batch) and its step count."""
    ranks = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    rmask = ranks < B
    b = tl.load(ORDER + ranks, mask=rmask, other=0).to(tl.int64)
    L = tl.load(LEN + b, mask=rmask, other=0).to(tl.int32)
    L = tl.minimum(tl.maximum(L, 0), T)
    L = tl.where(rmask, L, 0)
    return b, L, tl.max(L, axis=0)


@triton.jit
def _program(ORDER, LEN, B, T, H, BLOCK_B: tl.constexpr, MULTIPLICATIVE: tl.constexpr):
    """This program's direction, its tile's rows, the gate and state row widths, and B * T."""
    b, L, n_steps = _tile_rows(ORDER, LEN, B, T, BLOCK_B)
    if MULTIPLICATIVE:
        GW = 5 * H  # [i f g o | mx]
        SW = 3 * H  # [c | h | mh]
    else:
        GW = 4 * H
        SW = 2 * H
    return tl.program_id(1), b, L, n_steps, GW, SW, B.to(tl.int64) * T


@triton.jit
def _step_rows(b, L, s, d, T):
    """Step s of direction d: which rows run, their (b, t) row and the previous step's."""
    active = s < L
    t = tl.where(d == 0, s, L - 1 - s)
    tp = tl.where(d == 0, t - 1, t + 1)
    return active, b * T + t, b * T + tp


@triton.jit
def _span(k0, K, BLOCK: tl.constexpr):
    """Indices [k0, k0 + BLOCK) of a dimension of size K, and which of them exist."""
    ks = k0 + tl.arange(0, BLOCK)
    return ks, ks < K


@triton.jit
def _unit_block(j0, active, H, BLOCK_H: tl.constexpr):
    """Hidden units [j0, j0 + BLOCK_H): their indices, which exist, and which (row, unit) run."""
    cols = j0 + tl.arange(0, BLOCK_H)
    cmask = cols < H
    return cols, cmask, active[:, None] & cmask[None, :]


@triton.jit
def _h_prev(STATES, OUT, H0, s_base, prow, hrow, d, H, ks, mk, s, SW, w_ty,
            NUM_DIRS: tl.constexpr, HAS_H0: tl.constexpr, STORE_WORKSPACE: tl.constexpr):
    """h_{t-1} for the rows' K columns ``ks`` in the weights' dtype (h0 at the first step)."""
    first = s == 0
    if STORE_WORKSPACE:
        hp = tl.load(s_base + prow[:, None] * SW + H + ks[None, :], mask=mk & (s > 0), other=0.0)
        if HAS_H0:
            hp += tl.load(H0 + hrow[:, None] * H + ks[None, :], mask=mk & first, other=0.0).to(hp.dtype)
        hk = hp.to(w_ty)
    else:
        hk = tl.load(OUT + (prow * NUM_DIRS)[:, None] * H + d * H + ks[None, :], mask=mk & (s > 0),
                     other=0.0).to(w_ty)
        if HAS_H0:
            hk += tl.load(H0 + hrow[:, None] * H + ks[None, :], mask=mk & first, other=0.0).to(w_ty)
    return hk


@triton.jit
def _recurrent_fwd_kernel(
    X, WIN, BIAS, GATES, STATES, MBUF, OUT, HN, CN, H0, C0, WHH, WMH, ORDER, LEN,
    B, T, C, H,
    MULTIPLICATIVE: tl.constexpr, STORE_WORKSPACE: tl.constexpr,
    NUM_DIRS: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr, HAS_C0: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr,
    PRECISION: tl.constexpr, PROJ_PRECISION: tl.constexpr,
):
    # STORE_WORKSPACE: GATES and STATES are the workspace, GATES holding the input projections on
    # entry; X, WIN, BIAS and MBUF are unused. Otherwise STATES is the (D, B, H) cell state, MBUF
    # the mLSTM's (D, B, H) m, and the projection x_t WIN^T + BIAS runs per step (WIN (D, GW, C),
    # BIAS (D, GW), GW the gate width: [W_ih ; W_mx] for the mLSTM); GATES is unused.
    d, b, L, n_steps, GW, SW, BT = _program(ORDER, LEN, B, T, H, BLOCK_B, MULTIPLICATIVE)
    acc_ty = STATES.dtype.element_ty
    w_ty = WHH.dtype.element_ty
    g_base = GATES + d * BT * GW
    s_base = STATES + d * BT * SW
    w_base = WHH + d * 4 * H * H
    wm_base = WMH + d * H * H
    wi_base = WIN + d * GW * C
    hrow = d * B + b  # rows of H0, C0, HN, CN and the inference buffers
    for s in range(0, n_steps):
        active, row, prow = _step_rows(b, L, s, d, T)
        first = s == 0
        last = active & (s == L - 1)
        if MULTIPLICATIVE:
            # mh = h_{t-1} W_mh^T for every unit before any gate reads m = mx * mh.
            for j0 in range(0, H, BLOCK_H):
                cols, cmask, m2 = _unit_block(j0, active, H, BLOCK_H)
                acc = tl.zeros([BLOCK_B, BLOCK_H], dtype=acc_ty)
                for k0 in range(0, H, BLOCK_K):
                    ks, kmask = _span(k0, H, BLOCK_K)
                    hk = _h_prev(STATES, OUT, H0, s_base, prow, hrow, d, H, ks, active[:, None] & kmask[None, :], s,
                                 SW, w_ty, NUM_DIRS, HAS_H0, STORE_WORKSPACE)
                    wp = wm_base + cols[None, :] * H + ks[:, None]
                    acc += dot(hk, tl.load(wp, mask=kmask[:, None] & cmask[None, :], other=0.0), PRECISION)
                if STORE_WORKSPACE:
                    tl.store(s_base + row[:, None] * SW + 2 * H + cols[None, :], acc, mask=m2)
                else:
                    mx = tl.zeros([BLOCK_B, BLOCK_H], dtype=acc_ty)
                    for q0 in range(0, C, BLOCK_C):
                        cs, qmask = _span(q0, C, BLOCK_C)
                        xk = tl.load(X + row[:, None] * C + cs[None, :], mask=active[:, None] & qmask[None, :],
                                     other=0.0).to(acc_ty)
                        wp = wi_base + (4 * H + cols[None, :]) * C + cs[:, None]
                        mx += dot(xk, tl.load(wp, mask=qmask[:, None] & cmask[None, :], other=0.0), PROJ_PRECISION)
                    tl.store(MBUF + hrow[:, None] * H + cols[None, :], (mx * acc).to(acc_ty), mask=m2)
            tl.debug_barrier()
        for j0 in range(0, H, BLOCK_H):
            cols, cmask, m2 = _unit_block(j0, active, H, BLOCK_H)
            gp = g_base + row[:, None] * GW + cols[None, :]
            if STORE_WORKSPACE:
                acc_i = tl.load(gp, mask=m2, other=0.0)
                acc_f = tl.load(gp + H, mask=m2, other=0.0)
                acc_g = tl.load(gp + 2 * H, mask=m2, other=0.0)
                acc_o = tl.load(gp + 3 * H, mask=m2, other=0.0)
            else:
                acc_i = tl.zeros([BLOCK_B, BLOCK_H], dtype=acc_ty)
                acc_f = tl.zeros([BLOCK_B, BLOCK_H], dtype=acc_ty)
                acc_g = tl.zeros([BLOCK_B, BLOCK_H], dtype=acc_ty)
                acc_o = tl.zeros([BLOCK_B, BLOCK_H], dtype=acc_ty)
                if HAS_BIAS:
                    bp = BIAS + d * GW + cols
                    acc_i += tl.load(bp, mask=cmask, other=0.0)[None, :]
                    acc_f += tl.load(bp + H, mask=cmask, other=0.0)[None, :]
                    acc_g += tl.load(bp + 2 * H, mask=cmask, other=0.0)[None, :]
                    acc_o += tl.load(bp + 3 * H, mask=cmask, other=0.0)[None, :]
                for q0 in range(0, C, BLOCK_C):
                    cs, qmask = _span(q0, C, BLOCK_C)
                    xk = tl.load(X + row[:, None] * C + cs[None, :], mask=active[:, None] & qmask[None, :],
                                 other=0.0).to(acc_ty)
                    wm = qmask[:, None] & cmask[None, :]
                    wp = wi_base + cols[None, :] * C + cs[:, None]
                    acc_i += dot(xk, tl.load(wp, mask=wm, other=0.0), PROJ_PRECISION)
                    acc_f += dot(xk, tl.load(wp + H * C, mask=wm, other=0.0), PROJ_PRECISION)
                    acc_g += dot(xk, tl.load(wp + 2 * H * C, mask=wm, other=0.0), PROJ_PRECISION)
                    acc_o += dot(xk, tl.load(wp + 3 * H * C, mask=wm, other=0.0), PROJ_PRECISION)
            for k0 in range(0, H, BLOCK_K):
                ks, kmask = _span(k0, H, BLOCK_K)
                mk = active[:, None] & kmask[None, :]
                # The recurrent operand: h_{t-1} (LSTM) or m = mx * mh (mLSTM).
                if MULTIPLICATIVE:
                    if STORE_WORKSPACE:
                        mx = tl.load(g_base + row[:, None] * GW + 4 * H + ks[None, :], mask=mk, other=0.0)
                        mh = tl.load(s_base + row[:, None] * SW + 2 * H + ks[None, :], mask=mk, other=0.0)
                        a = (mx * mh).to(w_ty)
                    else:
                        a = tl.load(MBUF + hrow[:, None] * H + ks[None, :], mask=mk, other=0.0).to(w_ty)
                else:
                    a = _h_prev(STATES, OUT, H0, s_base, prow, hrow, d, H, ks, mk, s, SW, w_ty, NUM_DIRS, HAS_H0,
                                STORE_WORKSPACE)
                wm = kmask[:, None] & cmask[None, :]
                wp = w_base + cols[None, :] * H + ks[:, None]
                acc_i += dot(a, tl.load(wp, mask=wm, other=0.0), PRECISION)
                acc_f += dot(a, tl.load(wp + H * H, mask=wm, other=0.0), PRECISION)
                acc_g += dot(a, tl.load(wp + 2 * H * H, mask=wm, other=0.0), PRECISION)
                acc_o += dot(a, tl.load(wp + 3 * H * H, mask=wm, other=0.0), PRECISION)
            gi = tl.sigmoid(acc_i)
            gf = tl.sigmoid(acc_f)
            gg = tanh(acc_g)
            go = tl.sigmoid(acc_o)
            if STORE_WORKSPACE:
                c_prev = tl.load(s_base + prow[:, None] * SW + cols[None, :], mask=m2 & (s > 0), other=0.0)
            else:
                cp = STATES + hrow[:, None] * H + cols[None, :]
                c_prev = tl.load(cp, mask=m2 & (s > 0), other=0.0)
            if HAS_C0:
                c_prev += tl.load(C0 + hrow[:, None] * H + cols[None, :], mask=m2 & first, other=0.0).to(acc_ty)
            c = gf * c_prev + gi * gg
            h = go * tanh(c)
            if STORE_WORKSPACE:
                tl.store(gp, gi.to(acc_ty), mask=m2)
                tl.store(gp + H, gf.to(acc_ty), mask=m2)
                tl.store(gp + 2 * H, gg.to(acc_ty), mask=m2)
                tl.store(gp + 3 * H, go.to(acc_ty), mask=m2)
                sp = s_base + row[:, None] * SW + cols[None, :]
                tl.store(sp, c.to(acc_ty), mask=m2)
                tl.store(sp + H, h.to(acc_ty), mask=m2)
            else:
                tl.store(cp, c.to(acc_ty), mask=m2)
            tl.store(OUT + (row * NUM_DIRS)[:, None] * H + d * H + cols[None, :], h.to(OUT.dtype.element_ty), mask=m2)
            ml = last[:, None] & cmask[None, :]
            tl.store(HN + hrow[:, None] * H + cols[None, :], h.to(HN.dtype.element_ty), mask=ml)
            tl.store(CN + hrow[:, None] * H + cols[None, :], c.to(CN.dtype.element_ty), mask=ml)
        # This step's h (global memory) must be visible to every thread before the next step.
        tl.debug_barrier()


@triton.jit
def _recurrent_bwd_kernel(
    DGATES, DMH, DH, DC, GATES, STATES, GRAD_OUT, C0, WHH, WMH, ORDER, LEN,
    B, T, H,
    MULTIPLICATIVE: tl.constexpr, NUM_DIRS: tl.constexpr, HAS_C0: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):
    # DH, DC (D, B, H) hold the gradients reaching h_s and c_s: grad_h_n and grad_c_n on entry
    # (a sequence's rows are untouched until its last step), grad_h0 and grad_c0 on exit.
    # DGATES gets the gates' gradients (mLSTM: [dgates | dmx], D, B*T, 5H), DMH the mLSTM's dmh.
    d, b, L, n_steps, GW, SW, BT = _program(ORDER, LEN, B, T, H, BLOCK_B, MULTIPLICATIVE)
    acc_ty = STATES.dtype.element_ty
    w_ty = WHH.dtype.element_ty
    g_base = GATES + d * BT * GW
    dg_base = DGATES + d * BT * GW
    dm_base = DMH + d * BT * H
    s_base = STATES + d * BT * SW
    w_base = WHH + d * 4 * H * H
    wm_base = WMH + d * H * H
    st_base = (d * B + b) * H
    for i in range(0, n_steps):
        s = n_steps - 1 - i
        active, row, prow = _step_rows(b, L, s, d, T)
        first = s == 0
        # The cell's gradient, one block of hidden units at a time.
        for j0 in range(0, H, BLOCK_H):
            cols, cmask, m2 = _unit_block(j0, active, H, BLOCK_H)
            gp = g_base + row[:, None] * GW + cols[None, :]
            a_i = tl.load(gp, mask=m2, other=0.0)
            a_f = tl.load(gp + H, mask=m2, other=0.0)
            a_g = tl.load(gp + 2 * H, mask=m2, other=0.0)
            a_o = tl.load(gp + 3 * H, mask=m2, other=0.0)
            c = tl.load(s_base + row[:, None] * SW + cols[None, :], mask=m2, other=0.0)
            c_prev = tl.load(s_base + prow[:, None] * SW + cols[None, :], mask=m2 & (s > 0), other=0.0)
            if HAS_C0:
                c_prev += tl.load(C0 + st_base[:, None] + cols[None, :], mask=m2 & first, other=0.0).to(acc_ty)
            sp = st_base[:, None] + cols[None, :]
            dh = tl.load(DH + sp, mask=m2, other=0.0)
            dh += tl.load(GRAD_OUT + (row * NUM_DIRS)[:, None] * H + d * H + cols[None, :], mask=m2, other=0.0).to(acc_ty)
            dc = tl.load(DC + sp, mask=m2, other=0.0)
            tc = tanh(c)
            dcs = dc + dh * a_o * (1.0 - tc * tc)
            dp = dg_base + row[:, None] * GW + cols[None, :]
            tl.store(dp, (dcs * a_g * a_i * (1.0 - a_i)).to(acc_ty), mask=m2)
            tl.store(dp + H, (dcs * c_prev * a_f * (1.0 - a_f)).to(acc_ty), mask=m2)
            tl.store(dp + 2 * H, (dcs * a_i * (1.0 - a_g * a_g)).to(acc_ty), mask=m2)
            tl.store(dp + 3 * H, (dh * tc * a_o * (1.0 - a_o)).to(acc_ty), mask=m2)
            tl.store(DC + sp, (dcs * a_f).to(acc_ty), mask=m2)
        tl.debug_barrier()
        # dgates W_hh for the running rows: LSTM dh_{s-1} (finished rows keep grad_h_n until their
        # step); mLSTM dm, then dmx = dm * mh and dmh = dm * mx.
        for j0 in range(0, H, BLOCK_H):
            cols, cmask, m2 = _unit_block(j0, active, H, BLOCK_H)
            acc = tl.zeros([BLOCK_B, BLOCK_H], dtype=acc_ty)
            for k0 in range(0, 4 * H, BLOCK_K):
                ks, kmask = _span(k0, 4 * H, BLOCK_K)
                dg = tl.load(dg_base + row[:, None] * GW + ks[None, :], mask=active[:, None] & kmask[None, :], other=0.0)
                w = tl.load(w_base + ks[:, None] * H + cols[None, :], mask=kmask[:, None] & cmask[None, :], other=0.0)
                acc += dot(dg.to(w_ty), w, PRECISION)
            if MULTIPLICATIVE:
                mx = tl.load(g_base + row[:, None] * GW + 4 * H + cols[None, :], mask=m2, other=0.0)
                mh = tl.load(s_base + row[:, None] * SW + 2 * H + cols[None, :], mask=m2, other=0.0)
                tl.store(dg_base + row[:, None] * GW + 4 * H + cols[None, :], (acc * mh).to(acc_ty), mask=m2)
                tl.store(dm_base + row[:, None] * H + cols[None, :], (acc * mx).to(acc_ty), mask=m2)
            else:
                tl.store(DH + st_base[:, None] + cols[None, :], acc.to(acc_ty), mask=m2)
        tl.debug_barrier()
        if MULTIPLICATIVE:
            # dh_{s-1} = dmh W_mh for the running rows.
            for j0 in range(0, H, BLOCK_H):
                cols, cmask, m2 = _unit_block(j0, active, H, BLOCK_H)
                acc = tl.zeros([BLOCK_B, BLOCK_H], dtype=acc_ty)
                for k0 in range(0, H, BLOCK_K):
                    ks, kmask = _span(k0, H, BLOCK_K)
                    v = tl.load(dm_base + row[:, None] * H + ks[None, :], mask=active[:, None] & kmask[None, :],
                                other=0.0)
                    w = tl.load(wm_base + ks[:, None] * H + cols[None, :], mask=kmask[:, None] & cmask[None, :],
                                other=0.0)
                    acc += dot(v.to(w_ty), w, PRECISION)
                tl.store(DH + st_base[:, None] + cols[None, :], acc.to(acc_ty), mask=m2)
            tl.debug_barrier()


NUM_STAGES = 3  # Triton's default for sm_90, set explicitly so the static check compiles what runs


def _blocks(H: int, dtype: torch.dtype, block_b: int | None, block_h: int | None, block_k: int | None):
    # tl.dot needs every dimension >= 16. BLOCK_B=16: sorted tiles of 16 similar lengths keep
    # masked lanes few; BLOCK_H=BLOCK_K=64 keeps four (16, 64) float32 accumulators per program.
    # float64 stops at 32: its forward at 64 x 64 with 3 stages needs 294,912 bytes of shared
    # memory, over sm_90's 232,448 per block (fails at launch); 81,920 at 32 (benchmarks/sm90_static.py).
    top = 32 if dtype == torch.float64 else 64
    bh = block_h or max(16, min(top, triton.next_power_of_2(H)))
    bk = block_k or max(16, min(top, triton.next_power_of_2(H)))
    return block_b or 16, bh, bk


class _Args:
    """One call's inputs in the kernels' form: per-direction weights stacked, lengths and the
    length-sorted order on the device, the state dtype ``sd``."""

    def __init__(self, x, lengths, weights, bidirectional: bool, multiplicative: bool):
        self.x = x.contiguous()
        self.B, self.T, self.C = self.x.shape
        weights = list(weights)
        self.D = 2 if bidirectional else 1
        self.per = len(weights) // self.D
        self.wd = [weights[d * self.per:(d + 1) * self.per] for d in range(self.D)]
        self.H = weights[1].shape[1]
        self.mul = multiplicative
        self.has_bias = self.per == (6 if multiplicative else 4)
        self.sd = compute_dtype(self.x.dtype)
        self.dev = self.x.device
        if lengths is None:
            lengths = torch.full((self.B,), self.T, dtype=torch.int64, device=self.dev)
        self.lengths = lengths
        self.gw = (5 if multiplicative else 4) * self.H  # gate width: [i f g o (| mx)]
        self.sw = (3 if multiplicative else 2) * self.H  # state width: [c | h (| mh)]

    def empty(self) -> bool:
        return self.B == 0 or self.T == 0

    def sort(self):
        """Lengths as int64 on the device, and the longest-first order (no host sync)."""
        self.lengths = device_lengths(self.lengths, self.dev)
        self.order = torch.sort(self.lengths, descending=True, stable=True).indices.contiguous()

    def w_in(self) -> list[torch.Tensor]:
        """Per direction, the input projection's weights in ``sd``: W_ih (4H, C), or [W_ih ; W_mx]."""
        return [(torch.cat([w[0], w[-2]]) if self.mul else w[0]).to(self.sd) for w in self.wd]

    def bias(self) -> list[torch.Tensor] | None:
        """Per direction, b_ih + b_hh in ``sd`` (a zero row block under W_mx for the mLSTM), or None."""
        if not self.has_bias:
            return None
        b = [w[2].to(self.sd) + w[3].to(self.sd) for w in self.wd]
        return [torch.cat([v, v.new_zeros(self.H)]) for v in b] if self.mul else b

    def stacked(self, k: int) -> torch.Tensor:
        return torch.stack([w[k] for w in self.wd]).contiguous()


def _forward(x, lengths, weights, h0, c0, bidirectional: bool, *, multiplicative: bool, train: bool,
             block_b=None, block_h=None, block_k=None, f32_dot=None):
    a = _Args(x, lengths, weights, bidirectional, multiplicative)
    B, T, C, D, H, sd, dev = a.B, a.T, a.C, a.D, a.H, a.sd, a.dev
    out = torch.zeros(B, T, D * H, dtype=a.x.dtype, device=dev)
    h_n = torch.empty(D, B, H, dtype=a.x.dtype, device=dev)
    c_n = torch.empty(D, B, H, dtype=a.x.dtype, device=dev)
    if train:
        # The workspace rows at padding are never written: the backward masks them (torch.where)
        # before any product reads them, so they need no zero fill.
        gates = torch.empty(D, B * T, a.gw, dtype=sd, device=dev)
        states = torch.empty(D, B * T, a.sw, dtype=sd, device=dev)
        if a.empty():
            return out, h_n, c_n, gates, states
        x2 = a.x.reshape(B * T, C).to(sd)
        bias = a.bias()
        for d, w in enumerate(a.w_in()):
            if bias is not None:
                torch.addmm(bias[d], x2, w.t(), out=gates[d])
            else:
                torch.mm(x2, w.t(), out=gates[d])
        x_in, w_in, b_in, mbuf = gates, gates, gates, gates  # unused in training
    else:
        if a.empty():
            return out, h_n, c_n
        states = torch.empty(D, B, H, dtype=sd, device=dev)  # the cell state
        gates = states  # unused
        mbuf = torch.empty(D, B, H, dtype=sd, device=dev) if multiplicative else states
        x_in = a.x
        w_in = torch.stack(a.w_in()).contiguous()
        bias = a.bias()
        b_in = torch.stack(bias).contiguous() if bias is not None else states
    whh = a.stacked(1)
    wmh = a.stacked(a.per - 1) if multiplicative else whh
    a.sort()
    bb, bh, bk = _blocks(H, a.x.dtype, block_b, block_h, block_k)
    bc = max(16, min(64, triton.next_power_of_2(C)))
    h0c = h0.contiguous() if h0 is not None else states
    c0c = c0.contiguous() if c0 is not None else states
    _recurrent_fwd_kernel[(triton.cdiv(B, bb), D)](
        x_in, w_in, b_in, gates, states, mbuf, out, h_n, c_n, h0c, c0c, whh, wmh, a.order, a.lengths,
        B, T, C, H,
        MULTIPLICATIVE=multiplicative, STORE_WORKSPACE=train,
        NUM_DIRS=D, HAS_BIAS=a.has_bias, HAS_H0=h0 is not None, HAS_C0=c0 is not None,
        BLOCK_B=bb, BLOCK_H=bh, BLOCK_K=bk, BLOCK_C=bc, PRECISION=dot_precision(a.x.dtype, f32_dot),
        PROJ_PRECISION=dot_precision(sd, f32_dot), num_warps=4, num_stages=NUM_STAGES,
    )
    return (out, h_n, c_n, gates, states) if train else (out, h_n, c_n)


def _backward(grad_out, grad_h_n, grad_c_n, x, lengths, weights, h0, c0, gates, states, bidirectional: bool, *,
              multiplicative: bool, block_b=None, block_h=None, block_k=None, f32_dot=None):
    a = _Args(x, lengths, weights, bidirectional, multiplicative)
    B, T, C, D, H, sd, dev = a.B, a.T, a.C, a.D, a.H, a.sd, a.dev
    x = a.x
    dh = grad_h_n.to(sd).contiguous().clone()
    dc = grad_c_n.to(sd).contiguous().clone()
    dgates = torch.zeros(D, B * T, a.gw, dtype=sd, device=dev)
    dmh = torch.zeros(D, B * T, H, dtype=sd, device=dev) if multiplicative else dgates
    gates = gates.contiguous()
    states = states.contiguous()
    if not a.empty():
        a.sort()
        bb, bh, bk = _blocks(H, x.dtype, block_b, block_h, block_k)
        whh = a.stacked(1)
        wmh = a.stacked(a.per - 1) if multiplicative else whh
        c0c = c0.contiguous() if c0 is not None else gates
        _recurrent_bwd_kernel[(triton.cdiv(B, bb), D)](
            dgates, dmh, dh, dc, gates, states, grad_out.contiguous(), c0c, whh, wmh, a.order, a.lengths,
            B, T, H,
            MULTIPLICATIVE=multiplicative, NUM_DIRS=D, HAS_C0=c0 is not None,
            BLOCK_B=bb, BLOCK_H=bh, BLOCK_K=bk, PRECISION=dot_precision(x.dtype, f32_dot), num_warps=4,
            num_stages=NUM_STAGES,
        )
        lengths = a.lengths
    else:
        lengths = a.lengths.to(device=dev, dtype=torch.int64)
    # The weight and input gradients: batched matrix products over all (b, t) rows. dgates (and
    # dmh) are zero on padded rows; x, h_prev (and m) are masked there, so that no NaN in padding
    # leaks in (the workspace rows at padding are never written).
    steps = torch.arange(T, device=dev)
    valid = (steps[None, :] < lengths[:, None])  # (B, T)
    zero = torch.zeros((), dtype=sd, device=dev)
    xv = torch.where(valid[:, :, None], x, torch.zeros((), dtype=x.dtype, device=dev)).reshape(B * T, C).to(sd)
    hs = states.view(D, B, T, a.sw)[..., H:2 * H]
    h0s = h0.to(sd) if h0 is not None else torch.zeros(D, B, H, dtype=sd, device=dev)
    prev = [torch.cat([h0s[0][:, None], hs[0][:, :-1]], dim=1)]
    if D == 2:
        nxt = torch.cat([hs[1][:, 1:], torch.zeros(B, 1, H, dtype=sd, device=dev)], dim=1)
        at_last = steps[None, :] == (lengths[:, None] - 1)
        prev.append(torch.where(at_last[:, :, None], h0s[1][:, None], nxt))
    h_prev = torch.where(valid[None, :, :, None], torch.stack(prev), zero).reshape(D, B * T, H)
    dg_t = dgates.transpose(1, 2)  # (D, GW, B*T)
    grad_w_in = torch.matmul(dg_t, xv)  # (D, GW, C): W_ih, or [W_ih ; W_mx]
    if multiplicative:
        m = torch.where(valid.reshape(1, B * T, 1), gates[..., 4 * H:] * states[..., 2 * H:], zero)
        grad_w_hh = torch.bmm(dg_t[:, :4 * H], m)  # (D, 4H, H)
        grad_w_mh = torch.bmm(dmh.transpose(1, 2), h_prev)  # (D, H, H)
    else:
        grad_w_hh = torch.bmm(dg_t, h_prev)  # (D, 4H, H)
    grad_x = torch.bmm(dgates, torch.stack(a.w_in())).sum(0).reshape(B, T, C).to(x.dtype)
    grads = []
    for d in range(D):
        grads += [grad_w_in[d, :4 * H].to(x.dtype), grad_w_hh[d].to(x.dtype)]
        if a.has_bias:
            db = dgates[d, :, :4 * H].sum(0).to(x.dtype)
            grads += [db, db.clone()]
        if multiplicative:
            grads += [grad_w_in[d, 4 * H:].to(x.dtype), grad_w_mh[d].to(x.dtype)]
    return grad_x, grads, dh.to(x.dtype), dc.to(x.dtype)


# The launchers, each with the contract of the torch.ops.sublocal op of its name (the CUDA workspace
# layout); keyword options block_b, block_h, block_k (tile sizes) and f32_dot (dot policy).
# Inference allocates only the outputs and (D, B, H) buffers (c, and the mLSTM's m).
lstm_fwd_triton = functools.partial(_forward, multiplicative=False, train=True)
lstm_infer_triton = functools.partial(_forward, multiplicative=False, train=False)
lstm_bwd_triton = functools.partial(_backward, multiplicative=False)
mlstm_fwd_triton = functools.partial(_forward, multiplicative=True, train=True)
mlstm_infer_triton = functools.partial(_forward, multiplicative=True, train=False)
mlstm_bwd_triton = functools.partial(_backward, multiplicative=True)
