"""The recurrent kernel family, ``sk.lstm(..., cell="lstm" | "mlstm")``: every test the two cells
share, parametrised over the cell. The C++ kernels and the Triton kernels (under the interpreter)
against the reference; gradients, registration, the inference path, the mean pool, bad input, CUDA.

What only one cell has stays with it: ``test_lstm.py`` (against ``torch.nn.LSTM`` on a
``PackedSequence``), ``test_mlstm.py`` (the LSTM as a special case, the units schedule, the
inference lanes). Where the two cells' tests used different sizes or dtypes, both cells now run
the union; only the CUDA tests keep each cell's own cases (and reference: the LSTM's against the
CPU kernel in float64, the mLSTM's against the CPU kernel in the same dtype).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import sublocal_kernels as sk
from sublocal_kernels.ops.lstm import lstm_ref, weight_names
from tests.helpers import assert_close, random_lengths, triton_interpreted
from tests.ops.test_inference import MODES, _allocations, _infer, _OpLog, _peak

# Low precision against the float64 reference on the same rounded inputs: outputs within the
# dtype's tolerance; gradients (sums over every valid step) within 4x it.
GRAD_SCALE = 4.0


# ---- the cells ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """What the shared tests need to know about a cell."""

    name: str
    per_direction: int  # tensors per direction with biases: nn.LSTM's four, the mLSTM's six
    gate_width: int  # the training workspace: gates (D, N, gate_width H), states (D, N, state_width H)
    state_width: int
    infer_bit_exact: bool  # the CPU inference kernel returns the training forward's outputs bit for bit

    def params(self, C, H, bidirectional=True, bias=True, dtype=torch.float64) -> list[torch.Tensor]:
        """One layer's tensors in the op's order, from the module's initialisation (no grad)."""
        if self.name == "lstm":
            module = torch.nn.LSTM(C, H, bias=bias, batch_first=True, bidirectional=bidirectional).to(dtype)
            return [p.detach().clone() for p in module.parameters()]
        layer = sk.nn.LSTM(C, H, bias=bias, bidirectional=bidirectional, cell=self.name).to(dtype)
        return [p.detach().clone() for p in layer.layer_weights(0)]

    @property
    def fwd(self):
        return getattr(torch.ops.sublocal, f"{self.name}_fwd")

    @property
    def bwd(self):
        return getattr(torch.ops.sublocal, f"{self.name}_bwd")

    @property
    def infer(self):
        return getattr(torch.ops.sublocal, f"{self.name}_infer")

    def triton(self, kind: str):
        """The Triton launcher ``<cell>_<kind>_triton`` (kind: fwd, infer, bwd)."""
        from sublocal_kernels.ops.lstm import triton as kernels

        return getattr(kernels, f"{self.name}_{kind}_triton")


LSTM = Cell("lstm", per_direction=4, gate_width=4, state_width=2, infer_bit_exact=True)
# The mLSTM's inference kernel projects the input one step at a time, training one GEMM per
# direction: equal up to the last bits of that product, not bit for bit.
MLSTM = Cell("mlstm", per_direction=6, gate_width=5, state_width=3, infer_bit_exact=False)
CELLS = [pytest.param(LSTM, id="lstm"), pytest.param(MLSTM, id="mlstm")]


def per_cell(cell_cases):
    """pytest.params of (cell, *case) from {cell: [pytest.param(*case, id=...)]}: each cell's own cases."""
    return [pytest.param(cell, *p.values, id=f"{cell.name}-{p.id}", marks=p.marks)
            for cell, cases in cell_cases.items() for p in cases]


# ---- helpers ------------------------------------------------------------------------------------

def pattern_lengths(B, T, pattern):
    if pattern == "equal":
        return torch.full((B,), T, dtype=torch.int64)
    if pattern == "different":  # all distinct, T included, shuffled
        assert B <= T
        return torch.linspace(T, 1, B).round().long()[torch.randperm(B)]
    if pattern == "one-short":  # one sequence of length 1 among long ones
        L = torch.full((B,), T, dtype=torch.int64)
        L[B // 2] = 1
        return L
    return random_lengths(B, T, low=1)


def states(D, B, H, dtype=torch.float64, device="cpu"):
    return (torch.randn(D, B, H, dtype=dtype, device=device), torch.randn(D, B, H, dtype=dtype, device=device))


def run(fn, leaves, cotangents):
    """fn() -> (out, h_n, c_n); returns the outputs and the gradients of ``leaves``."""
    outs = fn()
    grads = torch.autograd.grad(outs, leaves, cotangents, allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for x, g in zip(leaves, grads)]
    return [o.detach() for o in outs], grads


def leaf(t):
    return None if t is None else t.detach().clone().requires_grad_(True)


def with_threads(n, fn):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(old)


def masked_mean(out, L):
    T = out.shape[1]
    valid = (torch.arange(T)[None, :] < L[:, None]).to(out.dtype)
    return (out * valid[..., None]).sum(1) / L[:, None].to(out.dtype)


def compare_with_reference(cell, B, T, C, H, pattern, bidirectional, bias=True, with_state=True,
                           dtype=torch.float64):
    """sk.lstm's outputs and gradients against lstm_ref's; below float64 the kernel gets the
    inputs rounded to ``dtype`` and the float64 reference the same values."""
    D = 2 if bidirectional else 1
    params = [leaf(p) for p in cell.params(C, H, bidirectional, bias, torch.float64)]
    x = torch.randn(B, T, C, dtype=torch.float64, requires_grad=True)
    L = pattern_lengths(B, T, pattern)
    h0, c0 = (leaf(t) for t in states(D, B, H)) if with_state else (None, None)
    leaves = [x] + ([h0, c0] if with_state else []) + params
    cot = [torch.randn(B, T, D * H, dtype=torch.float64), *states(D, B, H)]
    want, g_want = run(lambda: lstm_ref(x, L, params, h0, c0, bidirectional, cell=cell.name), leaves, cot)
    lo = [leaf(t.detach().to(dtype)) for t in leaves]
    lo_cot = [c.to(dtype) for c in cot]
    n = 3 if with_state else 1
    if dtype != torch.float64:
        leaves = [leaf(t.detach().double()) for t in lo]
        want, g_want = run(lambda: lstm_ref(leaves[0], L, leaves[n:], *(leaves[1:3] if with_state else (None, None)),
                                            bidirectional, cell=cell.name), leaves, [c.double() for c in lo_cot])
    got, g_got = run(lambda: sk.lstm(lo[0], L, lo[n:], *(lo[1:3] if with_state else (None, None)), bidirectional,
                                     cell=cell.name), lo, lo_cot)
    names = ["x"] + (["h0", "c0"] if with_state else []) + weight_names(bidirectional, bias, cell=cell.name)
    for name, a, e in zip(["out", "h_n", "c_n"], got, want):
        assert a.dtype == dtype
        assert_close(a, e, dtype, name=name)
    for name, a, e in zip(names, g_got, g_want):
        assert a.dtype == dtype
        assert_close(a, e, dtype, scale=1.0 if dtype == torch.float64 else GRAD_SCALE, name=f"grad {name}")


# ---- the C++ kernels against the reference ------------------------------------------------------

REFERENCE_CASES = [
    *(pytest.param(B, T, C, H, "random", bi, id=f"B{B}-T{T}-C{C}-H{H}-{'bi' if bi else 'uni'}")
      for B, T, C, H in [(1, 1, 1, 1), (3, 7, 5, 6), (5, 63, 20, 17), (4, 151, 3, 10)] for bi in (True, False)),
    pytest.param(5, 9, 3, 7, "random", True, id="B5-T9-C3-H7-bi"),
    pytest.param(4, 63, 10, 19, "different", False, id="B4-T63-C10-H19-uni"),
    pytest.param(6, 1, 5, 3, "equal", True, id="B6-T1-C5-H3-bi"),
    pytest.param(7, 40, 1, 33, "one-short", True, id="B7-T40-C1-H33-bi-len1"),
]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("B,T,C,H,pattern,bidirectional", REFERENCE_CASES)
def test_matches_reference_float64(cell, B, T, C, H, pattern, bidirectional, poisoned):
    compare_with_reference(cell, B, T, C, H, pattern, bidirectional)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bias,with_state", [(False, True), (True, False), (False, False)],
                         ids=["nobias-state", "bias-nostate", "nobias-nostate"])
