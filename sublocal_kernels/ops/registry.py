"""Every op, declared once: what the shared checks, the static sm_90 check and the benchmark
runner read instead of keeping tables of their own.

Readers:
  tests/ops/test_conventions.py   ``lengths_case``, ``per_step_inputs``, ``workspaces``, ``public``
  tests/ops/test_subnormal.py     ``float32_case``
  benchmarks/sm90_static.py       ``triton_module``, ``kernels``, ``sm90_launches``
  benchmarks/run.py               ``benchmark``
  tests/ops/test_registry.py      that ``OPS`` covers every public op and every schema in csrc/ops.cpp

Adding an op: its folder under ``ops/`` (public function, reference, kernels, registration), its
schemas in ``csrc/ops.cpp``, one ``OpSpec`` below, then its own ``tests/ops/test_<op>.py`` and
``benchmarks/bench_<op>.py``. A variant that shares the public function and the Triton module
(the mLSTM cell of ``lstm``) is an entry of its own, named after its schemas.

This module imports torch and the op folders only; Triton modules are imported when a reader
asks for them (``OpSpec.triton``), and kernels are named by string and looked up there.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType

import torch

from .attention_pool import attention_pool, attention_pool_ref
from .channel_attention_pool import channel_attention_pool, channel_attention_pool_ref
from .fo_pool import fo_pool, fo_pool_ref
from .lstm import lstm, lstm_ref, weight_names
from .multiwidth_conv1d import multiwidth_conv1d, multiwidth_conv1d_ref

__all__ = ["OPS", "OpSpec", "get"]


@dataclass(frozen=True)
class OpSpec:
    """One op.

    name:            the kernel-level op: ``torch.ops.sublocal.<name>_fwd`` / ``<name>_bwd``
    public:          the public function that runs it (``sublocal_kernels.<public.__name__>``)
    reference:       its plain-PyTorch oracle
    schemas:         every schema of csrc/ops.cpp that belongs to it
    per_step_inputs: the public function's (B, T, ...) inputs; ``lengths`` comes right after them
    workspaces:      the trailing results of ``<name>_fwd`` that only its backward reads
    triton_module:   the module holding its ``@triton.jit`` kernels and their launchers
    kernels:         the names of the ``*_kernel`` functions in ``triton_module`` its launchers
                     launch (looked up there when used)
    benchmark:       the file, from the repository root, that times it
    lengths_case:    ``(lengths, B, T) -> (call, fwd, x)``: float64 inputs of B sequences of T
                     steps; ``call(lengths)`` runs the public function and returns a tuple,
                     ``fwd()`` runs ``<name>_fwd`` with ``lengths``, ``x`` is the first input,
                     which requires a gradient
    float32_case:    ``(ref=False) -> tuple``: one forward and backward on small float32 inputs
                     with variable lengths (through the reference when ``ref``): the inputs'
                     gradients, then the outputs
    sm90_launches:   ``(dtype) -> iterator of (context, call)``: launcher calls on small CPU
                     tensors that reach every tile size, ``num_warps`` and ``num_stages`` the
                     launchers can pick; ``context`` is ``{"op": name, "case": ...}``
    """

    name: str
    public: Callable
    reference: Callable
    schemas: tuple[str, ...]
    per_step_inputs: tuple[str, ...]
    workspaces: tuple[str, ...]
    triton_module: str
    kernels: tuple[str, ...]
    benchmark: str
    lengths_case: Callable[[torch.Tensor | None, int, int], tuple]
    float32_case: Callable[..., tuple]
    sm90_launches: Callable[[torch.dtype], Iterator[tuple[dict, Callable]]]

    @property
    def public_name(self) -> str:
        """``sublocal_kernels.<public_name>``, the name its errors begin with."""
        return self.public.__name__

    @property
    def is_variant(self) -> bool:
        """Run through another op's public function (the mLSTM: ``lstm(..., cell="mlstm")``)."""
        return self.public_name != self.name

    def triton(self) -> ModuleType:
        """The Triton module (imports Triton)."""
        return importlib.import_module(self.triton_module)


