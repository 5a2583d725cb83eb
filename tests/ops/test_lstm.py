"""lstm: the kernels against torch.nn.LSTM on a PackedSequence and the reference; gradients,
registration, bad input, the Triton kernels under the interpreter, CUDA."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import sublocal_kernels as sk
from sublocal_kernels.ops.lstm import lstm_ref, weight_names
from tests.helpers import assert_close, random_lengths, triton_interpreted

OP_FWD = torch.ops.sublocal.lstm_fwd
OP_BWD = torch.ops.sublocal.lstm_bwd

# float32 against torch.nn.LSTM (also float32, MKL/oneDNN with its own summation order): the
# suite's float32 tolerance scaled by 10. Measured worst cases at these sizes: 1e-6 relative on
# outputs, 2e-5 on weight gradients summed over ~300 (sequence, step) pairs at H=300.
F32_VS_TORCH_SCALE = 10.0
# Low precision against the float64 reference on the same rounded inputs: outputs within the
# dtype's tolerance; gradients (sums over every valid step) within 4x it.
GRAD_SCALE = 4.0


def make_lstm(C, H, bidirectional=True, bias=True, dtype=torch.float64, device="cpu"):
    return torch.nn.LSTM(C, H, bias=bias, batch_first=True, bidirectional=bidirectional).to(dtype=dtype, device=device)


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


def nn_packed(module, x, lengths, h0=None, c0=None):
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, (h_n, c_n) = module(packed, (h0, c0)) if h0 is not None else module(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out, h_n, c_n


def run(fn, leaves, cotangents):
    """fn() -> (out, h_n, c_n); returns the outputs and the gradients of ``leaves``."""
    outs = fn()
    grads = torch.autograd.grad(outs, leaves, cotangents, allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for x, g in zip(leaves, grads)]
    return [o.detach() for o in outs], grads


def leaf(t):
    return None if t is None else t.detach().clone().requires_grad_(True)


def compare_with_torch(B, T, C, H, pattern, bidirectional, dtype, scale=1.0, bias=True, with_state=True):
    D = 2 if bidirectional else 1
    module = make_lstm(C, H, bidirectional, bias, dtype)
    x = torch.randn(B, T, C, dtype=dtype, requires_grad=True)
    L = pattern_lengths(B, T, pattern)
    h0, c0 = (leaf(t) for t in states(D, B, H, dtype)) if with_state else (None, None)
    params = list(module.parameters())
    leaves = [x] + ([h0, c0] if with_state else []) + params
    cot = [torch.randn(B, T, D * H, dtype=dtype), torch.randn(D, B, H, dtype=dtype), torch.randn(D, B, H, dtype=dtype)]
    got, g_got = run(lambda: sk.lstm(x, L, params, h0, c0, bidirectional), leaves, cot)
    want, g_want = run(lambda: nn_packed(module, x, L, h0, c0), leaves, cot)
    names = ["x"] + (["h0", "c0"] if with_state else []) + weight_names(bidirectional, bias)
    for name, a, e in zip(["out", "h_n", "c_n"], got, want):
        assert_close(a, e, scale=scale, name=name)
    for name, a, e in zip(names, g_got, g_want):
        assert_close(a, e, scale=scale, name=f"grad {name}")
    for b in range(B):  # padded positions: exactly zero output, no gradient into x
        assert (got[0][b, int(L[b]):] == 0).all()
        assert (g_got[0][b, int(L[b]):] == 0).all()


# hidden sizes 1, 15, 64, 256, 300 x input sizes 1, 20, 60, 80 x lengths all equal, all
# different, one of length 1 among long ones; large hidden sizes on short sequences.
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


@pytest.mark.parametrize("B,T,C,H,pattern,bidirectional", TORCH_CASES)
def test_matches_torch_packed_float64(B, T, C, H, pattern, bidirectional, poisoned):
    compare_with_torch(B, T, C, H, pattern, bidirectional, torch.float64)


@pytest.mark.parametrize("B,T,C,H,pattern,bidirectional", TORCH_CASES)
def test_matches_torch_packed_float32(B, T, C, H, pattern, bidirectional):
    compare_with_torch(B, T, C, H, pattern, bidirectional, torch.float32, scale=F32_VS_TORCH_SCALE)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("with_state", [True, False], ids=["h0c0", "zero-state"])
def test_matches_torch_bias_and_state(bias, with_state):
    compare_with_torch(5, 13, 7, 9, "random", True, torch.float64, bias=bias, with_state=with_state)


REF_CASES = [
    pytest.param(1, 1, 1, 1, id="B1-T1-C1-H1"),
    pytest.param(3, 7, 5, 6, id="B3-T7-C5-H6"),
    pytest.param(5, 63, 20, 17, id="B5-T63-C20-H17"),
    pytest.param(4, 151, 3, 10, id="B4-T151-C3-H10"),
]


@pytest.mark.parametrize("B,T,C,H", REF_CASES)
@pytest.mark.parametrize("bidirectional", [True, False], ids=["bi", "uni"])
def test_matches_reference_float64(B, T, C, H, bidirectional, poisoned):
    D = 2 if bidirectional else 1
    module = make_lstm(C, H, bidirectional)
    x = torch.randn(B, T, C, dtype=torch.float64, requires_grad=True)
    L = random_lengths(B, T, low=1)
    h0, c0 = (leaf(t) for t in states(D, B, H))
    params = list(module.parameters())
    leaves = [x, h0, c0] + params
    cot = [torch.randn(B, T, D * H, dtype=torch.float64), *states(D, B, H)]
    got, g_got = run(lambda: sk.lstm(x, L, params, h0, c0, bidirectional), leaves, cot)
    want, g_want = run(lambda: lstm_ref(x, L, params, h0, c0, bidirectional), leaves, cot)
    for a, e in zip(got + g_got, want + g_want):
        assert_close(a, e)


def test_reference_matches_torch_packed():
    """The oracle itself follows nn.LSTM's packed semantics."""
    module = make_lstm(4, 5)
    x = torch.randn(4, 9, 4, dtype=torch.float64)
    L = torch.tensor([9, 1, 6, 9])
    h0, c0 = states(2, 4, 5)
    for a, e in zip(lstm_ref(x, L, list(module.parameters()), h0, c0), nn_packed(module, x, L, h0, c0)):
        assert_close(a, e)