def test_matches_reference_bias_and_state(cell, bias, with_state):
    compare_with_reference(cell, 5, 12, 4, 6, "random", True, bias=bias, with_state=with_state)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("B,T,C,H", [pytest.param(4, 50, 20, 24, id="B4-T50-C20-H24"),
                                     pytest.param(4, 17, 5, 11, id="B4-T17-C5-H11")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["f32", "bf16", "f16"])
def test_cpu_low_precision(cell, B, T, C, H, dtype, poisoned):
    compare_with_reference(cell, B, T, C, H, "random", True, dtype=dtype)


@pytest.mark.parametrize("cell", CELLS)
def test_multithreaded_tiles_match_reference(cell):
    # More threads than directions: the sorted batch is split into tiles, one time loop each.
    with_threads(4, lambda: compare_with_reference(cell, 9, 21, 3, 5, "random", False))


@pytest.mark.parametrize("cell", CELLS)
def test_long_sequences_float64(cell):
    params = cell.params(3, 8)
    x = torch.randn(2, 1134, 3, dtype=torch.float64)
    L = torch.tensor([1134, 517])
    for a, e in zip(sk.lstm(x, L, params, cell=cell.name), lstm_ref(x, L, params, cell=cell.name)):
        assert_close(a, e)


@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck_bidirectional(cell):
    x = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    h0, c0 = (leaf(t) for t in states(2, 3, 2))
    L = torch.tensor([4, 1, 3])
    params = [leaf(p) for p in cell.params(2, 2)]
    def fn(x_, h_, c_, *w):
        return sk.lstm(x_, L, list(w), h_, c_, cell=cell.name)
    assert torch.autograd.gradcheck(fn, (x, h0, c0, *params))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,H", [(4, 2), (5, 3)], ids=["T4-H2", "T5-H3"])
def test_gradcheck_unidirectional_no_bias(cell, T, H):
    x = torch.randn(2, T, 3, dtype=torch.float64, requires_grad=True)
    L = torch.tensor([2, T])
    params = [leaf(p) for p in cell.params(3, H, bidirectional=False, bias=False)]
    def fn(x_, *w):
        return sk.lstm(x_, L, list(w), bidirectional=False, cell=cell.name)
    assert torch.autograd.gradcheck(fn, (x, *params))


# ---- the ops' contracts -------------------------------------------------------------------------

def _op_args(cell, requires_grad, dtype=torch.float32):
    x = torch.randn(3, 6, 5, dtype=dtype, requires_grad=requires_grad)
    h0, c0 = (t.to(dtype).requires_grad_(requires_grad) for t in states(2, 3, 4))
    params = [p.to(dtype).requires_grad_(requires_grad) for p in cell.params(5, 4)]
    return x, torch.tensor([6, 1, 4]), params, h0, c0, True


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
def test_opcheck_forward(cell, requires_grad):
    torch.library.opcheck(cell.fwd, _op_args(cell, requires_grad))


@pytest.mark.parametrize("cell", CELLS)
def test_opcheck_backward_and_infer(cell):
    x, L, params, h0, c0, bidir = _op_args(cell, False)
    out, h_n, c_n, gates, st_ = cell.fwd(x, L, params, h0, c0, bidir)
    torch.library.opcheck(cell.bwd, (torch.randn_like(out), torch.randn_like(h_n), torch.randn_like(c_n), x, L, params,
                                     None, c0, gates, st_, bidir))
    torch.library.opcheck(cell.infer.default, _op_args(cell, False))


@pytest.mark.parametrize("cell", CELLS)
def test_backward_grad_out_none_means_zeros(cell):
    """An unused `out` (a classifier on the final states) reaches the kernel as None: the same
    gradients as zeros (tests/ops/test_conventions.py checks that autograd passes the None)."""
    x, L, params, h0, c0, bidir = _op_args(cell, False, torch.float64)
    out, h_n, c_n, gates, st_ = cell.fwd(x, L, params, h0, c0, bidir)
    g_h, g_c = torch.randn_like(h_n), torch.randn_like(c_n)
    with_zeros = cell.bwd(torch.zeros_like(out), g_h, g_c, x, L, params, h0, c0, gates, st_, bidir)
    with_none = cell.bwd(None, g_h, g_c, x, L, params, h0, c0, gates, st_, bidir)
    for a, b in zip(with_zeros, with_none):
        for u, v in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
            assert torch.equal(u, v)
    torch.library.opcheck(cell.bwd, (None, g_h, g_c, x, L, params, None, c0, gates, st_, bidir))


@pytest.mark.parametrize("cell", CELLS)
def test_infer_op_refuses_a_backward(cell):
    x, L, params, h0, c0, bidir = _op_args(cell, False)
    x.requires_grad_()
    out, _, _ = cell.infer(x, L, params, h0, c0, bidir)
    with pytest.raises(RuntimeError, match=rf"{cell.name}_infer keeps nothing for a backward; "
                                           rf"use sublocal::{cell.name}_fwd"):
        out.sum().backward()


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("grad", [False, True], ids=["infer", "train"])
def test_final_states_only(cell, grad):
    """return_sequences=False: no `out` (None; the kernel's placeholder is (0,)), the same final
    states and, from a loss on them, the same gradients as with the full output, bit for bit."""
    torch.manual_seed(3)
    H, C = 5, 4
    params = [p.detach().double().requires_grad_(grad)
              for p in sk.nn.LSTM(C, H, cell=cell.name).double().layer_weights(0)]
    L = torch.tensor([7, 2, 5])
    runs = []
    for seq in (True, False):
        x = torch.randn(3, 7, C, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(grad)
        out, h_n, c_n = sk.lstm(x, L, params, cell=cell.name, return_sequences=seq)
        assert (out is None) == (not seq)
        grads = torch.autograd.grad((h_n.sum() + c_n.square().sum()), [x, *params]) if grad else ()
        runs.append((h_n, c_n, *grads))
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    x = torch.randn(3, 7, C, dtype=torch.float64)
    assert cell.fwd(x, L, params, None, None, True, False)[0].shape == (0,)
    assert cell.infer(x, L, params, None, None, True, False)[0].shape == (0,)
    torch.library.opcheck(cell.fwd, (x, L, [p.detach() for p in params], None, None, True, False))
    torch.library.opcheck(cell.infer.default, (x, L, [p.detach() for p in params], None, None, True, False))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("value", ["no", "max"])
def test_return_sequences_rejects_other_values(cell, value):
    x, L, params, *_ = _op_args(cell, False)
    with pytest.raises(TypeError, match=rf"`return_sequences` must be a bool or 'mean', got '{value}'"):
        sk.lstm(x, L, params, cell=cell.name, return_sequences=value)


@pytest.mark.parametrize("cell", CELLS)
def test_torch_compile_fullgraph(cell):
    params = [p.float().requires_grad_() for p in cell.params(6, 8)]
    x = torch.randn(3, 20, 6, requires_grad=True)
    L = torch.tensor([20, 4, 11])

    def layer(x, L, params):
        out, h_n, c_n = sk.lstm(torch.tanh(x), L, params, cell=cell.name)
        return (out * 2).sum() + h_n.square().sum() + c_n.sum()

    compiled = torch.compile(layer, fullgraph=True)
    loss = compiled(x, L, params)
    grads = torch.autograd.grad(loss, [x] + params)
    ref = layer(x, L, params)
    ref_grads = torch.autograd.grad(ref, [x] + params)
    assert_close(loss, ref, name="loss")
    for a, e in zip(grads, ref_grads):
        assert_close(a, e, name="grad")


# ---- awkward inputs -----------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS)
def test_noncontiguous_inputs(cell):
    B, T, C, H = 3, 11, 4, 5
    params = cell.params(C, H)
    x = torch.randn(B, T, 2 * C, dtype=torch.float64)[:, :, ::2]
    # Scaled: the mLSTM's product m_t = (W_mx x)(W_mh h) of unit weights would saturate every gate.
    w = [torch.randn(p.shape[::-1], dtype=torch.float64).t() * 0.3 if p.dim() == 2 else p for p in params]
    h0 = torch.randn(2, H, B, dtype=torch.float64).transpose(1, 2)
    c0 = torch.randn(B, 2, H, dtype=torch.float64).transpose(0, 1)
    L = torch.tensor([11, 1, 6], dtype=torch.int32)
    assert not (x.is_contiguous() or h0.is_contiguous() or c0.is_contiguous())
    assert not any(t.is_contiguous() for t in w if t.dim() == 2)
    got = sk.lstm(x, L, w, h0, c0, cell=cell.name)
    want = lstm_ref(x.contiguous(), L, [t.contiguous() for t in w], h0.contiguous(), c0.contiguous(), cell=cell.name)
    for a, e in zip(got, want):
        assert_close(a, e)
    # gradients arriving non-contiguous (an expanded ones tensor from .sum())
    xr = x.clone().requires_grad_()
    sk.lstm(xr, L, w, h0, c0, cell=cell.name)[0].sum().backward()
    xr2 = x.clone().requires_grad_()
    lstm_ref(xr2, L, w, h0, c0, cell=cell.name)[0].sum().backward()
    assert_close(xr.grad, xr2.grad)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("B,T,C,H,lengths", [
    pytest.param(3, 8, 3, 4, [8, 2, 5], id="B3-T8-C3-H4"),
    pytest.param(4, 9, 3, 6, [9, 2, 5, 1], id="B4-T9-C3-H6-len1"),
])
def test_padding_is_never_read(cell, B, T, C, H, lengths):
    """NaN in the padded part of x changes nothing: no work is done on padding."""
    params = [leaf(p) for p in cell.params(C, H)]
    L = torch.tensor(lengths)
    x = torch.randn(B, T, C, dtype=torch.float64)
    x_nan = x.clone()
    for b in range(B):
        x_nan[b, int(L[b]):] = float("nan")
    xr = x_nan.clone().requires_grad_()
    got = sk.lstm(xr, L, params, cell=cell.name)
    for a, e in zip(got, sk.lstm(x, L, params, cell=cell.name)):
        assert torch.equal(a, e)
    for a, e in zip(got, lstm_ref(x, L, [p.detach() for p in params], cell=cell.name)):
        assert_close(a, e)
    sum(o.sum() for o in got).backward()
    assert torch.isfinite(xr.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in params)
    for b in range(B):  # padded positions: exactly zero output, no gradient into x
        assert (got[0][b, int(L[b]):] == 0).all() and (xr.grad[b, int(L[b]):] == 0).all()


@pytest.mark.parametrize("cell", CELLS)
def test_batch_order_and_length_forms(cell):
    params = cell.params(3, 4)
    x = torch.randn(4, 6, 3, dtype=torch.float64)
    L = torch.tensor([3, 6, 1, 6])
    out, h_n, c_n = sk.lstm(x, L, params, cell=cell.name)
    perm = torch.tensor([2, 0, 3, 1])
    out_p, h_p, c_p = sk.lstm(x[perm], L[perm], params, cell=cell.name)
    assert torch.equal(out_p, out[perm]) and torch.equal(h_p, h_n[:, perm]) and torch.equal(c_p, c_n[:, perm])
    for form in ([3, 6, 1, 6], L.int()):
        assert torch.equal(sk.lstm(x, form, params, cell=cell.name)[0], out)
    full = sk.lstm(x, None, params, cell=cell.name)
    for a, e in zip(full, sk.lstm(x, [6, 6, 6, 6], params, cell=cell.name)):
        assert torch.equal(a, e)


@pytest.mark.parametrize("cell", CELLS)
def test_empty_batch(cell):
    x = torch.randn(0, 5, 3, dtype=torch.float64, requires_grad=True)
    out, h_n, c_n = sk.lstm(x, torch.zeros(0, dtype=torch.int64), cell.params(3, 4), cell=cell.name)
    assert out.shape == (0, 5, 8) and h_n.shape == (2, 0, 4) and c_n.shape == (2, 0, 4)
    out.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("cell", CELLS)
@given(
    B=st.integers(1, 4),
    T=st.integers(1, 10),
    C=st.integers(1, 4),
    H=st.integers(1, 5),
    bidirectional=st.booleans(),
    bias=st.booleans(),
    with_state=st.booleans(),
    data=st.data(),
)
def test_property_matches_reference(cell, B, T, C, H, bidirectional, bias, with_state, data):
    lengths = torch.tensor(data.draw(st.lists(st.integers(1, T), min_size=B, max_size=B)))
    D = 2 if bidirectional else 1
    params = [leaf(p) for p in cell.params(C, H, bidirectional, bias)]
    x = torch.randn(B, T, C, dtype=torch.float64, requires_grad=True)
    h0, c0 = (leaf(t) for t in states(D, B, H)) if with_state else (None, None)
    leaves = [x] + ([h0, c0] if with_state else []) + params
    cot = [torch.randn(B, T, D * H, dtype=torch.float64), *states(D, B, H)]
    got, g_got = run(lambda: sk.lstm(x, lengths, params, h0, c0, bidirectional, cell=cell.name), leaves, cot)
    want, g_want = run(lambda: lstm_ref(x, lengths, params, h0, c0, bidirectional, cell=cell.name), leaves, cot)
    for a, e in zip(got + g_got, want + g_want):
        assert_close(a, e)


# ---- the inference path -------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("B,T,C,H,bidirectional,bias,with_state", [
    pytest.param(9, 37, 5, 13, True, True, True, id="bi-odd-H13-state"),
    pytest.param(6, 23, 3, 16, False, False, False, id="uni-nobias"),
    pytest.param(1, 41, 7, 5, True, True, False, id="B1-H5"),
    pytest.param(7, 29, 5, 13, True, True, True, id="B7-T29-bi-state"),
])
def test_inference_matches_training(cell, B, T, C, H, bidirectional, bias, with_state, mode, dtype):
    D = 2 if bidirectional else 1
    params = [p.to(dtype).requires_grad_() for p in cell.params(C, H, bidirectional, bias)]
    x = torch.randn(B, T, C, dtype=dtype, requires_grad=True)
    L = random_lengths(B, T)
    h0, c0 = (t.to(dtype) for t in states(D, B, H)) if with_state else (None, None)
    want = sk.lstm(x, L, params, h0, c0, bidirectional, cell=cell.name)
    assert want[0].grad_fn is not None
    got = _infer(mode, lambda x, *p: sk.lstm(x, L, list(p), h0, c0, bidirectional, cell=cell.name), x, *params)
    for a, e, name in zip(got, want, ["out", "h_n", "c_n"]):
        assert a.grad_fn is None, f"{name}: the inference path recorded a graph"
        if cell.infer_bit_exact:
            assert torch.equal(a, e.detach()), f"{name}: differs by {(a - e.detach()).abs().max().item()}"
        else:  # the input projection per step instead of one GEMM: equal up to the last bits
            assert_close(a, e, scale=0.01 if dtype == torch.float64 else 1.0, name=name)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("B,T,C,H,bidirectional", [
    pytest.param(8, 300, 20, 64, True, id="B8-T300-C20-H64-bi"),
    pytest.param(8, 300, 10, 48, False, id="B8-T300-C10-H48-uni"),
])
def test_inference_dispatch_and_memory(cell, B, T, C, H, bidirectional):
    # Every tensor under 4 MiB: larger blocks of the CPU output cache bypass the profiled allocator.
    D = 2 if bidirectional else 1
    params = cell.params(C, H, bidirectional, dtype=torch.float32)
    x = torch.randn(B, T, C)
    L = torch.tensor([300, 1, 150, 275, 37, 200, 99, 250])
    N = int(L.sum())
    gates_bytes = D * N * cell.gate_width * H * 4
    states_bytes = D * N * cell.state_width * H * 4
    out_bytes = B * T * D * H * 4
    with _OpLog() as log, torch.no_grad():
        sk.lstm(x, L, params, bidirectional=bidirectional, cell=cell.name)
    assert f"sublocal::{cell.name}_infer" in log.names and f"sublocal::{cell.name}_fwd" not in log.names
    x_train = x.clone().requires_grad_()
    train = _allocations(lambda: sk.lstm(x_train, L, params, bidirectional=bidirectional, cell=cell.name))
    assert gates_bytes in train and states_bytes in train
    for mode in MODES:
        infer = _allocations(lambda: _infer(mode, lambda x, *p: sk.lstm(x, L, list(p), bidirectional=bidirectional,
                                                                       cell=cell.name), x, *params))
        # The training forward allocates its workspace; the inference one never anything that
        # large: its largest tensor is the output.
        assert max(infer) == out_bytes, (mode, max(infer), out_bytes)
        assert _peak(infer) < 0.5 * _peak(train), (mode, _peak(infer), _peak(train))


