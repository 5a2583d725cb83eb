"""The multiplicative LSTM cell (``cell="mlstm"``): the C++ kernels and the Triton kernels (under
the interpreter) against the reference; gradients, registration, the inference path, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import sublocal_kernels as sk
from sublocal_kernels.ops.lstm import lstm_ref, weight_names
from tests.helpers import assert_close, random_lengths, triton_interpreted
from tests.ops.test_inference import MODES, _allocations, _infer, _OpLog, _peak
from tests.ops.test_lstm import GRAD_SCALE, leaf, pattern_lengths, run, states

OP_FWD = torch.ops.sublocal.mlstm_fwd
OP_BWD = torch.ops.sublocal.mlstm_bwd
OP_INFER = torch.ops.sublocal.mlstm_infer


def mlstm_params(C, H, bidirectional=True, bias=True, dtype=torch.float64):
    """One layer's tensors in the op's order, from the module (its initialisation)."""
    layer = sk.nn.LSTM(C, H, bias=bias, bidirectional=bidirectional, cell="mlstm").to(dtype)
    return [p.detach().clone() for p in layer.layer_weights(0)]


def compare_with_reference(B, T, C, H, pattern, bidirectional, bias=True, with_state=True, dtype=torch.float64):
    D = 2 if bidirectional else 1
    params = [leaf(p) for p in mlstm_params(C, H, bidirectional, bias, torch.float64)]
    x = torch.randn(B, T, C, dtype=torch.float64, requires_grad=True)
    L = pattern_lengths(B, T, pattern)
    h0, c0 = (leaf(t) for t in states(D, B, H)) if with_state else (None, None)
    leaves = [x] + ([h0, c0] if with_state else []) + params
    cot = [torch.randn(B, T, D * H, dtype=torch.float64), *states(D, B, H)]
    want, g_want = run(lambda: lstm_ref(x, L, params, h0, c0, bidirectional, cell="mlstm"), leaves, cot)
    # Low precision: the kernel gets the inputs rounded to dtype, the float64 reference the same values.
    lo = [leaf(t.detach().to(dtype)) for t in leaves]
    lo_cot = [c.to(dtype) for c in cot]
    n = 3 if with_state else 1
    if dtype != torch.float64:
        leaves = [leaf(t.detach().double()) for t in lo]
        want, g_want = run(lambda: lstm_ref(leaves[0], L, leaves[n:], *(leaves[1:3] if with_state else (None, None)),
                                            bidirectional, cell="mlstm"), leaves, [c.double() for c in lo_cot])
    got, g_got = run(lambda: sk.lstm(lo[0], L, lo[n:], *(lo[1:3] if with_state else (None, None)), bidirectional,
                                     cell="mlstm"), lo, lo_cot)
    names = ["x"] + (["h0", "c0"] if with_state else []) + weight_names(bidirectional, bias, cell="mlstm")
    for name, a, e in zip(["out", "h_n", "c_n"], got, want):
        assert a.dtype == dtype
        assert_close(a, e, dtype, name=name)
    for name, a, e in zip(names, g_got, g_want):
        assert_close(a, e, dtype, scale=1.0 if dtype == torch.float64 else GRAD_SCALE, name=f"grad {name}")


CASES = [
    pytest.param(5, 9, 3, 7, "random", True, id="B5-T9-C3-H7-bi"),
    pytest.param(4, 63, 10, 19, "different", False, id="B4-T63-C10-H19-uni"),
    pytest.param(6, 1, 5, 3, "equal", True, id="B6-T1-C5-H3-bi"),
    pytest.param(7, 40, 1, 33, "one-short", True, id="B7-T40-C1-H33-bi-len1"),
]


@pytest.mark.parametrize("B,T,C,H,pattern,bidirectional", CASES)
def test_matches_reference_float64(B, T, C, H, pattern, bidirectional, poisoned):
    compare_with_reference(B, T, C, H, pattern, bidirectional)


@pytest.mark.parametrize("bias,with_state", [(False, True), (True, False), (False, False)],
                         ids=["nobias-state", "bias-nostate", "nobias-nostate"])
def test_matches_reference_bias_and_state(bias, with_state):
    compare_with_reference(5, 12, 4, 6, "random", True, bias=bias, with_state=with_state)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_cpu_lower_precision(dtype, poisoned):
    compare_with_reference(4, 17, 5, 11, "random", True, dtype=dtype)


def test_multithreaded_tiles_match_reference():
    # More threads than directions: the sorted batch is split into tiles, one time loop each.
    old = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        compare_with_reference(9, 21, 3, 5, "random", False)
    finally:
        torch.set_num_threads(old)


def test_reduces_to_the_lstm_formula():
    # With W_mx x = 1 (a constant input column and W_mx reading only it), m_t = W_mh h_{t-1}: the
    # mLSTM is then an LSTM whose recurrent weight is W_hh W_mh.
    B, T, C, H = 3, 8, 4, 5
    p = mlstm_params(C, H, bidirectional=False)
    x = torch.randn(B, T, C, dtype=torch.float64)
    x[..., 0] = 1.0
    w_mx = torch.zeros(H, C, dtype=torch.float64)
    w_mx[:, 0] = 1.0
    L = torch.tensor([8, 3, 6])
    got = sk.lstm(x, L, p[:4] + [w_mx, p[5]], bidirectional=False, cell="mlstm")
    want = sk.lstm_ref(x, L, [p[0], p[1] @ p[5], p[2], p[3]], bidirectional=False)
    for a, e in zip(got, want):
        assert_close(a, e)


def test_gradcheck_bidirectional():
    x = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    h0, c0 = (leaf(t) for t in states(2, 3, 2))
    L = torch.tensor([4, 1, 3])
    params = [leaf(p) for p in mlstm_params(2, 2)]
    fn = lambda x_, h_, c_, *w: sk.lstm(x_, L, list(w), h_, c_, cell="mlstm")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, h0, c0, *params))


def test_gradcheck_unidirectional_no_bias():
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    L = torch.tensor([2, 5])
    params = [leaf(p) for p in mlstm_params(3, 3, bidirectional=False, bias=False)]
    fn = lambda x_, *w: sk.lstm(x_, L, list(w), bidirectional=False, cell="mlstm")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, *params))


def _op_args(requires_grad, dtype=torch.float32):
    x = torch.randn(3, 6, 5, dtype=dtype, requires_grad=requires_grad)
    h0, c0 = (t.to(dtype).requires_grad_(requires_grad) for t in states(2, 3, 4))
    params = [p.to(dtype).requires_grad_(requires_grad) for p in mlstm_params(5, 4)]
    return x, torch.tensor([6, 1, 4]), params, h0, c0, True


@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
def test_opcheck_forward(requires_grad):
    torch.library.opcheck(OP_FWD, _op_args(requires_grad))


def test_opcheck_backward_and_infer():
    x, L, params, h0, c0, bidir = _op_args(False)
    out, h_n, c_n, gates, st_ = OP_FWD(x, L, params, h0, c0, bidir)
    torch.library.opcheck(OP_BWD, (torch.randn_like(out), torch.randn_like(h_n), torch.randn_like(c_n), x, L, params,
                                   None, c0, gates, st_, bidir))
    torch.library.opcheck(OP_INFER.default, _op_args(False))


def test_torch_compile_fullgraph():
    params = [p.float().requires_grad_() for p in mlstm_params(6, 8)]
    x = torch.randn(3, 20, 6, requires_grad=True)
    L = torch.tensor([20, 4, 11])

    def layer(x, L, params):
        out, h_n, c_n = sk.lstm(torch.tanh(x), L, params, cell="mlstm")
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
    params = mlstm_params(C, H)
    x = torch.randn(B, T, 2 * C, dtype=torch.float64)[:, :, ::2]
    w = [torch.randn(p.shape[::-1], dtype=torch.float64).t() * 0.3 if p.dim() == 2 else p for p in params]
    h0 = torch.randn(2, H, B, dtype=torch.float64).transpose(1, 2)
    L = torch.tensor([11, 1, 6], dtype=torch.int32)
    assert not (x.is_contiguous() or w[-1].is_contiguous() or h0.is_contiguous())
    got = sk.lstm(x, L, w, h0, None, cell="mlstm")
    want = lstm_ref(x.contiguous(), L, [t.contiguous() for t in w], h0.contiguous(), None, cell="mlstm")
    for a, e in zip(got, want):
        assert_close(a, e)


def test_padding_is_never_read():
    B, T, C, H = 4, 9, 3, 6
    params = mlstm_params(C, H)
    L = torch.tensor([9, 2, 5, 1])
    x = torch.randn(B, T, C, dtype=torch.float64)
    x_nan = x.clone()
    for b in range(B):
        x_nan[b, int(L[b]):] = float("nan")
    xr = x_nan.clone().requires_grad_()
    out, h_n, c_n = sk.lstm(xr, L, params, cell="mlstm")
    (out.sum() + h_n.sum()).backward()
    want = lstm_ref(x, L, params, cell="mlstm")
    for a, e in zip((out, h_n, c_n), want):
        assert_close(a, e)
    assert not torch.isnan(xr.grad).any()
    assert (out[1, 2:] == 0).all() and (xr.grad[1, 2:] == 0).all()


def test_empty_batch():
    x = torch.randn(0, 5, 3, dtype=torch.float64, requires_grad=True)
    out, h_n, c_n = sk.lstm(x, torch.zeros(0, dtype=torch.int64), mlstm_params(3, 4), cell="mlstm")
    assert out.shape == (0, 5, 8) and h_n.shape == (2, 0, 4)
    out.sum().backward()
    assert x.grad.shape == x.shape


@given(
    B=st.integers(1, 4),
    T=st.integers(1, 9),
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
    params = [leaf(p) for p in mlstm_params(C, H, bidirectional, bias)]
    x = torch.randn(B, T, C, dtype=torch.float64, requires_grad=True)
    h0, c0 = (leaf(t) for t in states(D, B, H)) if with_state else (None, None)
    leaves = [x] + ([h0, c0] if with_state else []) + params
    cot = [torch.randn(B, T, D * H, dtype=torch.float64), *states(D, B, H)]
    got, g_got = run(lambda: sk.lstm(x, lengths, params, h0, c0, bidirectional, cell="mlstm"), leaves, cot)
    want, g_want = run(lambda: lstm_ref(x, lengths, params, h0, c0, bidirectional, cell="mlstm"), leaves, cot)
    for a, e in zip(got + g_got, want + g_want):
        assert_close(a, e)


# ---- the inference path -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mode", MODES)
def test_inference_matches_training(mode, dtype):
    # The same cell and GEMMs per step, but the input projection is one GEMM per direction in
    # training and one per step here: equal up to the last bits of that product, not bit for bit.
    B, T, C, H = 7, 29, 5, 13
    params = [p.to(dtype).requires_grad_() for p in mlstm_params(C, H)]
    x = torch.randn(B, T, C, dtype=dtype, requires_grad=True)
    h0, c0 = (t.to(dtype) for t in states(2, B, H))
    L = random_lengths(B, T)
    want = sk.lstm(x, L, params, h0, c0, cell="mlstm")
    got = _infer(mode, lambda *a: sk.lstm(a[0], L, list(a[3:]), a[1], a[2], cell="mlstm"), x, h0, c0, *params)
    for a, e, name in zip(got, want, ["out", "h_n", "c_n"]):
        assert a.grad_fn is None, f"{name}: the inference path recorded a graph"
        assert_close(a, e, scale=0.01 if dtype == torch.float64 else 1.0, name=name)


def test_inference_dispatch_and_memory():
    B, T, C, H, D = 8, 300, 10, 48, 1
    params = mlstm_params(C, H, bidirectional=False, dtype=torch.float32)
    x = torch.randn(B, T, C)
    L = torch.tensor([300, 1, 150, 275, 37, 200, 99, 250])
    N = int(L.sum())
    gates_bytes, states_bytes, out_bytes = D * N * 5 * H * 4, D * N * 3 * H * 4, B * T * D * H * 4
    with _OpLog() as log:
        with torch.no_grad():
            sk.lstm(x, L, params, bidirectional=False, cell="mlstm")
    assert "sublocal::mlstm_infer" in log.names and "sublocal::mlstm_fwd" not in log.names
    x_train = x.clone().requires_grad_()
    train = _allocations(lambda: sk.lstm(x_train, L, params, bidirectional=False, cell="mlstm"))
    assert gates_bytes in train and states_bytes in train
    for mode in MODES:
        infer = _allocations(lambda: _infer(mode, lambda x, *p: sk.lstm(x, L, list(p), bidirectional=False,
                                                                       cell="mlstm"), x, *params))
        assert max(infer) == out_bytes, (mode, max(infer), out_bytes)
        assert _peak(infer) < 0.5 * _peak(train), (mode, _peak(infer), _peak(train))


def test_infer_op_refuses_a_backward():
    x, L, params, h0, c0, bidir = _op_args(False)
    x.requires_grad_()
    out, _, _ = OP_INFER(x, L, params, h0, c0, bidir)
    with pytest.raises(RuntimeError, match=r"mlstm_infer keeps nothing for a backward; use sublocal::mlstm_fwd"):
        out.sum().backward()


# ---- bad input ----------------------------------------------------------------------------------

def _ok():
    return dict(x=torch.randn(2, 5, 3), lengths=torch.tensor([5, 2]), weights=mlstm_params(3, 4, dtype=torch.float32),
                h0=torch.zeros(2, 2, 4), c0=torch.zeros(2, 2, 4), bidirectional=True, cell="mlstm")


def _set_weight(k, value):
    def change(a):
        a["weights"] = list(a["weights"])
        a["weights"][k] = value(a["weights"][k])
    return change


@pytest.mark.parametrize(
    "change,exc,pattern",
    [
        (lambda a: a.update(cell="gru"), ValueError, r"lstm: `cell` must be one of 'lstm', 'mlstm', got 'gru'"),
        # 8 tensors read as the no-bias layout: position 2 must then be weight_mx, not a bias.
        (lambda a: a.update(weights=a["weights"][:8]), ValueError,
         r"`weights\[2\]` must have 2 dimensions \(weight_mx_l0\), got shape \(16,\)"),
        (lambda a: a.update(weights=a["weights"][:7]), ValueError,
         r"`weights` must hold 8 tensors \(no bias\) or 12 \(with bias\) for bidirectional=True, cell=mlstm, got 7"),
        (_set_weight(4, lambda w: w[:, :2]), ValueError, r"`weights\[4\]` must have shape \(4, 3\) \(weight_mx_l0\)"),
        (_set_weight(11, lambda w: w[:3]), ValueError,
         r"`weights\[11\]` must have shape \(4, 4\) \(weight_mh_l0_reverse\)"),
        (_set_weight(5, lambda w: w.double()), TypeError, r"`weights\[5\]` has dtype torch.float64 but `x`"),
    ],
    ids=["cell-unknown", "weights-count-lstm-like", "weights-count", "weight-mx-shape", "weight-mh-shape",
         "weight-mh-dtype"],
)
def test_bad_input(change, exc, pattern):
    args = _ok()
    change(args)
    with pytest.raises(exc, match=pattern):
        sk.lstm(**args)


def test_op_level_checks_for_direct_callers():
    a = _ok()
    x, w = a["x"], a["weights"]
    with pytest.raises(RuntimeError, match=r"mlstm_fwd: `weights` must hold 8 tensors \(no bias\) or 12"):
        OP_FWD(x, a["lengths"], w[:7], None, None, True)
    with pytest.raises(RuntimeError, match=r"`weights\[10\]` \(weight_mx_reverse\) must have shape \[4, 3\]"):
        OP_FWD(x, a["lengths"], w[:10] + [w[10][:, :1], w[11]], None, None, True)
    with pytest.raises(RuntimeError, match=r"`lengths\[0\]` = 9 is out of range"):
        OP_INFER(x, torch.tensor([9, 1]), w, None, None, True)
    out, h_n, c_n, gates, st_ = OP_FWD(x, a["lengths"], w, None, None, True)
    with pytest.raises(RuntimeError, match=r"`gates` must have shape \[2, 7, 20\]"):
        OP_BWD(out, h_n, c_n, x, a["lengths"], w, None, None, gates[..., :16], st_, True)


# ---- Triton kernels on CPU tensors (interpreter; small: it runs element by element) ---------

TRITON_CASES = [
    pytest.param(3, 6, 3, 16, True, True, True, 16, id="B3-T6-C3-H16-bi-state"),
    pytest.param(17, 5, 2, 20, False, False, False, 16, id="B17-T5-C2-H20-uni-nobias-2tiles"),
    pytest.param(2, 7, 4, 33, True, True, False, 32, id="B2-T7-C4-H33-bi-block32"),
]


def _triton_case(B, T, C, H, bidirectional, bias, with_state, dtype, block=None):
    from sublocal_kernels.ops.lstm.triton import mlstm_bwd_triton, mlstm_fwd_triton, mlstm_infer_triton

    D = 2 if bidirectional else 1
    params = [p.to(dtype) for p in mlstm_params(C, H, bidirectional, bias)]
    x = torch.randn(B, T, C, dtype=torch.float64).to(dtype)
    L = random_lengths(B, T, low=1)
    h0, c0 = (t.to(dtype) for t in states(D, B, H)) if with_state else (None, None)
    x_nan = x.clone()
    for b in range(B):
        x_nan[b, int(L[b]):] = float("nan")  # padding is never read
    cot = [torch.randn(B, T, D * H, dtype=torch.float64).to(dtype), *(t.to(dtype) for t in states(D, B, H))]
    blocks = dict(block_h=block, block_k=block)
    out, h_n, c_n, gates, st_ = mlstm_fwd_triton(x_nan, L, params, h0, c0, bidirectional, **blocks)
    inf = mlstm_infer_triton(x_nan, L, params, h0, c0, bidirectional, **blocks)
    leaves = [leaf(x.double())] + ([leaf(h0.double()), leaf(c0.double())] if with_state else [])
    leaves += [leaf(p.double()) for p in params]
    ref_w = leaves[3:] if with_state else leaves[1:]
    want, g_want = run(lambda: lstm_ref(leaves[0], L, ref_w, leaves[1] if with_state else None,
                                        leaves[2] if with_state else None, bidirectional, cell="mlstm"),
                       leaves, [c.double() for c in cot])
    for name, a, i, e in zip(["out", "h_n", "c_n"], (out, h_n, c_n), inf, want):
        assert_close(a, e, dtype, name=name)
        # The inference kernel projects the inputs per step, summed in another order than the
        # training path's one matrix product: equal up to rounding.
        assert_close(i, a, dtype, name=f"{name} (inference kernel)")
    gx, gw, gh0, gc0 = mlstm_bwd_triton(*cot, x_nan, L, params, h0, c0, gates, st_, bidirectional, **blocks)
    got = [gx] + ([gh0, gc0] if with_state else []) + list(gw)
    for a, e in zip(got, g_want):
        assert_close(a, e, dtype, scale=1.0 if dtype == torch.float64 else GRAD_SCALE, name="grad")


@triton_interpreted
@pytest.mark.triton
@pytest.mark.parametrize("B,T,C,H,bidirectional,bias,with_state,block", TRITON_CASES)
def test_triton_matches_reference(B, T, C, H, bidirectional, bias, with_state, block, poisoned):
    _triton_case(B, T, C, H, bidirectional, bias, with_state, torch.float64, block)


@triton_interpreted
@pytest.mark.triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_triton_lower_precision(dtype):
    _triton_case(3, 6, 3, 16, True, True, True, dtype)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_cuda_matches_cpu(dtype):
    B, T, C, H = 6, 50, 10, 64
    params = [p.to(dtype) for p in mlstm_params(C, H, bidirectional=False)]
    x = torch.randn(B, T, C).to(dtype)
    L = random_lengths(B, T)
    leaves = [leaf(x)] + [leaf(p) for p in params]
    cuda = [leaf(t.cuda()) for t in leaves]
    cot = [torch.randn(B, T, H).to(dtype), *(t.to(dtype) for t in states(1, B, H))]
    want, g_want = run(lambda: sk.lstm(leaves[0], L, leaves[1:], bidirectional=False, cell="mlstm"), leaves, cot)
    got, g_got = run(lambda: sk.lstm(cuda[0], L.cuda(), cuda[1:], bidirectional=False, cell="mlstm"), cuda,
                     [c.cuda() for c in cot])
    for a, e in zip(got + g_got, want + g_want):
        assert_close(a, e, dtype, scale=GRAD_SCALE)


# ---- the units schedule (large H: each thread owns a slice of the hidden units) ------------------

def _with_threads(n, fn):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("threads", [1, 2, 3], ids=["t1", "t2", "t3"])
@pytest.mark.parametrize("B,T,C,H,pattern,bidirectional", [
    pytest.param(5, 13, 3, 33, "random", True, id="B5-T13-C3-H33-bi"),   # 3 groups of 16 units: uneven slices
    pytest.param(4, 9, 6, 7, "one-short", False, id="B4-T9-C6-H7-uni"),  # one group: some threads own no units
    pytest.param(41, 64, 2, 17, "random", False, id="B41-T64-C2-H17-uni"),  # > 1024 rows: chunk flushes mid-loop
])
def test_units_schedule_matches_reference(monkeypatch, threads, B, T, C, H, pattern, bidirectional):
    monkeypatch.setenv("SUBLOCAL_LSTM_SCHEDULE", "units")
    _with_threads(threads, lambda: compare_with_reference(B, T, C, H, pattern, bidirectional))


@pytest.mark.parametrize("schedule", ["tiles", "units"])
@pytest.mark.parametrize("mode", MODES)
def test_inference_schedules_match_reference(monkeypatch, schedule, mode):
    monkeypatch.setenv("SUBLOCAL_LSTM_SCHEDULE", schedule)
    B, T, C, H = 6, 17, 4, 37
    params = mlstm_params(C, H)
    x = torch.randn(B, T, C, dtype=torch.float64, requires_grad=True)
    L = random_lengths(B, T)
    h0, c0 = states(2, B, H)
    got = _with_threads(3, lambda: _infer(mode, lambda x, *p: sk.lstm(x, L, list(p), h0, c0, cell="mlstm"),
                                           x, *params))
    want = lstm_ref(x.detach(), L, params, h0, c0, cell="mlstm")
    for name, a, e in zip(["out", "h_n", "c_n"], got, want):
        assert a.grad_fn is None
        assert_close(a, e, name=name)


def test_units_schedule_is_the_default_at_unirep_size(monkeypatch):
    # Only the choice is checked here (H = 1900 would be slow): with the variable unset, a layer
    # whose recurrent weights outgrow L2 takes the units schedule, and it agrees with tiles.
    monkeypatch.delenv("SUBLOCAL_LSTM_SCHEDULE", raising=False)
    B, T, C, H = 3, 4, 10, 330  # 5 H^2 float32 = 2.2 MB
    layer = sk.nn.LSTM(C, H, bidirectional=False, cell="mlstm")
    w = [p.detach() for p in layer.layer_weights(0)]
    x = torch.randn(B, T, C)
    L = torch.tensor([4, 1, 3])
    with torch.inference_mode():
        auto = _with_threads(2, lambda: sk.lstm(x, L, w, bidirectional=False, cell="mlstm"))
        monkeypatch.setenv("SUBLOCAL_LSTM_SCHEDULE", "tiles")
        tiles = _with_threads(2, lambda: sk.lstm(x, L, w, bidirectional=False, cell="mlstm"))
    for a, e in zip(auto, tiles):
        assert_close(a, e, torch.float32)


# ---- the mean pool (return_sequences="mean") ------------------------------------------------------

def _masked_mean(out, L):
    T = out.shape[1]
    valid = (torch.arange(T)[None, :] < L[:, None]).to(out.dtype)
    return (out * valid[..., None]).sum(1) / L[:, None].to(out.dtype)


@pytest.mark.parametrize("cell", ["lstm", "mlstm"])
@pytest.mark.parametrize("schedule", ["tiles", "units"])
@pytest.mark.parametrize("bidirectional", [True, False], ids=["bi", "uni"])
def test_mean_pool_matches_reference(monkeypatch, cell, schedule, bidirectional):
    monkeypatch.setenv("SUBLOCAL_LSTM_SCHEDULE", schedule)
    B, T, C, H = 7, 23, 5, 18
    D = 2 if bidirectional else 1
    params = (mlstm_params(C, H, bidirectional) if cell == "mlstm" else
              [p.detach().double() for p in torch.nn.LSTM(C, H, batch_first=True, bidirectional=bidirectional)
               .parameters()])
    x = torch.randn(B, T, C, dtype=torch.float64)
    L = random_lengths(B, T)
    ref_out, ref_h, ref_c = lstm_ref(x, L, params, bidirectional=bidirectional, cell=cell)
    want = _masked_mean(ref_out, L)
    with torch.inference_mode():  # the kernel's own pooling: no (B, T, D H) output
        log = _OpLog()
        with log:
            mean, h_n, c_n = sk.lstm(x, L, params, bidirectional=bidirectional, cell=cell, return_sequences="mean")
        assert f"sublocal::{cell}_infer" in log.names
    assert mean.shape == (B, D * H)
    assert_close(mean, want, name="mean")
    assert_close(h_n, ref_h, name="h_n")
    assert_close(c_n, ref_c, name="c_n")
    # With a gradient, the sequence is computed and averaged; the gradient flows through it.
    xg = x.clone().requires_grad_()
    pg = [p.clone().requires_grad_() for p in params]
    mean_g, _, _ = sk.lstm(xg, L, pg, bidirectional=bidirectional, cell=cell, return_sequences="mean")
    assert_close(mean_g, want, name="mean with grad")
    cot = torch.randn_like(mean_g)
    got = torch.autograd.grad(mean_g, [xg, *pg], cot)
    xr = x.clone().requires_grad_()
    pr = [p.clone().requires_grad_() for p in params]
    expect = torch.autograd.grad(_masked_mean(lstm_ref(xr, L, pr, bidirectional=bidirectional, cell=cell)[0], L),
                                 [xr, *pr], cot)
    for a, e in zip(got, expect):
        assert_close(a, e, name="grad")


def test_mean_pool_through_the_module_and_packed_input():
    layer = sk.nn.LSTM(4, 6, num_layers=2, cell="mlstm").double()
    x = torch.randn(3, 8, 4, dtype=torch.float64)
    L = torch.tensor([8, 2, 5])
    with torch.no_grad():
        out, _ = layer(x, L)
        mean, (h_n, _) = layer(x, L, return_sequences="mean")
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, L, batch_first=True, enforce_sorted=False)
        mean_p, _ = layer(packed, return_sequences="mean")
    assert_close(mean, _masked_mean(out, L), name="mean")
    assert_close(mean_p, mean, name="packed")
    assert h_n.shape == (4, 3, 6)


def test_opcheck_infer_mean():
    x, L, params, h0, c0, bidir = _op_args(False)
    torch.library.opcheck(OP_INFER.default, (x, L, params, h0, c0, bidir, False, True))
    torch.library.opcheck(torch.ops.sublocal.lstm_infer.default,
                          (x, L, [p for i, p in enumerate(params) if i % 6 < 4], h0, c0, bidir, True, True))


def test_return_sequences_rejects_other_values():
    x, L, params, *_ = _op_args(False)
    with pytest.raises(TypeError, match="must be a bool or 'mean', got 'max'"):
        sk.lstm(x, L, params, cell="mlstm", return_sequences="max")


@triton_interpreted
@pytest.mark.triton
@pytest.mark.parametrize("cell", ["lstm", "mlstm"])
def test_cuda_wrapper_mean_pool(cell):
    """The GPU wrapper's mean=True (run here on CPU tensors through the interpreter): the Triton
    kernel's sequence averaged over each sequence's valid steps, as the CPU kernel pools."""
    from sublocal_kernels.ops.lstm.register import CUDA_KERNELS

    params = (mlstm_params(3, 16, bidirectional=False) if cell == "mlstm" else
              [p.detach().double() for p in torch.nn.LSTM(3, 16, batch_first=True).parameters()])
    x, L = torch.randn(3, 6, 3, dtype=torch.float64), torch.tensor([6, 1, 4])
    mean, h_n, c_n = CUDA_KERNELS[cell]["infer"](x, L, params, None, None, False, False, True)
    out, ref_h, ref_c = lstm_ref(x, L, params, bidirectional=False, cell=cell)
    assert mean.shape == (3, 16)
    assert_close(mean, _masked_mean(out, L), name="mean")
    assert_close(h_n, ref_h, name="h_n")
    assert_close(c_n, ref_c, name="c_n")


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_inference_lanes_run_several_sequences_each(monkeypatch, bidirectional):
    # More sequences than lanes (at least 96, here 130 sequences of very different lengths): lanes
    # run sequences one after another, each from its own initial state; every output must still
    # be the reference's.
    monkeypatch.setenv("SUBLOCAL_LSTM_SCHEDULE", "units")
    B, T, C, H = 130, 40, 3, 17
    D = 2 if bidirectional else 1
    params = mlstm_params(C, H, bidirectional)
    x = torch.randn(B, T, C, dtype=torch.float64)
    L = torch.randint(1, 9, (B,))
    L[:3] = torch.tensor([40, 37, 31])  # a few long ones: ceil(total / longest) < 96 lanes
    h0, c0 = states(D, B, H)
    want = lstm_ref(x, L, params, h0, c0, bidirectional, cell="mlstm")
    with torch.inference_mode():
        got = sk.lstm(x, L, params, h0, c0, bidirectional, cell="mlstm")
        mean, h_n, c_n = sk.lstm(x, L, params, h0, c0, bidirectional, cell="mlstm", return_sequences="mean")
    for name, a, e in zip(["out", "h_n", "c_n"], got, want):
        assert_close(a, e, name=name)
    assert_close(mean, _masked_mean(want[0], L), name="mean")
    assert_close(h_n, want[1], name="h_n (mean)")