def test_long_sequences_float64():
    module = make_lstm(3, 8)
    x = torch.randn(2, 1134, 3, dtype=torch.float64)
    L = torch.tensor([1134, 517])
    for a, e in zip(sk.lstm(x, L, list(module.parameters())), lstm_ref(x, L, list(module.parameters()))):
        assert_close(a, e)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["f32", "bf16", "f16"])
def test_cpu_low_precision(dtype, poisoned):
    B, T, C, H = 4, 50, 20, 24
    module = make_lstm(C, H, dtype=dtype)
    params = [p.detach().requires_grad_() for p in module.parameters()]
    x = torch.randn(B, T, C).to(dtype).requires_grad_()
    h0, c0 = (t.to(dtype).requires_grad_() for t in states(2, B, H))
    L = random_lengths(B, T, low=1)
    cot = [torch.randn(B, T, 2 * H).to(dtype), torch.randn(2, B, H).to(dtype), torch.randn(2, B, H).to(dtype)]
    leaves = [x, h0, c0] + params
    got, g_got = run(lambda: sk.lstm(x, L, params, h0, c0), leaves, cot)
    ref_leaves = [t.detach().double().requires_grad_() for t in leaves]
    want, g_want = run(lambda: lstm_ref(ref_leaves[0], L, ref_leaves[3:], ref_leaves[1], ref_leaves[2]), ref_leaves,
                       [c.double() for c in cot])
    for a, e in zip(got, want):
        assert a.dtype == dtype
        assert_close(a, e, dtype)
    for a, e in zip(g_got, g_want):
        assert a.dtype == dtype
        assert_close(a, e, dtype, scale=GRAD_SCALE)


def test_gradcheck_bidirectional():
    module = make_lstm(2, 2)
    x = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    h0, c0 = (leaf(t) for t in states(2, 3, 2))
    L = torch.tensor([4, 1, 3])
    params = [leaf(p) for p in module.parameters()]
    fn = lambda x_, h_, c_, *w: sk.lstm(x_, L, list(w), h_, c_)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, h0, c0, *params))