# ---- the mean pool (return_sequences="mean") ----------------------------------------------------

@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("schedule", ["tiles", "units"])
@pytest.mark.parametrize("bidirectional", [True, False], ids=["bi", "uni"])
def test_mean_pool_matches_reference(monkeypatch, cell, schedule, bidirectional):
    monkeypatch.setenv("SUBLOCAL_LSTM_SCHEDULE", schedule)
    B, T, C, H = 7, 23, 5, 18
    D = 2 if bidirectional else 1
    params = cell.params(C, H, bidirectional)
    x = torch.randn(B, T, C, dtype=torch.float64)
    L = random_lengths(B, T)
    ref_out, ref_h, ref_c = lstm_ref(x, L, params, bidirectional=bidirectional, cell=cell.name)
    want = masked_mean(ref_out, L)
    with torch.inference_mode():  # the kernel's own pooling: no (B, T, D H) output
        log = _OpLog()
        with log:
            mean, h_n, c_n = sk.lstm(x, L, params, bidirectional=bidirectional, cell=cell.name,
                                     return_sequences="mean")
        assert f"sublocal::{cell.name}_infer" in log.names
    assert mean.shape == (B, D * H)
    assert_close(mean, want, name="mean")
    assert_close(h_n, ref_h, name="h_n")
    assert_close(c_n, ref_c, name="c_n")
    # With a gradient, the sequence is computed and averaged; the gradient flows through it.
    xg = x.clone().requires_grad_()
    pg = [p.clone().requires_grad_() for p in params]
    mean_g, _, _ = sk.lstm(xg, L, pg, bidirectional=bidirectional, cell=cell.name, return_sequences="mean")
    assert_close(mean_g, want, name="mean with grad")
    cot = torch.randn_like(mean_g)
    got = torch.autograd.grad(mean_g, [xg, *pg], cot)
    xr = x.clone().requires_grad_()
    pr = [p.clone().requires_grad_() for p in params]
    expect = torch.autograd.grad(masked_mean(lstm_ref(xr, L, pr, bidirectional=bidirectional, cell=cell.name)[0], L),
                                 [xr, *pr], cot)
    for a, e in zip(got, expect):
        assert_close(a, e, name="grad")


