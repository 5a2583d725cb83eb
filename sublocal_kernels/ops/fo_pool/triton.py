"""fo-pool Triton kernels: a chunked parallel scan over time.

Design (docs/kernel-notes.md): ``c_t = f_t c_{t-1} + (1 - f_t) z_t`` is the affine map
``c -> f c + (1 - f) z``; maps compose associatively, so a ``(BLOCK_T, BLOCK_D)`` tile of
steps is scanned with ``tl.associative_scan`` and the state is carried from tile to tile.
Each program owns one (sequence, channel block) and walks the tiles of one *segment* of
time. When there are few (sequence, channel block) pairs (``long1``: B=1, D=256), time is
split into segments so the whole GPU works: a first pass composes each segment's maps, a
small sequential pass over segments turns them into each segment's starting state, and the
main pass rescans each segment from its start. Tiles past a sequence's length are identity
maps ``(1, 0)``, so states pass through padding unchanged.

The forward stores the state at every tile start (``checkpoints``, one row per ``chunk``
steps); the backward rescans each tile's states from them instead of reading a saved
``(B, T, D)`` state tensor. The backward recurrence ``dc_s = g_s + f_{s+1} dc_{s+1}`` is the
same kind of affine scan, run in reverse (``reverse=True``: the accumulated later steps are
the first argument of the combine, i.e. flip, scan, flip).

The launchers take plain tensors (any device), so under ``TRITON_INTERPRET=1`` the same
kernels run on CPU tensors; the test suite does exactly that.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ..._checks import compute_dtype
from .._triton_utils import device_lengths, sm_count

BLOCK_D_MAX = 64


@triton.jit
def _affine_combine(a1, b1, a2, b2):
    # (x -> a1 x + b1) followed by (x -> a2 x + b2)
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _row(x, rows, r):
    # Row r of a (BLOCK_T, BLOCK_D) tile, as a (BLOCK_D,) vector.
    return tl.sum(tl.where(rows[:, None] == r, x, 0.0), axis=0)


@triton.jit
def _fo_pool_fwd_kernel(
    F, Z, O, LEN, INIT, SEG_IN, H, CLAST, CKPT, AGG_A, AGG_B,
    T, D, NC, TILES_PER_SEG, NSEG,
    HAS_OUTPUT: tl.constexpr, HAS_LENGTHS: tl.constexpr, HAS_INIT: tl.constexpr,
    REVERSE: tl.constexpr, AGGREGATE_ONLY: tl.constexpr, USE_SEG_IN: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    seg = tl.program_id(1)
    nd = tl.cdiv(D, BLOCK_D)
    b = (pid // nd).to(tl.int64)
    offs_d = (pid % nd) * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = offs_d < D
    rows = tl.arange(0, BLOCK_T)
    acc_ty = CKPT.dtype.element_ty
    if HAS_LENGTHS:
        L = tl.minimum(tl.maximum(tl.load(LEN + b).to(tl.int32), 0), T)
    else:
        L = T + 0 * pid
    base = b * T * D
    tile_lo = seg * TILES_PER_SEG
    tile_hi = tl.minimum(tile_lo + TILES_PER_SEG, tl.cdiv(L, BLOCK_T))
    seg_off = (b * NSEG + seg) * D + offs_d

    agg_a = tl.full([BLOCK_D], 1.0, acc_ty)
    agg_b = tl.zeros([BLOCK_D], acc_ty)
    if USE_SEG_IN:
        state = tl.load(SEG_IN + seg_off, mask=dmask, other=0.0).to(acc_ty)
    elif HAS_INIT:
        state = tl.load(INIT + b * D + offs_d, mask=dmask, other=0.0).to(acc_ty)
    else:
        state = tl.zeros([BLOCK_D], acc_ty)

    for tile in range(tile_lo, tile_hi):
        s = tile * BLOCK_T + rows
        smask = s < L
        if REVERSE:
            t = L - 1 - s
        else:
            t = s
        off = base + t.to(tl.int64)[:, None] * D + offs_d[None, :]
        m2 = smask[:, None] & dmask[None, :]
        f = tl.load(F + off, mask=m2, other=1.0).to(acc_ty)
        z = tl.load(Z + off, mask=m2, other=0.0).to(acc_ty)
        a_s, b_s = tl.associative_scan((f, (1.0 - f) * z), 0, _affine_combine)
        if AGGREGATE_ONLY:
            a_t = _row(a_s, rows, BLOCK_T - 1)
            b_t = _row(b_s, rows, BLOCK_T - 1)
            agg_a, agg_b = agg_a * a_t, a_t * agg_b + b_t
        else:
            tl.store(CKPT + (b * NC + tile) * D + offs_d, state, mask=dmask)
            c = a_s * state[None, :] + b_s
            if HAS_OUTPUT:
                o = tl.load(O + off, mask=m2, other=0.0).to(acc_ty)
                hval = o * c
            else:
                hval = c
            tl.store(H + off, hval.to(H.dtype.element_ty), mask=m2)
            state = _row(c, rows, BLOCK_T - 1)

    if AGGREGATE_ONLY:
        tl.store(AGG_A + seg_off, agg_a, mask=dmask)
        tl.store(AGG_B + seg_off, agg_b, mask=dmask)
    else:
        if seg == NSEG - 1:
            tl.store(CLAST + b * D + offs_d, state.to(CLAST.dtype.element_ty), mask=dmask)
            for k in range(tl.cdiv(L, BLOCK_T), NC):
                tl.store(CKPT + (b * NC + k) * D + offs_d, state, mask=dmask)
        # Zero h at time positions in [L, T), each segment its own range of tiles.
        zeros = tl.zeros([BLOCK_T, BLOCK_D], H.dtype.element_ty)
        for tile in range(tl.maximum(tile_lo, L // BLOCK_T), tl.minimum(tile_lo + TILES_PER_SEG, tl.cdiv(T, BLOCK_T))):
            t = tile * BLOCK_T + rows
            m2 = ((t >= L) & (t < T))[:, None] & dmask[None, :]
            tl.store(H + base + t.to(tl.int64)[:, None] * D + offs_d[None, :], zeros, mask=m2)


@triton.jit
def _fo_pool_bwd_kernel(
    DH, DC, F, Z, O, LEN, CKPT, SEG_IN, DF, DZ, DO, DINIT, AGG_A, AGG_B,
    T, D, NC, TILES_PER_SEG, NSEG,
    HAS_OUTPUT: tl.constexpr, HAS_LENGTHS: tl.constexpr, REVERSE: tl.constexpr,
    AGGREGATE_ONLY: tl.constexpr, USE_SEG_IN: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
):
    # e_s = dc_s obeys e_s = g_s + f~_{s+1} e_{s+1}, g_s = dh_s o_s, with f~_s = f_s for s < L,
    # 1 past the end, and e_s = grad_c_last for s >= L. grad_initial = f~_0 e_0.
    pid = tl.program_id(0)
    seg = tl.program_id(1)
    nd = tl.cdiv(D, BLOCK_D)
    b = (pid // nd).to(tl.int64)
    offs_d = (pid % nd) * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = offs_d < D
    rows = tl.arange(0, BLOCK_T)
    acc_ty = CKPT.dtype.element_ty
    if HAS_LENGTHS:
        L = tl.minimum(tl.maximum(tl.load(LEN + b).to(tl.int32), 0), T)
    else:
        L = T + 0 * pid
    base = b * T * D
    tile_lo = seg * TILES_PER_SEG
    tile_hi = tl.minimum(tile_lo + TILES_PER_SEG, tl.cdiv(L, BLOCK_T))
    seg_off = (b * NSEG + seg) * D + offs_d

    agg_a = tl.full([BLOCK_D], 1.0, acc_ty)
    agg_b = tl.zeros([BLOCK_D], acc_ty)
    if USE_SEG_IN:
        carry = tl.load(SEG_IN + seg_off, mask=dmask, other=0.0).to(acc_ty)
    else:
        carry = tl.load(DC + b * D + offs_d, mask=dmask, other=0.0).to(acc_ty)

    for i in range(0, tile_hi - tile_lo):
        tile = tile_hi - 1 - i
        s = tile * BLOCK_T + rows
        smask = s < L
        s1 = s + 1
        if REVERSE:
            t = L - 1 - s
            t1 = L - 1 - s1
        else:
            t = s
            t1 = s1
        off = base + t.to(tl.int64)[:, None] * D + offs_d[None, :]
        m2 = smask[:, None] & dmask[None, :]
        m1 = (s1 < L)[:, None] & dmask[None, :]
        dh = tl.load(DH + off, mask=m2, other=0.0).to(acc_ty)
        if HAS_OUTPUT:
            o = tl.load(O + off, mask=m2, other=0.0).to(acc_ty)
            g = dh * o
        else:
            g = dh
        f_next = tl.load(F + base + t1.to(tl.int64)[:, None] * D + offs_d[None, :], mask=m1, other=1.0).to(acc_ty)
        a_r, b_r = tl.associative_scan((f_next, g), 0, _affine_combine, reverse=True)
        if AGGREGATE_ONLY:
            a_t = _row(a_r, rows, 0)
            b_t = _row(b_r, rows, 0)
            agg_a, agg_b = a_t * agg_a, a_t * agg_b + b_t
        else:
            e = a_r * carry[None, :] + b_r
            f = tl.load(F + off, mask=m2, other=1.0).to(acc_ty)
            z = tl.load(Z + off, mask=m2, other=0.0).to(acc_ty)
            # States c_{s-1}: scan the pairs of the previous steps from the tile's checkpoint;
            # row 0 takes the identity so the scan is exclusive.
            if REVERSE:
                tp = t + 1
            else:
                tp = t - 1
            mp = ((rows >= 1) & smask)[:, None] & dmask[None, :]
            offp = base + tp.to(tl.int64)[:, None] * D + offs_d[None, :]
            fp = tl.load(F + offp, mask=mp, other=1.0).to(acc_ty)
            zp = tl.load(Z + offp, mask=mp, other=0.0).to(acc_ty)
            a_p, b_p = tl.associative_scan((fp, (1.0 - fp) * zp), 0, _affine_combine)
            c0 = tl.load(CKPT + (b * NC + tile) * D + offs_d, mask=dmask, other=0.0).to(acc_ty)
            c_prev = a_p * c0[None, :] + b_p
            tl.store(DF + off, (e * (c_prev - z)).to(DF.dtype.element_ty), mask=m2)
            tl.store(DZ + off, (e * (1.0 - f)).to(DZ.dtype.element_ty), mask=m2)
            if HAS_OUTPUT:
                c = f * c_prev + (1.0 - f) * z
                tl.store(DO + off, (dh * c).to(DO.dtype.element_ty), mask=m2)
            carry = _row(e, rows, 0)

    if AGGREGATE_ONLY:
        tl.store(AGG_A + seg_off, agg_a, mask=dmask)
        tl.store(AGG_B + seg_off, agg_b, mask=dmask)
    else:
        if seg == 0:
            if REVERSE:
                t0 = L - 1
            else:
                t0 = 0 * L
            f0 = tl.load(F + base + t0.to(tl.int64) * D + offs_d, mask=dmask & (L > 0), other=1.0).to(acc_ty)
            tl.store(DINIT + b * D + offs_d, (f0 * carry).to(DINIT.dtype.element_ty), mask=dmask)
        zeros = tl.zeros([BLOCK_T, BLOCK_D], DF.dtype.element_ty)
        for tile in range(tl.maximum(tile_lo, L // BLOCK_T), tl.minimum(tile_lo + TILES_PER_SEG, tl.cdiv(T, BLOCK_T))):
            t = tile * BLOCK_T + rows
            m2 = ((t >= L) & (t < T))[:, None] & dmask[None, :]
            off = base + t.to(tl.int64)[:, None] * D + offs_d[None, :]
            tl.store(DF + off, zeros, mask=m2)
            tl.store(DZ + off, zeros, mask=m2)
            if HAS_OUTPUT:
                tl.store(DO + off, zeros, mask=m2)


@triton.jit
def _fo_pool_segment_scan_kernel(
    AGG_A, AGG_B, START, SEG_IN, D, NSEG,
    HAS_START: tl.constexpr, BACKWARD: tl.constexpr, BLOCK_D: tl.constexpr,
):
    # Turns per-segment composed maps into each segment's incoming state: forward in time
    # for the forward pass, from the last segment to the first for the backward pass.
    pid = tl.program_id(0)
    nd = tl.cdiv(D, BLOCK_D)
    b = (pid // nd).to(tl.int64)
    offs_d = (pid % nd) * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = offs_d < D
    acc_ty = AGG_A.dtype.element_ty
    if HAS_START:
        state = tl.load(START + b * D + offs_d, mask=dmask, other=0.0).to(acc_ty)
    else:
        state = tl.zeros([BLOCK_D], acc_ty)
    for i in range(0, NSEG):
        if BACKWARD:
            seg = NSEG - 1 - i
        else:
            seg = i
        off = (b * NSEG + seg) * D + offs_d
        tl.store(SEG_IN + off, state, mask=dmask)
        state = tl.load(AGG_A + off, mask=dmask, other=1.0) * state + tl.load(AGG_B + off, mask=dmask, other=0.0)


def _plan(batch: int, time: int, dim: int, chunk: int, device: torch.device, segments: int | None,
          block_d: int | None = None):
    """Block sizes and the number of time segments for one call."""
    if chunk < 1 or chunk & (chunk - 1):
        raise ValueError(f"fo_pool (Triton): `chunk` must be a power of two, got {chunk}")
    if block_d is None:
        block_d = max(16, min(BLOCK_D_MAX, triton.next_power_of_2(max(dim, 1))))
    programs = batch * math.ceil(dim / block_d)
    n_tiles = max(1, math.ceil(time / chunk))
    if segments is None:
        segments = 1
        if device.type == "cuda":
            sms = sm_count(device)
            # Split time only when (sequence, channel block) pairs cannot fill the GPU: the
            # split costs one extra read of f and z.
            if programs < 2 * sms:
                segments = math.ceil(4 * sms / max(programs, 1))
    segments = max(1, min(int(segments), n_tiles))
    tiles_per_seg = math.ceil(n_tiles / segments)
    segments = math.ceil(n_tiles / tiles_per_seg)
    return block_d, programs, segments, tiles_per_seg


def fo_pool_fwd_triton(forget, z, output, lengths, initial, reverse: bool, chunk: int,
                       segments: int | None = None, block_d: int | None = None):
    """Triton forward; same contract as ``torch.ops.sublocal.fo_pool_fwd``.

    ``segments`` and ``block_d`` override the number of time segments and the channel block
    (tests use them to exercise the time split and several channel blocks on small shapes;
    None picks them from the problem and the GPU's size).
    """
    forget, z = forget.contiguous(), z.contiguous()
    output = output.contiguous() if output is not None else None
    initial = initial.contiguous() if initial is not None else None
    lengths = device_lengths(lengths, forget.device)
    B, T, D = forget.shape
    NC = T // chunk + 1
    sd = compute_dtype(forget.dtype)
    h = torch.empty_like(forget)
    c_last = torch.empty(B, D, dtype=forget.dtype, device=forget.device)
    ckpt = torch.empty(B, NC, D, dtype=sd, device=forget.device)
    if B == 0 or D == 0:
        return h, c_last, ckpt
    block_d, programs, nseg, tps = _plan(B, T, D, chunk, forget.device, segments, block_d)
    dummy = ckpt
    common = dict(HAS_OUTPUT=output is not None, HAS_LENGTHS=lengths is not None,
                  HAS_INIT=initial is not None, REVERSE=bool(reverse), BLOCK_T=chunk, BLOCK_D=block_d,
                  num_warps=4)
    seg_in = agg_a = agg_b = dummy
    if nseg > 1:
        agg_a = torch.empty(B, nseg, D, dtype=sd, device=forget.device)
        agg_b = torch.empty_like(agg_a)
        seg_in = torch.empty_like(agg_a)
        _fo_pool_fwd_kernel[(programs, nseg)](
            forget, z, output if output is not None else dummy, lengths if lengths is not None else dummy,
            initial if initial is not None else dummy, dummy, h, c_last, ckpt, agg_a, agg_b,
            T, D, NC, tps, nseg, AGGREGATE_ONLY=True, USE_SEG_IN=False, **common)
        _fo_pool_segment_scan_kernel[(programs,)](
            agg_a, agg_b, initial if initial is not None else dummy, seg_in, D, nseg,
            HAS_START=initial is not None, BACKWARD=False, BLOCK_D=block_d, num_warps=4)
    _fo_pool_fwd_kernel[(programs, nseg)](
        forget, z, output if output is not None else dummy, lengths if lengths is not None else dummy,
        initial if initial is not None else dummy, seg_in, h, c_last, ckpt, agg_a, agg_b,
        T, D, NC, tps, nseg, AGGREGATE_ONLY=False, USE_SEG_IN=nseg > 1, **common)
    return h, c_last, ckpt


def fo_pool_bwd_triton(grad_h, grad_c_last, forget, z, output, lengths, checkpoints, reverse: bool,
                       chunk: int, segments: int | None = None, block_d: int | None = None):
    """Triton backward; same contract as ``torch.ops.sublocal.fo_pool_bwd``."""
    grad_h, grad_c_last = grad_h.contiguous(), grad_c_last.contiguous()
    forget, z, checkpoints = forget.contiguous(), z.contiguous(), checkpoints.contiguous()
    output = output.contiguous() if output is not None else None
    lengths = device_lengths(lengths, forget.device)
    B, T, D = forget.shape
    NC = T // chunk + 1
    sd = compute_dtype(forget.dtype)
    grad_f = torch.empty_like(forget)
    grad_z = torch.empty_like(forget)
    grad_o = torch.empty_like(forget) if output is not None else forget.new_empty(0)
    grad_init = torch.empty(B, D, dtype=forget.dtype, device=forget.device)
    if B == 0 or D == 0:
        return grad_f, grad_z, grad_o, grad_init
    block_d, programs, nseg, tps = _plan(B, T, D, chunk, forget.device, segments, block_d)
    dummy = checkpoints
    common = dict(HAS_OUTPUT=output is not None, HAS_LENGTHS=lengths is not None, REVERSE=bool(reverse),
                  BLOCK_T=chunk, BLOCK_D=block_d, num_warps=4)
    args_in = (grad_h, grad_c_last, forget, z, output if output is not None else dummy,
               lengths if lengths is not None else dummy, checkpoints)
    seg_in = agg_a = agg_b = dummy
    if nseg > 1:
        agg_a = torch.empty(B, nseg, D, dtype=sd, device=forget.device)
        agg_b = torch.empty_like(agg_a)
        seg_in = torch.empty_like(agg_a)
        _fo_pool_bwd_kernel[(programs, nseg)](
            *args_in, dummy, grad_f, grad_z, grad_o if output is not None else dummy, grad_init, agg_a, agg_b,
            T, D, NC, tps, nseg, AGGREGATE_ONLY=True, USE_SEG_IN=False, **common)
        _fo_pool_segment_scan_kernel[(programs,)](
            agg_a, agg_b, grad_c_last, seg_in, D, nseg, HAS_START=True, BACKWARD=True, BLOCK_D=block_d,
            num_warps=4)
    _fo_pool_bwd_kernel[(programs, nseg)](
        *args_in, seg_in, grad_f, grad_z, grad_o if output is not None else dummy, grad_init, agg_a, agg_b,
        T, D, NC, tps, nseg, AGGREGATE_ONLY=False, USE_SEG_IN=nseg > 1, **common)
    return grad_f, grad_z, grad_o, grad_init