def test_gradcheck_unidirectional_no_bias():
    module = make_lstm(3, 2, bidirectional=False, bias=False)
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    L = torch.tensor([2, 4])
    params = [leaf(p) for p in module.parameters()]
    fn = lambda x_, *w: sk.lstm(x_, L, list(w), bidirectional=False)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, *params))


def _op_args(requires_grad, dtype=torch.float32):
    module = make_lstm(5, 4, dtype=dtype)
    x = torch.randn(3, 6, 5, dtype=dtype, requires_grad=requires_grad)
    h0, c0 = (t.to(dtype).requires_grad_(requires_grad) for t in states(2, 3, 4))
    params = [p.detach().requires_grad_(requires_grad) for p in module.parameters()]
    return x, torch.tensor([6, 1, 4]), params, h0, c0, True


@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
def test_opcheck_forward(requires_grad):
    torch.library.opcheck(OP_FWD, _op_args(requires_grad))


def test_opcheck_backward():
    x, L, params, h0, c0, bidir = _op_args(False)
    out, h_n, c_n, gates, st_ = OP_FWD(x, L, params, h0, c0, bidir)
    torch.library.opcheck(OP_BWD, (torch.randn_like(out), torch.randn_like(h_n), torch.randn_like(c_n), x, L, params,
                                   None, c0, gates, st_, bidir))


def test_backward_grad_out_none_means_zeros():
    """An unused `out` (a classifier on the final states) reaches the kernel as None: the same
    gradients as zeros (tests/ops/test_conventions.py checks that autograd passes the None)."""
    x, L, params, h0, c0, bidir = _op_args(False, torch.float64)
    out, h_n, c_n, gates, st_ = OP_FWD(x, L, params, h0, c0, bidir)
    g_h, g_c = torch.randn_like(h_n), torch.randn_like(c_n)
    with_zeros = OP_BWD(torch.zeros_like(out), g_h, g_c, x, L, params, h0, c0, gates, st_, bidir)
    with_none = OP_BWD(None, g_h, g_c, x, L, params, h0, c0, gates, st_, bidir)
    for a, b in zip(with_zeros, with_none):
        for u, v in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
            assert torch.equal(u, v)
    torch.library.opcheck(OP_BWD, (None, g_h, g_c, x, L, params, None, c0, gates, st_, bidir))