@pytest.mark.parametrize("cell", CELLS)
def test_mean_pool_through_the_module_and_packed_input(cell):
    layer = sk.nn.LSTM(4, 6, num_layers=2, cell=cell.name).double()
    x = torch.randn(3, 8, 4, dtype=torch.float64)
    L = torch.tensor([8, 2, 5])
    with torch.no_grad():
        out, _ = layer(x, L)
        mean, (h_n, _) = layer(x, L, return_sequences="mean")
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, L, batch_first=True, enforce_sorted=False)
        mean_p, _ = layer(packed, return_sequences="mean")
    assert_close(mean, masked_mean(out, L), name="mean")
    assert_close(mean_p, mean, name="packed")
    assert h_n.shape == (4, 3, 6)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("sequences", [False, True], ids=["no-seq", "seq"])
def test_opcheck_infer_mean(cell, sequences):
    x, L, params, h0, c0, bidir = _op_args(cell, False)
    torch.library.opcheck(cell.infer.default, (x, L, params, h0, c0, bidir, sequences, True))


# ---- bad input: one test per rule ---------------------------------------------------------------

def _ok(cell):
    return dict(x=torch.randn(2, 5, 3), lengths=torch.tensor([5, 2]), weights=cell.params(3, 4, dtype=torch.float32),
                h0=torch.zeros(2, 2, 4), c0=torch.zeros(2, 2, 4), bidirectional=True, cell=cell.name)


