"""Multi-width conv1d Triton kernels: implicit GEMMs over the union of every width's taps.

Design (docs/kernel-notes.md). All widths share one window of ``span`` taps (tap ``p`` reads input
position ``t + (p - left) * dilation``). Packing every width's weights into that window gives
one weight matrix ``W`` of shape ``(span * C, N)`` (row ``p * C + c``, zero where a width does
not use tap ``p``), so the forward for a tile of ``BLOCK_T`` positions and ``BLOCK_N`` output
channels (every channel when ``N <= 128``: the output is written once, all widths together) is
``sum_k X_col[t, k] W[k, n]`` with ``X_col[t, p * C + c] = x[t + (p - left) * dilation, c]``
gathered on the fly from the tile and its halo (the same input rows serve every tap, so after
the first tap they come from L1/L2, not DRAM) and ``tl.dot`` on the tensor cores with float32
accumulation. Positions at or past a sequence's length read as zero; tiles entirely past it
skip the product and write zeros.

The backward data is the same product with the taps mirrored: ``dx[s] = sum dy~[s - (p - left)
* dilation, n] W[p, c, n]``, with its reduction dimension compacted to the ``(tap, channel)``
pairs some width uses (``sum k_i F_i`` instead of ``span * N``). ``dy~ = dy * (y > 0)`` (the
ReLU mask recomputed from the kept output) and zero past each length, applied as it is loaded.
The backward weights is ``X_col^T dy~`` reduced over all positions: the positions are split
across ``SPLITS`` programs per output tile whose partial sums are added in a fixed order
afterwards (deterministic).

float32 inputs follow the dot policy every op shares (``ops/_triton_utils.py``: ``tf32x3``
unless PyTorch allows TF32, overridable per call with ``f32_dot=``); bfloat16/float16 inputs
use the tensor cores with float32 accumulation.

The launchers take plain tensors (any device), so under ``TRITON_INTERPRET=1`` the same
kernels run on CPU tensors; the test suite does exactly that.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from ..._checks import compute_dtype
from .._triton_utils import device_lengths, dot, dot_precision, sm_count
from .reference import window


# Activation codes (the kernels' ACT): 0 none, 1 relu, 2 tanh, 3 sigmoid.
ACT_CODES = {"none": 0, "relu": 1, "tanh": 2, "sigmoid": 3}


@triton.jit
def _activation_grad(g, y, ACT: tl.constexpr):
    """dy times the activation's derivative from the output y (relu y > 0, tanh 1 - y^2,
    sigmoid (1 - y) y), in float32 at least, returned in g's dtype."""
    if ACT == 1:
        return tl.where(y > 0, g, 0.0)
    cd = tl.float64 if g.dtype == tl.float64 else tl.float32
    yc = y.to(cd)
    if ACT == 2:
        return (g.to(cd) * (1.0 - yc * yc)).to(g.dtype)
    return (g.to(cd) * (1.0 - yc) * yc).to(g.dtype)