# ---- helpers for the sm_90 launch cases ----------------------------------------------------------

def _t(*shape, dtype):
    return torch.rand(*shape, dtype=torch.float64).to(dtype)


def _lengths(B, T):
    return torch.tensor([T - (i % T) for i in range(B)], dtype=torch.int64)


def _state_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


# ---- lstm ----------------------------------------------------------------------------------------

def _lstm_lengths_case(lengths, B, T):
    torch.manual_seed(0)
    layer = torch.nn.LSTM(4, 3, batch_first=True, bidirectional=True).double()
    x = torch.randn(B, T, 4, dtype=torch.float64, requires_grad=True)
    params = list(layer.parameters())
    return (lambda lengths=lengths: lstm(x, lengths, params)), (lambda: torch.ops.sublocal.lstm_fwd(
        x, lengths, params, None, None, True)), x


def _lstm_float32_case(ref=False):
    m = torch.nn.LSTM(6, 9, batch_first=True, bidirectional=True)
    x = torch.randn(4, 21, 6, requires_grad=True)
    out, h_n, c_n = (lstm_ref if ref else lstm)(x, torch.tensor([21, 3, 14, 9]), list(m.parameters()))
    return torch.autograd.grad((out.sum() + h_n.sum(),), [x, *m.parameters()], None, allow_unused=True) + (
        out, h_n, c_n)


def _recurrent_sm90_launches(dtype, cell: str, C: int, hidden: tuple):
    """Both cells' kernels (one forward, one backward, by their flags), with bias and initial
    states. Tile sizes: BLOCK_H = BLOCK_K = next power of two of H in [16, 64] (32 for float64)."""
    from .lstm import triton as K

    mul = cell == "mlstm"
    fwd, infer, bwd = (getattr(K, f"{cell}_{p}_triton") for p in ("fwd", "infer", "bwd"))
    T, B = 3, 5
    for H in hidden:
        ctx = {"op": cell, "case": f"H={H}"}
        weights = []
        for _ in range(2):
            weights += [_t(4 * H, C, dtype=dtype), _t(4 * H, H, dtype=dtype), _t(4 * H, dtype=dtype),
                        _t(4 * H, dtype=dtype)] + ([_t(H, C, dtype=dtype), _t(H, H, dtype=dtype)] if mul else [])
        x = _t(B, T, C, dtype=dtype)
        h0, c0 = _t(2, B, H, dtype=dtype), _t(2, B, H, dtype=dtype)
        L = _lengths(B, T)
        yield ctx, lambda: fwd(x, L, weights, h0, c0, True)
        yield ctx, lambda: infer(x, L, weights, h0, c0, True)
        sd = _state_dtype(dtype)
        gates, states = _t(2, B * T, (5 if mul else 4) * H, dtype=sd), _t(2, B * T, (3 if mul else 2) * H, dtype=sd)
        yield ctx, lambda: bwd(_t(B, T, 2 * H, dtype=dtype), h0, c0, x, L, weights, h0, c0, gates, states, True)


LSTM = OpSpec(
    name="lstm", public=lstm, reference=lstm_ref,
    schemas=("lstm_fwd", "lstm_bwd", "lstm_infer"),
    per_step_inputs=("x",), workspaces=("gates", "states"),
    triton_module="sublocal_kernels.ops.lstm.triton",
    kernels=("_recurrent_fwd_kernel", "_recurrent_bwd_kernel"),
    benchmark="benchmarks/bench_lstm.py",
    lengths_case=_lstm_lengths_case, float32_case=_lstm_float32_case,
    sm90_launches=functools.partial(_recurrent_sm90_launches, cell="lstm", C=20, hidden=(9, 32, 256, 300)),
)


# ---- mlstm: the multiplicative cell of lstm ------------------------------------------------------