def _set_weight(k, value):
    def change(a):
        a["weights"] = list(a["weights"])
        a["weights"][k] = value(a["weights"][k])
    return change


def _bad_input_rules(cell):
    """(id, change, exception, pattern) for one cell: the rules every cell shares, then its own."""
    n = cell.per_direction  # 2 n tensors with biases (bidirectional), 2 (n - 2) without
    count = rf"`weights` must hold {2 * (n - 2)} tensors \(no bias\) or {2 * n} \(with bias\) for bidirectional=True"
    rules = [
        ("x-not-tensor", lambda a: a.update(x=a["x"].numpy()), TypeError, r"`x` must be a torch.Tensor"),
        ("x-ndim", lambda a: a.update(x=a["x"][0]), ValueError, r"`x` must have 3 dimensions"),
        ("x-int", lambda a: a.update(x=a["x"].int()), TypeError, r"`x` must have dtype"),
        ("cell-unknown", lambda a: a.update(cell="gru"), ValueError,
         r"lstm: `cell` must be one of 'lstm', 'mlstm', got 'gru'"),
        ("weights-not-list", lambda a: a.update(weights=a["weights"][0]), TypeError,
         r"`weights` must be a list or tuple of tensors"),
        ("weights-count", lambda a: a.update(weights=a["weights"][:3]), ValueError, count + r".*got 3"),
        ("weight-hh-shape", _set_weight(1, lambda w: w[:, :3]), ValueError,
         r"`weights\[1\]` \(weight_hh_l0\) must have shape \(4H, H\)"),
        ("weight-ih-shape", _set_weight(0, lambda w: w[:, :2]), ValueError,
         r"`weights\[0\]` must have shape \(16, 3\) \(weight_ih_l0\)"),
        ("bias-shape", _set_weight(n + 2, lambda w: w[:8]), ValueError,
         rf"`weights\[{n + 2}\]` must have shape \(16,\) \(bias_ih_l0_reverse\)"),
        ("weight-dtype", _set_weight(5, lambda w: w.double()), TypeError,
         r"`weights\[5\]` has dtype torch.float64 but `x`"),
        ("weight-device", _set_weight(2, lambda w: w.to("meta")), ValueError,
         r"`weights\[2\]` is on meta but `x` is on cpu"),
        ("weight-not-tensor", _set_weight(3, lambda w: w.tolist()), TypeError,
         r"`weights\[3\]` must be a torch.Tensor"),
        ("h0-shape", lambda a: a.update(h0=a["h0"][:1]), ValueError, r"`h0` must have shape \(2, 2, 4\)"),
        ("c0-dtype", lambda a: a.update(c0=a["c0"].double()), TypeError, r"`c0` has dtype torch.float64"),
        ("length-too-long", lambda a: a.update(lengths=torch.tensor([5, 6])), ValueError,
         r"`lengths\[1\]` = 6 is out of range.*\[1, 5\]"),
        ("length-zero", lambda a: a.update(lengths=torch.tensor([0, 2])), ValueError,
         r"`lengths\[0\]` = 0 is out of range.*\[1, 5\]"),
        ("lengths-shape", lambda a: a.update(lengths=torch.tensor([5])), ValueError,
         r"`lengths` must have shape \(2,\)"),
        ("lengths-float", lambda a: a.update(lengths=torch.tensor([5.0, 2.0])), TypeError,
         r"`lengths` must have dtype int32 or int64"),
        ("lengths-string", lambda a: a.update(lengths="5,2"), TypeError,
         r"`lengths` must be a torch.Tensor or a list of ints"),
        ("bidirectional-type", lambda a: a.update(bidirectional=1), TypeError, r"`bidirectional` must be a bool"),
    ]
    if cell.name == "mlstm":
        rules += [
            # 8 tensors read as the no-bias layout: position 2 must then be weight_mx, not a bias.
            ("weights-count-lstm-like", lambda a: a.update(weights=a["weights"][:8]), ValueError,
             r"`weights\[2\]` must have 2 dimensions \(weight_mx_l0\), got shape \(16,\)"),
            ("weights-count-7", lambda a: a.update(weights=a["weights"][:7]), ValueError,
             (r"`weights` must hold 8 tensors \(no bias\) or 12 \(with bias\) "
              r"for bidirectional=True, cell=mlstm, got 7")),
            ("weight-mx-shape", _set_weight(4, lambda w: w[:, :2]), ValueError,
             r"`weights\[4\]` must have shape \(4, 3\) \(weight_mx_l0\)"),
            ("weight-mh-shape", _set_weight(11, lambda w: w[:3]), ValueError,
             r"`weights\[11\]` must have shape \(4, 4\) \(weight_mh_l0_reverse\)"),
        ]
    return [pytest.param(cell, *rule, id=f"{cell.name}-{name}") for name, *rule in rules]