@pytest.mark.parametrize("cell", ["lstm", "mlstm"])
@pytest.mark.parametrize("grad", [False, True], ids=["infer", "train"])
def test_final_states_only(cell, grad):
    """return_sequences=False: no `out` (None; the kernel's placeholder is (0,)), the same final
    states and, from a loss on them, the same gradients as with the full output, bit for bit."""
    torch.manual_seed(3)
    H, C = 5, 4
    params = [p.detach().double().requires_grad_(grad)
              for p in sk.nn.LSTM(C, H, cell=cell).double().layer_weights(0)]
    L = torch.tensor([7, 2, 5])
    runs = []
    for seq in (True, False):
        x = torch.randn(3, 7, C, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(grad)
        out, h_n, c_n = sk.lstm(x, L, params, cell=cell, return_sequences=seq)
        assert (out is None) == (not seq)
        grads = torch.autograd.grad((h_n.sum() + c_n.square().sum()), [x, *params]) if grad else ()
        runs.append((h_n, c_n, *grads))
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    ops = torch.ops.sublocal
    fwd, infer = (ops.mlstm_fwd, ops.mlstm_infer) if cell == "mlstm" else (OP_FWD, ops.lstm_infer)
    x = torch.randn(3, 7, C, dtype=torch.float64)
    assert fwd(x, L, params, None, None, True, False)[0].shape == (0,)
    assert infer(x, L, params, None, None, True, False)[0].shape == (0,)
    torch.library.opcheck(fwd, (x, L, [p.detach() for p in params], None, None, True, False))
    torch.library.opcheck(infer.default, (x, L, [p.detach() for p in params], None, None, True, False))


def test_final_states_only_bad_flag():
    x = torch.randn(2, 3, 4)
    params = list(torch.nn.LSTM(4, 3, batch_first=True, bidirectional=True).parameters())
    with pytest.raises(TypeError, match="`return_sequences` must be a bool"):
        sk.lstm(x, None, params, return_sequences="no")


def test_torch_compile_fullgraph():
    module = make_lstm(6, 8, dtype=torch.float32)
    params = list(module.parameters())
    x = torch.randn(3, 20, 6, requires_grad=True)
    L = torch.tensor([20, 4, 11])

    def layer(x, L, params):
        out, h_n, c_n = sk.lstm(torch.tanh(x), L, params)
        return (out * 2).sum() + h_n.square().sum() + c_n.sum()

    compiled = torch.compile(layer, fullgraph=True)
    loss = compiled(x, L, params)
    grads = torch.autograd.grad(loss, [x] + params)
    ref = layer(x, L, params)
    ref_grads = torch.autograd.grad(ref, [x] + params)
    assert_close(loss, ref, name="loss")
    for a, e in zip(grads, ref_grads):
        assert_close(a, e, name="grad")


def test_noncontiguous_inputs():
    B, T, C, H = 3, 11, 4, 5
    module = make_lstm(C, H)
    params = list(module.parameters())
    x = torch.randn(B, T, 2 * C, dtype=torch.float64)[:, :, ::2]
    w = [torch.randn(p.shape[::-1], dtype=torch.float64).t() if p.dim() == 2 else p for p in params]
    h0 = torch.randn(2, H, B, dtype=torch.float64).transpose(1, 2)
    c0 = torch.randn(B, 2, H, dtype=torch.float64).transpose(0, 1)
    L = torch.tensor([11, 1, 6], dtype=torch.int32)
    assert not (x.is_contiguous() or w[0].is_contiguous() or h0.is_contiguous() or c0.is_contiguous())
    got = sk.lstm(x, L, w, h0, c0)
    want = lstm_ref(x.contiguous(), L, [t.contiguous() for t in w], h0.contiguous(), c0.contiguous())
    for a, e in zip(got, want):
        assert_close(a, e)
    # gradients arriving non-contiguous (an expanded ones tensor from .sum())
    xr = x.clone().requires_grad_()
    sk.lstm(xr, L, w, h0, c0)[0].sum().backward()
    xr2 = x.clone().requires_grad_()
    lstm_ref(xr2, L, w, h0, c0)[0].sum().backward()
    assert_close(xr.grad, xr2.grad)


def test_padding_is_never_read():
    """NaN in the padded part of x changes nothing: no work is done on padding."""
    module = make_lstm(3, 4)
    params = list(module.parameters())
    x = torch.randn(3, 8, 3, dtype=torch.float64)
    L = torch.tensor([8, 2, 5])
    x_nan = x.clone()
    for b in range(3):
        x_nan[b, int(L[b]):] = float("nan")
    x_nan.requires_grad_()
    got = sk.lstm(x_nan, L, params)
    want = sk.lstm(x, L, params)
    for a, e in zip(got, want):
        assert torch.equal(a, e)
    sum(o.sum() for o in got).backward()
    assert torch.isfinite(x_nan.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in params)


def test_batch_order_and_length_forms():
    module = make_lstm(3, 4)
    params = list(module.parameters())
    x = torch.randn(4, 6, 3, dtype=torch.float64)
    L = torch.tensor([3, 6, 1, 6])
    out, h_n, c_n = sk.lstm(x, L, params)
    perm = torch.tensor([2, 0, 3, 1])
    out_p, h_p, c_p = sk.lstm(x[perm], L[perm], params)
    assert torch.equal(out_p, out[perm]) and torch.equal(h_p, h_n[:, perm]) and torch.equal(c_p, c_n[:, perm])
    for form in ([3, 6, 1, 6], L.int()):
        assert torch.equal(sk.lstm(x, form, params)[0], out)
    full = sk.lstm(x, None, params)
    for a, e in zip(full, sk.lstm(x, [6, 6, 6, 6], params)):
        assert torch.equal(a, e)


def test_empty_batch():
    module = make_lstm(3, 4)
    x = torch.randn(0, 5, 3, dtype=torch.float64, requires_grad=True)
    out, h_n, c_n = sk.lstm(x, torch.zeros(0, dtype=torch.int64), list(module.parameters()))
    assert out.shape == (0, 5, 8) and h_n.shape == (2, 0, 4) and c_n.shape == (2, 0, 4)
    out.sum().backward()
    assert x.grad.shape == x.shape


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
def test_property_matches_reference(B, T, C, H, bidirectional, bias, with_state, data):
    lengths = torch.tensor(data.draw(st.lists(st.integers(1, T), min_size=B, max_size=B)))
    D = 2 if bidirectional else 1
    module = make_lstm(C, H, bidirectional, bias)
    params = list(module.parameters())
    x = torch.randn(B, T, C, dtype=torch.float64, requires_grad=True)
    h0, c0 = (leaf(t) for t in states(D, B, H)) if with_state else (None, None)
    leaves = [x] + ([h0, c0] if with_state else []) + params
    cot = [torch.randn(B, T, D * H, dtype=torch.float64), *states(D, B, H)]
    got, g_got = run(lambda: sk.lstm(x, lengths, params, h0, c0, bidirectional), leaves, cot)
    want, g_want = run(lambda: lstm_ref(x, lengths, params, h0, c0, bidirectional), leaves, cot)
    for a, e in zip(got + g_got, want + g_want):
        assert_close(a, e)


# ---- bad input: one test per rule --------------------------------------------------------

def _ok():
    module = make_lstm(3, 4, dtype=torch.float32)
    return dict(x=torch.randn(2, 5, 3), lengths=torch.tensor([5, 2]), weights=[p.detach() for p in module.parameters()],
                h0=torch.zeros(2, 2, 4), c0=torch.zeros(2, 2, 4), bidirectional=True)


def _set_weight(k, value):
    def change(a):
        a["weights"] = list(a["weights"])
        a["weights"][k] = value(a["weights"][k])
    return change


@pytest.mark.parametrize(
    "change,exc,pattern",
    [
        (lambda a: a.update(x=a["x"].numpy()), TypeError, r"`x` must be a torch.Tensor"),
        (lambda a: a.update(x=a["x"][0]), ValueError, r"`x` must have 3 dimensions"),
        (lambda a: a.update(x=a["x"].int()), TypeError, r"`x` must have dtype"),
        (lambda a: a.update(weights=a["weights"][0]), TypeError, r"`weights` must be a list or tuple of tensors"),
        (lambda a: a.update(weights=a["weights"][:3]), ValueError, r"`weights` must hold 4 tensors .* or 8 .*got 3"),
        (_set_weight(1, lambda w: w[:, :3]), ValueError, r"`weights\[1\]` \(weight_hh_l0\) must have shape \(4H, H\)"),
        (_set_weight(0, lambda w: w[:, :2]), ValueError, r"`weights\[0\]` must have shape \(16, 3\) \(weight_ih_l0\)"),
        (_set_weight(6, lambda w: w[:8]), ValueError, r"`weights\[6\]` must have shape \(16,\) \(bias_ih_l0_reverse\)"),
        (_set_weight(5, lambda w: w.double()), TypeError, r"`weights\[5\]` has dtype torch.float64 but `x`"),
        (_set_weight(2, lambda w: w.to("meta")), ValueError, r"`weights\[2\]` is on meta but `x` is on cpu"),
        (_set_weight(3, lambda w: w.tolist()), TypeError, r"`weights\[3\]` must be a torch.Tensor"),
        (lambda a: a.update(h0=a["h0"][:1]), ValueError, r"`h0` must have shape \(2, 2, 4\)"),
        (lambda a: a.update(c0=a["c0"].double()), TypeError, r"`c0` has dtype torch.float64"),
        (lambda a: a.update(lengths=torch.tensor([5, 6])), ValueError, r"`lengths\[1\]` = 6 is out of range.*\[1, 5\]"),
        (lambda a: a.update(lengths=torch.tensor([0, 2])), ValueError, r"`lengths\[0\]` = 0 is out of range.*\[1, 5\]"),
        (lambda a: a.update(lengths=torch.tensor([5])), ValueError, r"`lengths` must have shape \(2,\)"),
        (lambda a: a.update(lengths=torch.tensor([5.0, 2.0])), TypeError, r"`lengths` must have dtype int32 or int64"),
        (lambda a: a.update(lengths="5,2"), TypeError, r"`lengths` must be a torch.Tensor or a list of ints"),
        (lambda a: a.update(bidirectional=1), TypeError, r"`bidirectional` must be a bool"),
    ],
    ids=["x-not-tensor", "x-ndim", "x-int", "weights-not-list", "weights-count", "weight-hh-shape",
         "weight-ih-shape", "bias-shape", "weight-dtype", "weight-device", "weight-not-tensor", "h0-shape",
         "c0-dtype", "length-too-long", "length-zero", "lengths-shape", "lengths-float", "lengths-string",
         "bidirectional-type"],
)
def test_bad_input(change, exc, pattern):
    args = _ok()
    change(args)
    with pytest.raises(exc, match=pattern):
        sk.lstm(**args)


def test_op_level_checks_for_direct_callers():
    a = _ok()
    x, w = a["x"], a["weights"]
    with pytest.raises(RuntimeError, match=r"`lengths\[0\]` = 9 is out of range"):
        OP_FWD(x, torch.tensor([9, 1]), w, None, None, True)
    with pytest.raises(RuntimeError, match=r"`weights` must hold 4 tensors"):
        OP_FWD(x, a["lengths"], w[:3], None, None, True)
    with pytest.raises(RuntimeError, match=r"`weights\[4\]` \(weight_ih_reverse\) must have shape"):
        OP_FWD(x, a["lengths"], w[:4] + [w[4][:, :1]] + w[5:], None, None, True)
    with pytest.raises(RuntimeError, match=r"`h0` must have shape"):
        OP_FWD(x, a["lengths"], w, a["h0"][:, :1], None, True)
    out, h_n, c_n, gates, st_ = OP_FWD(x, a["lengths"], w, None, None, True)
    with pytest.raises(RuntimeError, match=r"`gates` must have shape"):
        OP_BWD(out, h_n, c_n, x, a["lengths"], w, None, None, gates[:, :3], st_, True)
    with pytest.raises(RuntimeError, match=r"`grad_out` must have shape"):
        OP_BWD(out[:, :2], h_n, c_n, x, a["lengths"], w, None, None, gates, st_, True)


# ---- Triton kernels on CPU tensors (interpreter; small: it runs element by element) ---------

TRITON_CASES = [
    pytest.param(3, 6, 3, 16, True, True, True, 16, id="B3-T6-C3-H16-bi-state"),
    pytest.param(17, 5, 2, 20, False, False, False, 16, id="B17-T5-C2-H20-uni-nobias-2tiles"),
    pytest.param(2, 7, 4, 33, True, True, False, 32, id="B2-T7-C4-H33-bi-block32"),
]


@triton_interpreted
@pytest.mark.triton
def test_cuda_wrappers_final_states_only_and_grad_out_none():
    """The GPU path's wrappers (run here on CPU tensors through the interpreter): with
    sequences=False `out` is the (0,) placeholder and the states are unchanged; a None grad_out
    is zeros for the Triton backward."""
    from sublocal_kernels.ops.lstm.register import CUDA_KERNELS

    k = CUDA_KERNELS["lstm"]
    params = [p.detach() for p in make_lstm(3, 16).parameters()]
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
@pytest.mark.parametrize("B,T,C,H,bidirectional,bias,with_state,block", TRITON_CASES)
def test_triton_matches_reference(B, T, C, H, bidirectional, bias, with_state, block, poisoned):
    from sublocal_kernels.ops.lstm.triton import lstm_bwd_triton, lstm_fwd_triton

    D = 2 if bidirectional else 1
    module = make_lstm(C, H, bidirectional, bias)
    params = [p.detach() for p in module.parameters()]
    x = torch.randn(B, T, C, dtype=torch.float64)
    L = random_lengths(B, T, low=1)
    h0, c0 = states(D, B, H) if with_state else (None, None)
    x_nan = x.clone()
    for b in range(B):
        x_nan[b, int(L[b]):] = float("nan")  # padding is never read
    cot = [torch.randn(B, T, D * H, dtype=torch.float64), *states(D, B, H)]
    out, h_n, c_n, gates, st_ = lstm_fwd_triton(x_nan, L, params, h0, c0, bidirectional, block_h=block, block_k=block)
    leaves = [leaf(x)] + ([leaf(h0), leaf(c0)] if with_state else []) + [leaf(p) for p in params]
    ref_w = leaves[3:] if with_state else leaves[1:]
    want, g_want = run(lambda: lstm_ref(leaves[0], L, ref_w, leaves[1] if with_state else None,
                                        leaves[2] if with_state else None, bidirectional), leaves, cot)
    for name, a, e in zip(["out", "h_n", "c_n"], (out, h_n, c_n), want):
        assert_close(a, e, name=name)
    gx, gw, gh0, gc0 = lstm_bwd_triton(*cot, x_nan, L, params, h0, c0, gates, st_, bidirectional,
                                       block_h=block, block_k=block)
    got = [gx] + ([gh0, gc0] if with_state else []) + list(gw)
    for a, e in zip(got, g_want):
        assert_close(a, e, name="grad")


@triton_interpreted
@pytest.mark.triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["f32", "bf16", "f16"])
def test_triton_low_precision(dtype):
    from sublocal_kernels.ops.lstm.triton import lstm_bwd_triton, lstm_fwd_triton

    B, T, C, H = 3, 6, 5, 16
    module = make_lstm(C, H, dtype=dtype)
    params = [p.detach() for p in module.parameters()]
    x = torch.randn(B, T, C).to(dtype)
    L = torch.tensor([6, 1, 4])
    out, h_n, c_n, gates, st_ = lstm_fwd_triton(x, L, params, None, None, True)
    assert gates.dtype == torch.float32 and st_.dtype == torch.float32  # state in float32
    want = lstm_ref(x.double(), L, [p.double() for p in params])
    for a, e in zip((out, h_n, c_n), want):
        assert a.dtype == dtype
        assert_close(a, e, dtype)
    cot = [torch.randn(B, T, 2 * H).to(dtype), torch.randn(2, B, H).to(dtype), torch.randn(2, B, H).to(dtype)]
    got = lstm_bwd_triton(*cot, x, L, params, None, None, gates, st_, True)
    ref = OP_BWD(*[c.double() for c in cot], x.double(), L, [p.double() for p in params], None, None,
                 *OP_FWD(x.double(), L, [p.double() for p in params], None, None, True)[3:], True)
    for a, e in zip([got[0], *got[1], got[2], got[3]], [ref[0], *ref[1], ref[2], ref[3]]):
        assert_close(a, e, dtype, scale=GRAD_SCALE)