@triton.jit
def _multiwidth_conv1d_fwd_kernel(
    X, W, BIAS, LEN, Y,
    T, C, N, KTOT, LEFT, DIL,
    HAS_BIAS: tl.constexpr, HAS_LENGTHS: tl.constexpr, ACT: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_t = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    pid_n = tl.program_id(2)
    if HAS_LENGTHS:
        L = tl.minimum(tl.maximum(tl.load(LEN + b).to(tl.int32), 0), T)
    else:
        L = T + 0 * pid_t
    t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    nmask = n < N
    acc = tl.zeros([BLOCK_T, BLOCK_N], tl.float32 if X.dtype.element_ty != tl.float64 else tl.float64)
    # A tile entirely past the sequence's length skips the product (its output is zero).
    k_end = tl.where(pid_t * BLOCK_T < L, KTOT, 0)
    x_base = X + b * T * C
    for k0 in range(0, k_end, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        kmask = kk < KTOT
        p = kk // C
        c = kk % C
        s = t[:, None] + (p[None, :] - LEFT) * DIL
        xm = (s >= 0) & (s < L) & kmask[None, :]
        a = tl.load(x_base + s.to(tl.int64) * C + c[None, :], mask=xm, other=0.0)
        w = tl.load(W + kk[:, None].to(tl.int64) * N + n[None, :], mask=kmask[:, None] & nmask[None, :], other=0.0)
        acc += dot(a, w, PRECISION)
    if HAS_BIAS:
        acc += tl.load(BIAS + n, mask=nmask, other=0.0).to(acc.dtype)[None, :]
    if ACT == 1:  # relu
        acc = tl.maximum(acc, 0.0)
    if ACT == 2:  # tanh
        acc = 2.0 * tl.sigmoid(2.0 * acc) - 1.0
    if ACT == 3:  # sigmoid
        acc = tl.sigmoid(acc)
    acc = tl.where((t < L)[:, None], acc, 0.0)
    tl.store(Y + b * T * N + t[:, None].to(tl.int64) * N + n[None, :], acc.to(Y.dtype.element_ty),
             mask=(t < T)[:, None] & nmask[None, :])


@triton.jit
def _multiwidth_conv1d_dx_kernel(
    DY, Y, WT, KTAP, KCOL, LEN, DX,
    T, C, N, KTOT, LEFT, DIL,
    HAS_LENGTHS: tl.constexpr, ACT: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # dx[s, c] = sum_k dy~[s - (KTAP[k] - LEFT) * DIL, KCOL[k]] * WT[k, c] over the used (tap, column) pairs k.
    pid_t = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    pid_c = tl.program_id(2)
    if HAS_LENGTHS:
        L = tl.minimum(tl.maximum(tl.load(LEN + b).to(tl.int32), 0), T)
    else:
        L = T + 0 * pid_t
    s = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    acc = tl.zeros([BLOCK_T, BLOCK_C], tl.float32 if DY.dtype.element_ty != tl.float64 else tl.float64)
    k_end = tl.where(pid_t * BLOCK_T < L, KTOT, 0)
    for k0 in range(0, k_end, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        kmask = kk < KTOT
        p = tl.load(KTAP + kk, mask=kmask, other=0)
        n = tl.load(KCOL + kk, mask=kmask, other=0)
        t = s[:, None] - (p[None, :] - LEFT) * DIL
        m = (t >= 0) & (t < L) & kmask[None, :]
        off = b * T * N + t.to(tl.int64) * N + n[None, :]
        g = tl.load(DY + off, mask=m, other=0.0)
        if ACT != 0:
            g = _activation_grad(g, tl.load(Y + off, mask=m, other=0.0), ACT)
        w = tl.load(WT + kk[:, None].to(tl.int64) * C + c[None, :], mask=kmask[:, None] & cmask[None, :], other=0.0)
        acc += dot(g, w, PRECISION)
    acc = tl.where((s < L)[:, None], acc, 0.0)
    tl.store(DX + b * T * C + s[:, None].to(tl.int64) * C + c[None, :], acc.to(DX.dtype.element_ty),
             mask=(s < T)[:, None] & cmask[None, :])


@triton.jit
def _multiwidth_conv1d_dw_kernel(
    X, DY, Y, LEN, PART_W, PART_B,
    T, C, N, KTOT, LEFT, DIL, NTILES, NITEMS, SPLITS,
    HAS_LENGTHS: tl.constexpr, ACT: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr,
):
    # PART_W[split, k, n] = sum over this split's (sequence, tile) items of X_col[t, k] dy~[t, n],
    # k = p * C + c; PART_B[split, n] = sum dy~[t, n] (from the programs with pid_m == 0).
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    split = tl.program_id(2)
    k = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    kmask = k < KTOT
    p = k // C
    c = k % C
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    nmask = n < N
    acc_ty = tl.float32 if X.dtype.element_ty != tl.float64 else tl.float64
    acc = tl.zeros([BLOCK_M, BLOCK_N], acc_ty)
    acc_b = tl.zeros([BLOCK_N], acc_ty)
    for item in range(split, NITEMS, SPLITS):
        b = (item // NTILES).to(tl.int64)
        t0 = (item % NTILES) * BLOCK_T
        if HAS_LENGTHS:
            L = tl.minimum(tl.maximum(tl.load(LEN + b).to(tl.int32), 0), T)
        else:
            L = T + 0 * item
        if t0 < L:
            t = t0 + tl.arange(0, BLOCK_T)
            tmask = t < L
            s = t[None, :] + (p[:, None] - LEFT) * DIL
            xm = (s >= 0) & (s < L) & kmask[:, None] & tmask[None, :]
            a = tl.load(X + b * T * C + s.to(tl.int64) * C + c[:, None], mask=xm, other=0.0)
            off = b * T * N + t[:, None].to(tl.int64) * N + n[None, :]
            gm = tmask[:, None] & nmask[None, :]
            g = tl.load(DY + off, mask=gm, other=0.0)
            if ACT != 0:
                g = _activation_grad(g, tl.load(Y + off, mask=gm, other=0.0), ACT)
            acc_b += tl.sum(g.to(acc_ty), axis=0)
            acc += dot(a, g, PRECISION)
    tl.store(PART_W + (split * KTOT + k[:, None]).to(tl.int64) * N + n[None, :], acc,
             mask=kmask[:, None] & nmask[None, :])
    if pid_m == 0:
        tl.store(PART_B + split * N + n, acc_b, mask=nmask)


def _shapes(weights) -> tuple:
    return tuple((int(w.shape[0]), int(w.shape[2])) for w in weights)


@functools.lru_cache(maxsize=256)
def _geometry(shapes: tuple, causal: bool, reverse: bool):
    """For widths ``shapes = ((F_i, k_i), ...)``: (left, span, first tap of each width, first
    output column of each width, N)."""
    lefts, rights = zip(*(window(k, causal, reverse) for _, k in shapes))
    left, right = max(lefts), max(rights)
    firsts = tuple(left - lw for lw in lefts)
    cols, n = [], 0
    for f, _ in shapes:
        cols.append(n)
        n += f
    return left, left + right + 1, firsts, tuple(cols), n


def _pack(weights, causal: bool, reverse: bool, dtype: torch.dtype) -> torch.Tensor:
    """Every width's weights in the union window: ``(span, C, N)``, zero where a width has no tap."""
    left, span, firsts, cols, n = _geometry(_shapes(weights), causal, reverse)
    C = weights[0].shape[1]
    packed = weights[0].new_zeros(span, C, n, dtype=dtype)
    for w, first, col in zip(weights, firsts, cols):
        # reverse: the kernel is read backwards
        packed[first:first + w.shape[2], :, col:col + w.shape[0]] = (w.flip(2) if reverse else w).permute(2, 1, 0).to(dtype)
    return packed


@functools.lru_cache(maxsize=64)
def _used_pairs(shapes: tuple, causal: bool, reverse: bool, device: torch.device):
    """The (tap, column) pairs some width uses, tap-major, as int32 tensors on ``device``: the
    dx kernel's reduction index (cached: no host-to-device copy per call)."""
    left, span, firsts, cols, n = _geometry(shapes, causal, reverse)
    taps, columns = [], []
    for p in range(span):
        for (f, k), first, col in zip(shapes, firsts, cols):
            if first <= p < first + k:
                taps += [p] * f
                columns += range(col, col + f)
    return (torch.tensor(taps, dtype=torch.int32, device=device),
            torch.tensor(columns, dtype=torch.int32, device=device))


def _block(n: int, low: int, high: int) -> int:
    return max(low, min(high, triton.next_power_of_2(max(n, 1))))


def multiwidth_conv1d_fwd_triton(x, lengths, weights, bias, activation: str, causal: bool, reverse: bool,
                                 dilation: int, block_t: int = 64, f32_dot: str | None = None):
    """Triton forward; same contract as ``torch.ops.sublocal.multiwidth_conv1d_fwd``."""
    x = x.contiguous()
    B, T, C = x.shape
    left, span, _, _, N = _geometry(_shapes(weights), causal, reverse)
    y = torch.empty(B, T, N, dtype=x.dtype, device=x.device)
    if y.numel() == 0:
        return y
    w = _pack(weights, causal, reverse, x.dtype).reshape(span * C, N)
    bias = bias.contiguous() if bias is not None else None
    lengths = device_lengths(lengths, x.device)
    block_n = _block(N, 16, 128)
    grid = (triton.cdiv(T, block_t), B, triton.cdiv(N, block_n))
    _multiwidth_conv1d_fwd_kernel[grid](
        x, w, bias if bias is not None else w, lengths if lengths is not None else w, y,
        T, C, N, span * C, left, dilation,
        HAS_BIAS=bias is not None, HAS_LENGTHS=lengths is not None, ACT=ACT_CODES[activation],
        PRECISION=dot_precision(x.dtype, f32_dot), BLOCK_T=block_t, BLOCK_N=block_n, BLOCK_K=32, num_warps=4)
    return y


def multiwidth_conv1d_bwd_triton(grad_y, x, lengths, weights, y, activation: str, causal: bool, reverse: bool,
                                 dilation: int, need_grad_x: bool, need_grad_weights: bool, block_t: int = 64,
                                 splits: int | None = None, f32_dot: str | None = None):
    """Triton backward; same contract as ``torch.ops.sublocal.multiwidth_conv1d_bwd``.

    ``splits`` overrides how many programs share the position reduction of the weight
    gradient (tests use it to exercise the split; None picks it from the GPU's size).
    """
    x, grad_y = x.contiguous(), grad_y.contiguous()
    act = ACT_CODES[activation]
    y = y.contiguous() if act else None
    B, T, C = x.shape
    left, span, firsts, cols, N = _geometry(_shapes(weights), causal, reverse)
    lengths = device_lengths(lengths, x.device)
    prec = dot_precision(x.dtype, f32_dot)
    dummy = grad_y
    grad_x = torch.empty_like(x) if need_grad_x else x.new_empty(0)
    grad_w, grad_b = [], x.new_empty(0)
    if need_grad_x and x.numel():
        packed = _pack(weights, causal, reverse, x.dtype)  # (span, C, N)
        ktap, kcol = _used_pairs(_shapes(weights), causal, reverse, x.device)
        wt = packed[ktap.long(), :, kcol.long()].contiguous()  # (K, C)
        block_c = _block(C, 16, 64)
        grid = (triton.cdiv(T, block_t), B, triton.cdiv(C, block_c))
        _multiwidth_conv1d_dx_kernel[grid](
            grad_y, y if act else dummy, wt, ktap, kcol, lengths if lengths is not None else dummy, grad_x,
            T, C, N, ktap.numel(), left, dilation,
            HAS_LENGTHS=lengths is not None, ACT=act, PRECISION=prec,
            BLOCK_T=block_t, BLOCK_C=block_c, BLOCK_K=32, num_warps=4)
    if need_grad_weights:
        acc_dtype = compute_dtype(x.dtype)
        ktot = span * C
        block_m, block_n = 64, _block(N, 16, 128)
        ntiles = triton.cdiv(T, block_t)
        nitems = B * ntiles
        m_blocks, n_blocks = triton.cdiv(max(ktot, 1), block_m), triton.cdiv(max(N, 1), block_n)
        if splits is None:
            splits = 1
            if x.device.type == "cuda":
                sms = sm_count(x.device)
                splits = triton.cdiv(4 * sms, m_blocks * n_blocks)
        splits = max(1, min(int(splits), max(nitems, 1)))
        part_w = torch.zeros(splits, ktot, N, dtype=acc_dtype, device=x.device)
        part_b = torch.zeros(splits, N, dtype=acc_dtype, device=x.device)
        if nitems and ktot and N:
            _multiwidth_conv1d_dw_kernel[(m_blocks, n_blocks, splits)](
                x, grad_y, y if act else dummy, lengths if lengths is not None else dummy, part_w, part_b,
                T, C, N, ktot, left, dilation, ntiles, nitems, splits,
                HAS_LENGTHS=lengths is not None, ACT=act, PRECISION=prec,
                BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_T=block_t, num_warps=4)
        # Partial sums added in split order: deterministic.
        full = part_w.sum(0).reshape(span, C, N)
        for w, first, col in zip(weights, firsts, cols):
            g = full[first:first + w.shape[2], :, col:col + w.shape[0]].permute(2, 1, 0)
            grad_w.append((g.flip(2) if reverse else g).to(x.dtype).contiguous())
        grad_b = part_b.sum(0).to(x.dtype)
    return grad_x, grad_w, grad_b