@pytest.mark.parametrize("cell,change,exc,pattern", _bad_input_rules(LSTM) + _bad_input_rules(MLSTM))
def test_bad_input(cell, change, exc, pattern):
    args = _ok(cell)
    change(args)
    with pytest.raises(exc, match=pattern):
        sk.lstm(**args)


@pytest.mark.parametrize("cell", CELLS)
def test_op_level_checks_for_direct_callers(cell):
    a = _ok(cell)
    x, w, L = a["x"], a["weights"], a["lengths"]
    n = cell.per_direction
    for op in (cell.fwd, cell.infer):
        with pytest.raises(RuntimeError, match=r"`lengths\[0\]` = 9 is out of range"):
            op(x, torch.tensor([9, 1]), w, None, None, True)
    for count in (3, 7):
        with pytest.raises(RuntimeError, match=rf"{cell.name}_fwd: `weights` must hold {2 * (n - 2)} tensors "
                                               rf"\(no bias\) or {2 * n}"):
            cell.fwd(x, L, w[:count], None, None, True)
    with pytest.raises(RuntimeError, match=r"`weights\[1\]` \(weight_hh\) must have shape \(4H, H\)"):
        cell.fwd(x, L, [w[0], w[1][:, :3]] + w[2:], None, None, True)
    # Every other tensor, one at a time, a column (or an element) short.
    for k, name in enumerate(weight_names(True, True, cell=cell.name)):
        if k != 1:
            bad = w[:k] + [w[k][:, :1] if w[k].dim() == 2 else w[k][:1]] + w[k + 1:]
            shape = ", ".join(map(str, w[k].shape))
            with pytest.raises(RuntimeError, match=rf"`weights\[{k}\]` \({name.replace('_l0', '')}\) "
                                                   rf"must have shape \[{shape}\]"):
                cell.fwd(x, L, bad, None, None, True)
    with pytest.raises(RuntimeError, match=r"`h0` must have shape"):
        cell.fwd(x, L, w, a["h0"][:, :1], None, True)
    out, h_n, c_n, gates, st_ = cell.fwd(x, L, w, None, None, True)
    gates_shape = rf"`gates` must have shape \[2, 7, {cell.gate_width * 4}\]"
    with pytest.raises(RuntimeError, match=gates_shape):
        cell.bwd(out, h_n, c_n, x, L, w, None, None, gates[:, :3], st_, True)
    with pytest.raises(RuntimeError, match=gates_shape):
        cell.bwd(out, h_n, c_n, x, L, w, None, None, gates[..., :8], st_, True)
    with pytest.raises(RuntimeError, match=r"`grad_out` must have shape"):
        cell.bwd(out[:, :2], h_n, c_n, x, L, w, None, None, gates, st_, True)


# ---- Triton kernels on CPU tensors (interpreter; small: it runs element by element) -------------