# ---- CUDA (skipped where no GPU is present) --------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("B,T,C,H,pattern,bidirectional", TORCH_CASES + [
    pytest.param(128, 1000, 20, 256, "random", True, id="paper"),
    pytest.param(1, 1000, 20, 256, "equal", True, id="infer1"),
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=["f32", "bf16", "f64"])
def test_cuda_matches_cpu(B, T, C, H, pattern, bidirectional, dtype, poisoned):
    D = 2 if bidirectional else 1
    module = make_lstm(C, H, bidirectional, dtype=torch.float64)
    params64 = [p.detach() for p in module.parameters()]
    x64 = torch.randn(B, T, C, dtype=torch.float64)
    L = pattern_lengths(B, T, pattern)
    h0, c0 = states(D, B, H)
    cot = [torch.randn(B, T, D * H, dtype=torch.float64), *states(D, B, H)]
    dev = [t.to("cuda", dtype).requires_grad_() for t in [x64, h0, c0, *params64]]
    got, g_got = run(lambda: sk.lstm(dev[0], L.cuda(), dev[3:], dev[1], dev[2], bidirectional), dev,
                     [c.to("cuda", dtype) for c in cot])
    ref = [t.to(dtype).double().requires_grad_() for t in [x64, h0, c0, *params64]]
    want, g_want = run(lambda: sk.lstm(ref[0], L, ref[3:], ref[1], ref[2], bidirectional), ref,
                       [c.to(dtype).double() for c in cot])
    scale = 1.0 if dtype == torch.float64 else 8.0
    for a, e in zip(got, want):
        assert_close(a, e, dtype, scale=scale, name="output")
    for a, e in zip(g_got, g_want):
        assert_close(a, e, dtype, scale=scale * GRAD_SCALE, name="grad")