def _mlstm_weights(C, H):
    """One bidirectional layer's weights, initialised as ``sublocal_kernels.nn.LSTM(C, H,
    cell="mlstm")`` initialises them (the same draws in the same order): uniform in
    [-1/sqrt(H), 1/sqrt(H)], ``weight_mx`` in [-1/sqrt(C), 1/sqrt(C)]."""
    shapes = {"weight_ih": (4 * H, C), "weight_hh": (4 * H, H), "bias_ih": (4 * H,), "bias_hh": (4 * H,),
              "weight_mx": (H, C), "weight_mh": (H, H)}
    out = []
    for name in weight_names(True, True, 0, "mlstm"):
        w = torch.empty(shapes[name.split("_l")[0]])
        b = 1.0 / math.sqrt(C if name.startswith("weight_mx") else H)
        out.append(w.uniform_(-b, b))
    return out


def _mlstm_lengths_case(lengths, B, T):
    torch.manual_seed(0)
    params = [w.double() for w in _mlstm_weights(4, 3)]
    x = torch.randn(B, T, 4, dtype=torch.float64, requires_grad=True)
    return (lambda lengths=lengths: lstm(x, lengths, params, cell="mlstm")), (
        lambda: torch.ops.sublocal.mlstm_fwd(x, lengths, params, None, None, True)), x


def _mlstm_float32_case(ref=False):
    weights = [w.requires_grad_() for w in _mlstm_weights(6, 9)]
    x = torch.randn(4, 21, 6, requires_grad=True)
    out, h_n, c_n = (lstm_ref if ref else lstm)(x, torch.tensor([21, 3, 14, 9]), weights, cell="mlstm")
    return torch.autograd.grad((out.sum() + h_n.sum(),), [x, *weights], None, allow_unused=True) + (out, h_n, c_n)


MLSTM = OpSpec(
    name="mlstm", public=lstm, reference=lstm_ref,
    schemas=("mlstm_fwd", "mlstm_bwd", "mlstm_infer"),
    per_step_inputs=("x",), workspaces=("gates", "states"),
    triton_module="sublocal_kernels.ops.lstm.triton",
    kernels=("_recurrent_fwd_kernel", "_recurrent_bwd_kernel"),
    benchmark="benchmarks/bench_mlstm.py",
    lengths_case=_mlstm_lengths_case, float32_case=_mlstm_float32_case,
    # The LSTM's tile sizes (the same _blocks), and UniRep's H = 1900 too.
    sm90_launches=functools.partial(_recurrent_sm90_launches, cell="mlstm", C=10, hidden=(9, 32, 256, 300, 1900)),
)


# ---- fo_pool -------------------------------------------------------------------------------------

def _fo_pool_lengths_case(lengths, B, T):
    torch.manual_seed(0)
    f = torch.rand(B, T, 4, dtype=torch.float64, requires_grad=True)
    z = torch.randn(B, T, 4, dtype=torch.float64, requires_grad=True)
    return (lambda lengths=lengths: fo_pool(f, z, lengths=lengths)), (lambda: torch.ops.sublocal.fo_pool_fwd(
        f, z, None, lengths, None, False, 32)), f


def _fo_pool_float32_case(ref=False):
    f = torch.rand(4, 33, 70, requires_grad=True)
    z = torch.randn(4, 33, 70, requires_grad=True)
    h, c = (fo_pool_ref if ref else fo_pool)(f, z, lengths=torch.tensor([33, 5, 20, 1]))
    return torch.autograd.grad((h.sum() + c.sum(),), [f, z], None, allow_unused=True) + (h, c)