TRITON_CASES = [
    pytest.param(3, 6, 3, 16, True, True, True, 16, id="B3-T6-C3-H16-bi-state"),
    pytest.param(17, 5, 2, 20, False, False, False, 16, id="B17-T5-C2-H20-uni-nobias-2tiles"),
    pytest.param(2, 7, 4, 33, True, True, False, 32, id="B2-T7-C4-H33-bi-block32"),
]


def _triton_case(cell, B, T, C, H, bidirectional, bias, with_state, dtype, block=None, lengths=None):
    """The Triton forward, inference forward and backward against the float64 reference."""
    D = 2 if bidirectional else 1
    params = [p.to(dtype) for p in cell.params(C, H, bidirectional, bias)]
    x = torch.randn(B, T, C, dtype=torch.float64).to(dtype)
    L = random_lengths(B, T, low=1) if lengths is None else torch.tensor(lengths)
    h0, c0 = (t.to(dtype) for t in states(D, B, H)) if with_state else (None, None)
    x_nan = x.clone()
    for b in range(B):
        x_nan[b, int(L[b]):] = float("nan")  # padding is never read
    cot = [torch.randn(B, T, D * H, dtype=torch.float64).to(dtype), *(t.to(dtype) for t in states(D, B, H))]
    blocks = dict(block_h=block, block_k=block)
    out, h_n, c_n, gates, st_ = cell.triton("fwd")(x_nan, L, params, h0, c0, bidirectional, **blocks)
    if dtype != torch.float64:
        assert gates.dtype == torch.float32 and st_.dtype == torch.float32  # state in float32
    inf = cell.triton("infer")(x_nan, L, params, h0, c0, bidirectional, **blocks)
    leaves = [leaf(x.double())] + ([leaf(h0.double()), leaf(c0.double())] if with_state else [])
    leaves += [leaf(p.double()) for p in params]
    ref_w = leaves[3:] if with_state else leaves[1:]
    want, g_want = run(lambda: lstm_ref(leaves[0], L, ref_w, leaves[1] if with_state else None,
                                        leaves[2] if with_state else None, bidirectional, cell=cell.name),
                       leaves, [c.double() for c in cot])
    for name, a, i, e in zip(["out", "h_n", "c_n"], (out, h_n, c_n), inf, want):
        assert a.dtype == dtype and i.dtype == dtype
        assert_close(a, e, dtype, name=name)
        assert_close(i, e, dtype, name=f"{name} (infer)")
        # The inference kernel projects the inputs per step (another summation order than the
        # training forward's one GEMM): equal up to rounding, not bit for bit.
        assert_close(i, a, dtype, name=f"{name}: infer against training kernel")
    gx, gw, gh0, gc0 = cell.triton("bwd")(*cot, x_nan, L, params, h0, c0, gates, st_, bidirectional, **blocks)
    got = [gx] + ([gh0, gc0] if with_state else []) + list(gw)
    for a, e in zip(got, g_want):
        assert_close(a, e, dtype, scale=1.0 if dtype == torch.float64 else GRAD_SCALE, name="grad")


@triton_interpreted
@pytest.mark.triton
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("B,T,C,H,bidirectional,bias,with_state,block", TRITON_CASES)
def test_triton_matches_reference(cell, B, T, C, H, bidirectional, bias, with_state, block, poisoned):
    _triton_case(cell, B, T, C, H, bidirectional, bias, with_state, torch.float64, block)


@triton_interpreted
@pytest.mark.triton
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("B,T,C,H,with_state,lengths", [
    pytest.param(3, 6, 5, 16, False, [6, 1, 4], id="B3-T6-C5-H16"),
    pytest.param(3, 6, 3, 16, True, None, id="B3-T6-C3-H16-state"),
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["f32", "bf16", "f16"])
def test_triton_low_precision(cell, B, T, C, H, with_state, lengths, dtype):
    _triton_case(cell, B, T, C, H, True, True, with_state, dtype, lengths=lengths)


@triton_interpreted
@pytest.mark.triton
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("B,T,C,H,bidirectional,bias,with_state,block", [
    pytest.param(3, 6, 3, 16, True, True, True, 16, id="B3-T6-C3-H16-bi-state"),
    pytest.param(17, 5, 20, 20, False, False, False, 16, id="B17-C20-H20-uni-nobias-2tiles"),
])
def test_triton_infer_matches_training_kernel(cell, B, T, C, H, bidirectional, bias, with_state, block, poisoned):
    D = 2 if bidirectional else 1
    params = cell.params(C, H, bidirectional, bias)
    x = torch.randn(B, T, C, dtype=torch.float64)
    L = random_lengths(B, T)
    for b in range(B):
        x[b, int(L[b]):] = float("nan")  # padding is never read
    h0, c0 = states(D, B, H) if with_state else (None, None)
    want = cell.triton("fwd")(x, L, params, h0, c0, bidirectional, block_h=block, block_k=block)[:3]
    got = cell.triton("infer")(x, L, params, h0, c0, bidirectional, block_h=block, block_k=block)
    ref = sk.lstm(x, L, params, h0, c0, bidirectional, cell=cell.name)
    for name, a, e, r in zip(["out", "h_n", "c_n"], got, want, ref):
        # The projection is summed in another order inside the kernel: equal up to rounding.
        assert_close(a, e, name=name)
        assert_close(a, r, name=name)


@triton_interpreted
@pytest.mark.triton
@pytest.mark.parametrize("cell", CELLS)
def test_cuda_wrappers_final_states_only_and_grad_out_none(cell):
    """The GPU path's wrappers (run here on CPU tensors through the interpreter): with
    sequences=False `out` is the (0,) placeholder and the states are unchanged; a None grad_out
    is zeros for the Triton backward."""
    from sublocal_kernels.ops.lstm.register import CUDA_KERNELS

    k = CUDA_KERNELS[cell.name]
    params = cell.params(3, 16)
    x, L = torch.randn(2, 5, 3, dtype=torch.float64), torch.tensor([5, 3])
    full = k["fwd"](x, L, params, None, None, True)
    final = k["fwd"](x, L, params, None, None, True, False)
    assert final[0].shape == (0,) and all(torch.equal(a, b) for a, b in zip(full[1:3], final[1:3]))
    assert k["infer"](x, L, params, None, None, True, False)[0].shape == (0,)
    out, h_n, c_n, gates, st_ = full
    g_h, g_c = torch.randn_like(h_n), torch.randn_like(c_n)
    with_zeros = k["bwd"](torch.zeros_like(out), g_h, g_c, x, L, params, None, None, gates, st_, True)
    with_none = k["bwd"](None, g_h, g_c, x, L, params, None, None, gates, st_, True)
    assert torch.equal(with_zeros[0], with_none[0]) and all(map(torch.equal, with_zeros[1], with_none[1]))


@triton_interpreted
@pytest.mark.triton
@pytest.mark.parametrize("cell", CELLS)
def test_cuda_wrapper_mean_pool(cell):
    """The GPU wrapper's mean=True (run here on CPU tensors through the interpreter): the Triton
    kernel's sequence averaged over each sequence's valid steps, as the CPU kernel pools."""
    from sublocal_kernels.ops.lstm.register import CUDA_KERNELS

    params = cell.params(3, 16, bidirectional=False)
    x, L = torch.randn(3, 6, 3, dtype=torch.float64), torch.tensor([6, 1, 4])
    mean, h_n, c_n = CUDA_KERNELS[cell.name]["infer"](x, L, params, None, None, False, False, True)
    out, ref_h, ref_c = lstm_ref(x, L, params, bidirectional=False, cell=cell.name)
    assert mean.shape == (3, 16)
    assert_close(mean, masked_mean(out, L), name="mean")
    assert_close(h_n, ref_h, name="h_n")
    assert_close(c_n, ref_c, name="c_n")


# ---- CUDA (skipped where no GPU is present) -----------------------------------------------------

# hidden sizes 1, 15, 64, 256, 300 x input sizes 1, 20, 60, 80 x lengths all equal, all
# different, one of length 1 among long ones; large hidden sizes on short sequences. Also the
# LSTM's cases against torch.nn.LSTM (tests/ops/test_lstm.py).
TORCH_CASES = [
    pytest.param(3, 9, 1, 1, "different", True, id="B3-T9-C1-H1-different"),
    pytest.param(4, 17, 20, 15, "equal", True, id="B4-T17-C20-H15-equal"),
    pytest.param(5, 23, 60, 15, "one-short", False, id="B5-T23-C60-H15-one-short-uni"),
    pytest.param(4, 31, 80, 64, "different", True, id="B4-T31-C80-H64-different"),
    pytest.param(6, 40, 20, 64, "one-short", True, id="B6-T40-C20-H64-one-short"),
    pytest.param(3, 12, 60, 256, "different", True, id="B3-T12-C60-H256-different"),
    pytest.param(4, 10, 1, 300, "one-short", True, id="B4-T10-C1-H300-one-short"),
    pytest.param(2, 8, 80, 300, "equal", False, id="B2-T8-C80-H300-equal-uni"),
]


@pytest.mark.cuda
@pytest.mark.parametrize("cell,B,T,C,H,pattern,bidirectional", per_cell({LSTM: TORCH_CASES + [
    pytest.param(128, 1000, 20, 256, "random", True, id="paper"),
    pytest.param(1, 1000, 20, 256, "equal", True, id="infer1"),
]}))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=["f32", "bf16", "f64"])
def test_cuda_matches_cpu_float64(cell, B, T, C, H, pattern, bidirectional, dtype, poisoned):
    """The GPU in ``dtype`` against the CPU kernel in float64 on the same rounded inputs."""
    D = 2 if bidirectional else 1
    params64 = cell.params(C, H, bidirectional)
    x64 = torch.randn(B, T, C, dtype=torch.float64)
    L = pattern_lengths(B, T, pattern)
    h0, c0 = states(D, B, H)
    cot = [torch.randn(B, T, D * H, dtype=torch.float64), *states(D, B, H)]
    dev = [t.to("cuda", dtype).requires_grad_() for t in [x64, h0, c0, *params64]]
    got, g_got = run(lambda: sk.lstm(dev[0], L.cuda(), dev[3:], dev[1], dev[2], bidirectional, cell=cell.name), dev,
                     [c.to("cuda", dtype) for c in cot])
    ref = [t.to(dtype).double().requires_grad_() for t in [x64, h0, c0, *params64]]
    want, g_want = run(lambda: sk.lstm(ref[0], L, ref[3:], ref[1], ref[2], bidirectional, cell=cell.name), ref,
                       [c.to(dtype).double() for c in cot])
    scale = 1.0 if dtype == torch.float64 else 8.0
    for a, e in zip(got, want):
        assert_close(a, e, dtype, scale=scale, name="output")
    for a, e in zip(g_got, g_want):
        assert_close(a, e, dtype, scale=scale * GRAD_SCALE, name="grad")


@pytest.mark.cuda
@pytest.mark.parametrize("cell,B,T,C,H,bidirectional", per_cell({MLSTM: [
    pytest.param(6, 50, 10, 64, False, id="B6-T50-C10-H64-uni"),
]}))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_cuda_matches_cpu_same_dtype(cell, B, T, C, H, bidirectional, dtype):
    """The GPU against the CPU kernel, both in ``dtype``."""
    D = 2 if bidirectional else 1
    params = [p.to(dtype) for p in cell.params(C, H, bidirectional)]
    x = torch.randn(B, T, C).to(dtype)
    L = random_lengths(B, T)
    leaves = [leaf(x)] + [leaf(p) for p in params]
    cuda = [leaf(t.cuda()) for t in leaves]
    cot = [torch.randn(B, T, D * H).to(dtype), *(t.to(dtype) for t in states(D, B, H))]
    want, g_want = run(lambda: sk.lstm(leaves[0], L, leaves[1:], bidirectional=bidirectional, cell=cell.name),
                       leaves, cot)
    got, g_got = run(lambda: sk.lstm(cuda[0], L.cuda(), cuda[1:], bidirectional=bidirectional, cell=cell.name), cuda,
                     [c.cuda() for c in cot])
    for a, e in zip(got + g_got, want + g_want):
        assert_close(a, e, dtype, scale=GRAD_SCALE)