def _fo_pool_sm90_launches(dtype):
    """Channel block = next power of two of D in [16, 64]; one time segment, or several (the
    aggregate pass, the segment scan and the seeded pass) when the sequences cannot fill the GPU."""
    from .fo_pool import CHUNK
    from .fo_pool import triton as K

    B, T = 2, 4 * CHUNK + 3
    for D in (9, 32, 256):
        for segments in (1, 3):
            ctx = {"op": "fo_pool", "case": f"D={D} segments={segments}"}
            f, z, o = (_t(B, T, D, dtype=dtype) for _ in range(3))
            init, L = _t(B, D, dtype=dtype), _lengths(B, T)
            yield ctx, lambda: K.fo_pool_fwd_triton(f, z, o, L, init, False, CHUNK, segments=segments)
            ckpt = _t(B, T // CHUNK + 1, D, dtype=_state_dtype(dtype))
            yield ctx, lambda: K.fo_pool_bwd_triton(_t(B, T, D, dtype=dtype), init, f, z, o, L, ckpt, False, CHUNK,
                                                    segments=segments)


FO_POOL = OpSpec(
    name="fo_pool", public=fo_pool, reference=fo_pool_ref,
    schemas=("fo_pool_fwd", "fo_pool_bwd", "fo_pool_infer", "_fo_pool_fwd_cuda", "_fo_pool_bwd_cuda"),
    per_step_inputs=("forget", "z", "output"), workspaces=("checkpoints",),
    triton_module="sublocal_kernels.ops.fo_pool.triton",
    kernels=("_fo_pool_fwd_kernel", "_fo_pool_bwd_kernel", "_fo_pool_segment_scan_kernel"),
    benchmark="benchmarks/bench_fo_pool.py",
    lengths_case=_fo_pool_lengths_case, float32_case=_fo_pool_float32_case, sm90_launches=_fo_pool_sm90_launches,
)


# ---- multiwidth_conv1d ---------------------------------------------------------------------------

def _conv_lengths_case(lengths, B, T):
    torch.manual_seed(0)
    x = torch.randn(B, T, 4, dtype=torch.float64, requires_grad=True)
    ws = [torch.randn(2, 4, k, dtype=torch.float64, requires_grad=True) for k in (1, 3)]
    return (lambda lengths=lengths: (multiwidth_conv1d(x, lengths, ws),)), (lambda: (
        torch.ops.sublocal.multiwidth_conv1d_fwd(x, lengths, ws, None, "relu", False, False, 1),)), x


def _conv_float32_case(ref=False):
    x = torch.randn(4, 30, 5, requires_grad=True)
    ws = [torch.randn(3, 5, k, requires_grad=True) for k in (1, 3, 5)]
    y = (multiwidth_conv1d_ref if ref else multiwidth_conv1d)(x, torch.tensor([30, 4, 17, 9]), ws)
    return torch.autograd.grad((y.sum(),), [x, *ws], None, allow_unused=True) + (y,)


def _conv_sm90_launches(dtype):
    """Output-column block = next power of two of N in [16, 128]; input-channel block of the input
    gradient = next power of two of C in [16, 64]."""
    from .multiwidth_conv1d import triton as K

    B, T = 2, 70
    for C, widths, filters in ((5, (2,), 7), (20, (1, 3, 5, 9, 15, 21), 10), (33, (3, 5), 16), (80, (9,), 100)):
        ctx = {"op": "multiwidth_conv1d", "case": f"C={C} N={filters * len(widths)}"}
        x = _t(B, T, C, dtype=dtype)
        ws = [_t(filters, C, k, dtype=dtype) for k in widths]
        bias, L = _t(filters * len(widths), dtype=dtype), _lengths(B, T)
        yield ctx, lambda: K.multiwidth_conv1d_fwd_triton(x, L, ws, bias, "relu", False, False, 1)
        y = _t(B, T, filters * len(widths), dtype=dtype)
        yield ctx, lambda: K.multiwidth_conv1d_bwd_triton(y, x, L, ws, y, "relu", False, False, 1, True, True, splits=2)
    # The QRNN's gate convolutions: width 2, causal, tanh / sigmoid fused (C = 512: layer 2 of a
    # bidirectional 256-unit stack, N = 256 per gate).
    ctx = {"op": "multiwidth_conv1d", "case": "QRNN gate C=512 N=256"}
    x, ws = _t(B, T, 512, dtype=dtype), [_t(256, 512, 2, dtype=dtype)]
    bias, L, y = _t(256, dtype=dtype), _lengths(B, T), _t(B, T, 256, dtype=dtype)
    for act in ("tanh", "sigmoid"):
        yield ctx, lambda act=act: K.multiwidth_conv1d_fwd_triton(x, L, ws, bias, act, True, False, 1)
        yield ctx, lambda act=act: K.multiwidth_conv1d_bwd_triton(y, x, L, ws, y, act, True, False, 1, True, True,
                                                                  splits=2)


MULTIWIDTH_CONV1D = OpSpec(
    name="multiwidth_conv1d", public=multiwidth_conv1d, reference=multiwidth_conv1d_ref,
    schemas=("multiwidth_conv1d_fwd", "multiwidth_conv1d_bwd"),
    per_step_inputs=("x",), workspaces=(),
    triton_module="sublocal_kernels.ops.multiwidth_conv1d.triton",
    kernels=("_multiwidth_conv1d_fwd_kernel", "_multiwidth_conv1d_dx_kernel", "_multiwidth_conv1d_dw_kernel"),
    benchmark="benchmarks/bench_multiwidth_conv1d.py",
    lengths_case=_conv_lengths_case, float32_case=_conv_float32_case, sm90_launches=_conv_sm90_launches,
)


# ---- attention_pool ------------------------------------------------------------------------------

def _attention_lengths_case(lengths, B, T):
    torch.manual_seed(0)
    h = torch.randn(B, T, 4, dtype=torch.float64, requires_grad=True)
    w, v = torch.randn(4, 6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    b = torch.zeros(6, dtype=torch.float64)
    return (lambda lengths=lengths: attention_pool(h, lengths, w, v, b)), (
        lambda: torch.ops.sublocal.attention_pool_fwd(h, lengths, w, v, b)), h


def _attention_float32_case(ref=False):
    h = torch.randn(4, 25, 12, requires_grad=True)
    w, v = torch.randn(12, 7, requires_grad=True), torch.randn(7, requires_grad=True)
    ctx, alpha = (attention_pool_ref if ref else attention_pool)(h, torch.tensor([25, 2, 11, 17]), w, v)
    return torch.autograd.grad((ctx.sum() + (alpha * torch.arange(25.0)).sum(),), [h, w, v], None,
                               allow_unused=True) + (ctx, alpha)


def _attention_sm90_launches(dtype):
    """One block configuration per dtype (``_config``); the backward in one or several slices."""
    from .attention_pool import triton as K

    B, T = 3, 70
    for D, A in ((9, 11), (512, 400)):
        ctx = {"op": "attention_pool", "case": f"D={D} A={A}"}
        h, L = _t(B, T, D, dtype=dtype), _lengths(B, T)
        w, v, b = _t(D, A, dtype=dtype), _t(A, dtype=dtype), _t(A, dtype=dtype)
        yield ctx, lambda: K.attention_pool_fwd_triton(h, L, w, v, b)
        ctx_, alpha = _t(B, D, dtype=dtype), _t(B, T, dtype=dtype)
        yield ctx, lambda: K.attention_pool_bwd_triton(ctx_, alpha, h, L, w, v, b, ctx_, alpha, dw_split=2)


ATTENTION_POOL = OpSpec(
    name="attention_pool", public=attention_pool, reference=attention_pool_ref,
    schemas=("attention_pool_fwd", "attention_pool_bwd", "attention_pool_infer"),
    per_step_inputs=("h",), workspaces=("activations",),
    triton_module="sublocal_kernels.ops.attention_pool.triton",
    kernels=("_attention_pool_fwd_kernel", "_attention_pool_combine_kernel", "_attention_pool_alpha_kernel",
             "_attention_pool_bwd_prep_kernel", "_attention_pool_bwd_r_kernel", "_attention_pool_bwd_dh_kernel",
             "_attention_pool_bwd_dw_kernel"),
    benchmark="benchmarks/bench_attention_pool.py",
    lengths_case=_attention_lengths_case, float32_case=_attention_float32_case,
    sm90_launches=_attention_sm90_launches,
)


# ---- channel_attention_pool ----------------------------------------------------------------------

def _channel_attention_lengths_case(lengths, B, T):
    torch.manual_seed(0)
    v = torch.randn(B, T, 4, dtype=torch.float64, requires_grad=True)
    e = torch.randn(B, T, 4, dtype=torch.float64, requires_grad=True)
    return (lambda lengths=lengths: channel_attention_pool(v, e, lengths)), (
        lambda: torch.ops.sublocal.channel_attention_pool_fwd(v, e, lengths, False)), v


def _channel_attention_float32_case(ref=False):
    v = torch.randn(4, 26, 19, requires_grad=True)
    e = torch.randn(4, 26, 19, requires_grad=True)
    lengths = torch.tensor([26, 2, 11, 17])
    if ref:
        ctx, mx, alpha = channel_attention_pool_ref(v, e, lengths)
    else:
        ctx, mx, alpha = channel_attention_pool(v, e, lengths, return_alpha=True)
    return torch.autograd.grad((ctx.sum() + mx.sum() + (alpha * torch.arange(26.0)[:, None]).sum(),), [v, e], None,
                               allow_unused=True) + (ctx, mx)


def _channel_attention_sm90_launches(dtype):
    """One (sequence, channel block) per program; with and without alpha, every gradient or only
    the logits'."""
    from .channel_attention_pool import triton as K

    B, T = 3, 70
    sd = _state_dtype(dtype)
    for D in (9, 1024):
        ctx = {"op": "channel_attention_pool", "case": f"D={D}"}
        v, e, L = _t(B, T, D, dtype=dtype), _t(B, T, D, dtype=dtype), _lengths(B, T)
        c = _t(B, D, dtype=dtype)
        lse, arg = torch.zeros(B, D, dtype=sd), torch.zeros(B, D, dtype=torch.int64)
        for alpha in (False, True):
            yield ctx, lambda: K.channel_attention_pool_fwd_triton(v, e, L, alpha)
        yield ctx, lambda: K.channel_attention_pool_bwd_triton(c, c, v, v, e, L, c, lse, arg, True, True)
        yield ctx, lambda: K.channel_attention_pool_bwd_triton(c, None, None, v, e, L, c, lse, arg, False, True)


CHANNEL_ATTENTION_POOL = OpSpec(
    name="channel_attention_pool", public=channel_attention_pool, reference=channel_attention_pool_ref,
    schemas=("channel_attention_pool_fwd", "channel_attention_pool_bwd"),
    per_step_inputs=("values", "logits"), workspaces=("lse", "argmax"),
    triton_module="sublocal_kernels.ops.channel_attention_pool.triton",
    kernels=("_channel_attention_pool_fwd_kernel", "_channel_attention_pool_bwd_kernel"),
    benchmark="benchmarks/bench_channel_attention_pool.py",
    lengths_case=_channel_attention_lengths_case, float32_case=_channel_attention_float32_case,
    sm90_launches=_channel_attention_sm90_launches,
)


OPS: tuple[OpSpec, ...] = (LSTM, MLSTM, FO_POOL, MULTIWIDTH_CONV1D, ATTENTION_POOL, CHANNEL_ATTENTION_POOL)


def get(name: str) -> OpSpec:
    """The op named ``name`` (``OpSpec.name``)."""
    for spec in OPS:
        if spec.name == name:
            return spec
    raise KeyError(f"no op {name!r}; have {', '.join(s.name for s in OPS)}")
