"""multiwidth_conv1d: every backend against the reference, gradients, registration, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import sublocal_kernels as sk
from sublocal_kernels.ops.multiwidth_conv1d import multiwidth_conv1d_ref
from tests.helpers import assert_close, random_lengths, triton_interpreted

OP_FWD = torch.ops.sublocal.multiwidth_conv1d_fwd
OP_BWD = torch.ops.sublocal.multiwidth_conv1d_bwd

PAPER_WIDTHS = (1, 3, 5, 9, 15, 21)
WIDTHS = [
    pytest.param(PAPER_WIDTHS, id="w1-3-5-9-15-21"),
    pytest.param((3, 5), id="w3-5"),
    pytest.param((2,), id="w2"),
    pytest.param((4, 7), id="w4-7"),
]


def make_inputs(B, T, C, widths, filters=3, dtype=torch.float64, bias=True, lengths="random", requires_grad=False,
                device="cpu"):
    """x, weights (nn.Conv1d-like scale, so outputs are of order 1), biases, lengths in [1, T].
    Width i has ``filters + i`` filters, so widths differ in size too."""
    x = torch.randn(B, T, C, dtype=torch.float64)
    ws = [torch.randn(filters + i, C, k, dtype=torch.float64) / (C * k) ** 0.5 for i, k in enumerate(widths)]
    bs = [0.1 * torch.randn(filters + i, dtype=torch.float64) for i in range(len(widths))] if bias else None
    if lengths == "random":
        L = random_lengths(B, T, low=1)
    elif lengths == "full":
        L = torch.full((B,), T, dtype=torch.int64)
    else:
        L = None
    cast = lambda t: t.to(dtype).to(device).requires_grad_(requires_grad)  # noqa: E731
    return cast(x), [cast(w) for w in ws], [cast(b) for b in bs] if bs else None, L.to(device) if L is not None else L


def run_with_grads(fn, x, ws, bs, L, grad_y, **kw):
    """Output and gradients of x, every weight and every bias (leaves copied, so calls are independent)."""
    x = x.detach().clone().requires_grad_(True)
    ws = [w.detach().clone().requires_grad_(True) for w in ws]
    bs = [b.detach().clone().requires_grad_(True) for b in bs] if bs is not None else None
    y = fn(x, L, ws, bs, **kw)
    leaves = [x, *ws, *(bs or [])]
    grads = torch.autograd.grad(y, leaves, grad_y)
    return y.detach(), grads


def check_against_reference(B, T, C, widths, dtype=torch.float64, scale=1.0, filters=3, **kw):
    x, ws, bs, L = make_inputs(B, T, C, widths, filters=filters, dtype=dtype)
    N = sum(w.shape[0] for w in ws)
    grad_y = torch.randn(B, T, N, dtype=torch.float64).to(dtype)
    y, g = run_with_grads(sk.multiwidth_conv1d, x, ws, bs, L, grad_y, **kw)
    # The reference in float64 on the same (rounded) inputs.
    d = lambda t: t.double()  # noqa: E731
    yr, gr = run_with_grads(multiwidth_conv1d_ref, d(x), [d(w) for w in ws], [d(b) for b in bs], L, d(grad_y), **kw)
    assert y.dtype == dtype
    assert_close(y, yr, dtype, scale=scale, name="y")
    names = ["x"] + [f"weights[{i}]" for i in range(len(ws))] + [f"bias[{i}]" for i in range(len(ws))]
    for name, a, e in zip(names, g, gr):
        # weight and bias gradients sum over every valid position: compare relative to their size
        s = scale * max(1.0, float(e.abs().max()))
        assert_close(a, e, dtype, scale=s, name=f"grad {name}")
    for b in range(B):
        assert (y[b, int(L[b]):] == 0).all(), "outputs at or past the length must be exactly zero"
        assert (g[0][b, int(L[b]):] == 0).all(), "grad x at or past the length must be exactly zero"
    return y, g


# ---- CPU kernel against the reference, float64 ---------------------------------------------

MODES = [
    pytest.param(False, False, id="same"),
    pytest.param(True, False, id="causal"),
    pytest.param(False, True, id="same-reverse"),
    pytest.param(True, True, id="causal-reverse"),
]


@pytest.mark.parametrize("widths", WIDTHS)
@pytest.mark.parametrize("causal,reverse", MODES)
@pytest.mark.parametrize("dilation", [1, 2, 4], ids=["d1", "d2", "d4"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", None], ids=["relu", "tanh", "sigmoid", "linear"])
def test_cpu_matches_reference_float64(widths, causal, reverse, dilation, activation, poisoned):
    check_against_reference(4, 37, 5, widths, causal=causal, reverse=reverse, dilation=dilation,
                            activation=activation)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 7])
def test_windows_are_those_documented(k):
    """A one-hot input at position 10 shows which outputs see it: t sees t - left .. t + right."""
    from sublocal_kernels.ops.multiwidth_conv1d import window

    T, d = 25, 2
    x = torch.zeros(1, T, 1, dtype=torch.float64)
    x[0, 10, 0] = 1.0
    w = torch.ones(1, 1, k, dtype=torch.float64)
    expected_windows = {(False, False): (k // 2, (k - 1) // 2), (True, False): (k - 1, 0),
                        (False, True): ((k - 1) // 2, k // 2), (True, True): (0, k - 1)}
    for (causal, reverse), (left, right) in expected_windows.items():
        assert window(k, causal, reverse) == (left, right)
        y = sk.multiwidth_conv1d(x, None, [w], activation=None, causal=causal, reverse=reverse, dilation=d)[0, :, 0]
        # output t reads 10 when 10 = t + (j - left) * d for some tap j in [0, k)
        seen = sorted(10 - (j - left) * d for j in range(k))
        assert torch.nonzero(y).flatten().tolist() == [t for t in seen if 0 <= t < T]


@pytest.mark.parametrize("causal", [False, True], ids=["same", "causal"])
def test_reverse_is_the_flipped_sequence(causal):
    """reverse=True: flip each sequence within its length, convolve, flip back."""
    x, ws, bs, L = make_inputs(4, 30, 3, (2, 3, 6))
    kw = dict(causal=causal, dilation=2)
    y = sk.multiwidth_conv1d(x, L, ws, bs, reverse=True, **kw)
    for b in range(4):
        n = int(L[b])
        expected = sk.multiwidth_conv1d(x[b:b + 1, :n].flip(1), None, ws, bs, **kw)[0].flip(0)
        assert_close(y[b, :n], expected)


@pytest.mark.parametrize("C", [1, 5, 20, 41, 80])
@pytest.mark.parametrize("B,T", [pytest.param(3, 1, id="B3-T1"), pytest.param(2, 7, id="B2-T7"),
                                 pytest.param(5, 151, id="B5-T151")])
def test_cpu_channels_and_lengths_float64(B, T, C, poisoned):
    # T=151 spans two 128-position tiles of the CPU kernel, so tile boundaries and halos are crossed.
    check_against_reference(B, T, C, PAPER_WIDTHS)


def test_cpu_long_sequence_float64(poisoned):
    check_against_reference(2, 1134, 20, PAPER_WIDTHS, causal=True, dilation=2)


@pytest.mark.parametrize("isa", ["avx512", "avx2", "baseline"])
@pytest.mark.parametrize("dx_layout", ["normal", "transposed"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_cpu_every_instruction_set(isa, dx_layout, dtype, monkeypatch, poisoned):
    """Each compiled micro-kernel (the fastest the CPU has is the default; the others are forced)
    and both layouts of the input gradient, with N and C past one register tile's columns."""
    import platform

    if platform.machine() not in ("x86_64", "AMD64") and isa != "baseline":
        pytest.skip("x86 instruction sets")
    monkeypatch.setenv("SUBLOCAL_CPU_ISA", isa)
    monkeypatch.setenv("SUBLOCAL_MWC_DX", dx_layout)
    check_against_reference(3, 140, 41, (3, 2, 9), filters=30, dtype=dtype)  # N = 93, C = 41


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", None], ids=["tanh", "sigmoid", "linear"])
def test_cpu_wide_causal_qrnn_like(activation, poisoned):
    """The QRNN layer's use: one width-2 causal conv producing many channels, its gate's
    activation fused (tanh for z, sigmoid for f and o)."""
    check_against_reference(2, 75, 7, (2,), filters=150, causal=True, activation=activation)


@pytest.mark.parametrize("isa", ["avx512", "avx2", "baseline"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_cpu_fused_gate_activations_every_instruction_set(isa, activation, dtype, monkeypatch, poisoned):
    """tanh and sigmoid after each micro-kernel, through the float buffer for bfloat16."""
    import platform

    if platform.machine() not in ("x86_64", "AMD64") and isa != "baseline":
        pytest.skip("x86 instruction sets")
    monkeypatch.setenv("SUBLOCAL_CPU_ISA", isa)
    check_against_reference(3, 70, 9, (2,), filters=40, causal=True, activation=activation, dtype=dtype)


def test_fused_activation_equals_eager_activation():
    """The QRNN's fused gates give what torch.tanh / torch.sigmoid on the linear conv give, and
    the same gradients, to float32 rounding (the same ATen kernels run on each tile, but ATen's
    sigmoid rounds a few elements of a small tensor 1 ulp apart from a large one's, and its
    tanh_backward may contract 1 - y^2 into one fused multiply-add)."""
    x, ws, bs, L = make_inputs(3, 50, 16, (2,), filters=48, dtype=torch.float32, requires_grad=True)
    g = torch.randn(3, 50, 48)
    for act, fn in (("tanh", torch.tanh), ("sigmoid", torch.sigmoid)):
        kw = dict(causal=True)
        fused = sk.multiwidth_conv1d(x, L, ws, bs, activation=act, **kw)
        eager = fn(sk.multiwidth_conv1d(x, L, ws, bs, activation=None, **kw))
        valid = (torch.arange(50)[None, :] < L[:, None])[:, :, None]
        # Valid steps to an ulp; the fused output stays zero at padding (sigmoid(0) = 0.5).
        torch.testing.assert_close(fused[valid.expand_as(fused)], eager[valid.expand_as(eager)], rtol=2.4e-7,
                                   atol=0, msg=act)
        assert not fused[~valid.expand_as(fused)].any(), act
        ga = torch.autograd.grad(fused, [x, *ws, *bs], g)
        gb = torch.autograd.grad(eager, [x, *ws, *bs], g)
        for a, b in zip(ga, gb):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=act)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["f32", "bf16", "f16"])
def test_cpu_low_precision(dtype, poisoned):
    check_against_reference(4, 130, 20, PAPER_WIDTHS, dtype=dtype, scale=4.0)


def test_single_width_single_filter_no_bias_no_lengths():
    x, ws, _, _ = make_inputs(2, 9, 3, (5,), filters=1)
    y = sk.multiwidth_conv1d(x, None, ws, activation=None)
    yr = multiwidth_conv1d_ref(x, None, ws, activation=None)
    assert_close(y, yr)
    # Without lengths every sequence is T long; without activation the output is a plain conv.
    conv = torch.nn.functional.conv1d(x.transpose(1, 2), ws[0], padding=2).transpose(1, 2)
    assert_close(y, conv)


def test_matches_nn_conv1d_bank_on_full_lengths():
    """With every length T and odd widths: six nn.Conv1d, torch.cat and ReLU."""
    torch.manual_seed(3)
    convs = [torch.nn.Conv1d(20, 10, k, padding=k // 2).double() for k in PAPER_WIDTHS]
    x = torch.randn(3, 50, 20, dtype=torch.float64)
    expected = torch.relu(torch.cat([c(x.transpose(1, 2)) for c in convs], 1)).transpose(1, 2)
    got = sk.multiwidth_conv1d(x, torch.tensor([50, 50, 50]), [c.weight for c in convs], [c.bias for c in convs])
    assert_close(got, expected)


def test_each_sequence_as_if_alone():
    """A sequence's outputs do not depend on what lies past its length (padding garbage included)."""
    x, ws, bs, _ = make_inputs(3, 40, 6, (3, 4, 9))
    L = torch.tensor([40, 13, 1])
    y = sk.multiwidth_conv1d(x, L, ws, bs)
    for b in range(3):
        n = int(L[b])
        alone = sk.multiwidth_conv1d(x[b:b + 1, :n], None, ws, bs)
        assert_close(y[b:b + 1, :n], alone)
        garbage = x.clone()
        garbage[b, n:] = 1e6
        assert torch.equal(sk.multiwidth_conv1d(garbage, L, ws, bs)[b], y[b])


def test_weight_grads_do_not_depend_on_thread_count():
    """The weight gradient sums fixed chunks in a fixed order: bit-identical for 1 and 2 threads."""
    x, ws, bs, L = make_inputs(6, 300, 20, PAPER_WIDTHS, dtype=torch.float32)
    grad_y = torch.randn(6, 300, sum(w.shape[0] for w in ws))
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(run_with_grads(sk.multiwidth_conv1d, x, ws, bs, L, grad_y)[1])
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_noncontiguous_inputs():
    B, T, C = 3, 29, 7
    x = torch.randn(B, T, 2 * C, dtype=torch.float64)[:, :, ::2]
    ws = [torch.randn(k, C, 4, dtype=torch.float64).permute(2, 1, 0) for k in (1, 3)]  # (4, C, k) views
    bs = [torch.randn(8, dtype=torch.float64)[::2] for _ in ws]
    L = torch.tensor([29, 1, 17], dtype=torch.int32)
    assert not (x.is_contiguous() or ws[1].is_contiguous() or bs[0].is_contiguous())
    y = sk.multiwidth_conv1d(x, L, ws, bs, causal=True)
    assert_close(y, multiwidth_conv1d_ref(x.contiguous(), L, [w.contiguous() for w in ws],
                                          [b.contiguous() for b in bs], causal=True))
    # gradients arriving non-contiguous (an expanded tensor from .sum()), with and without ReLU
    for activation in ("relu", None):
        xs = [x.clone().requires_grad_(True) for _ in range(2)]
        sk.multiwidth_conv1d(xs[0], L, ws, bs, activation=activation).sum().backward()
        multiwidth_conv1d_ref(xs[1], L, ws, bs, activation=activation).sum().backward()
        assert_close(xs[0].grad, xs[1].grad)


def test_lengths_forms():
    x, ws, bs, _ = make_inputs(3, 6, 2, (3,))
    y1 = sk.multiwidth_conv1d(x, [6, 1, 2], ws, bs)
    y2 = sk.multiwidth_conv1d(x, torch.tensor([6, 1, 2], dtype=torch.int32), ws, bs)
    assert torch.equal(y1, y2)
    y3 = sk.multiwidth_conv1d(x, None, ws, bs)
    y4 = sk.multiwidth_conv1d(x, [6, 6, 6], ws, bs)
    assert torch.equal(y3, y4)


def test_empty_batch():
    x, ws, bs, _ = make_inputs(0, 5, 3, (3, 5))
    y = sk.multiwidth_conv1d(x.requires_grad_(True), None, ws, bs)
    assert y.shape == (0, 5, 7)
    y.sum().backward()
    assert x.grad.shape == x.shape


def test_grad_only_for_weights_or_only_for_x():
    x, ws, bs, L = make_inputs(2, 20, 4, (3, 5))
    grad_y = torch.randn(2, 20, 7, dtype=torch.float64)
    _, ref = run_with_grads(sk.multiwidth_conv1d, x, ws, bs, L, grad_y)
    # x only: weights are constants
    xg = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(sk.multiwidth_conv1d(xg, L, ws, bs), [xg], grad_y)
    assert torch.equal(gx, ref[0])
    # weights only (the first layer on a one-hot input): no input gradient is computed
    wg = [w.clone().requires_grad_(True) for w in ws]
    gw = torch.autograd.grad(sk.multiwidth_conv1d(x, L, wg, bs), wg, grad_y)
    for a, e in zip(gw, ref[1:3]):
        assert torch.equal(a, e)


# ---- autograd, registration, compile --------------------------------------------------------

@pytest.mark.parametrize("causal,dilation,activation,reverse", [(False, 1, "relu", False), (True, 2, None, False),
                                                                (False, 3, None, True), (True, 1, "relu", True),
                                                                (True, 1, "tanh", False), (True, 2, "sigmoid", True)])
def test_gradcheck(causal, dilation, activation, reverse):
    x, ws, bs, _ = make_inputs(3, 11, 3, (1, 2, 5), filters=2, requires_grad=True)
    L = torch.tensor([11, 4, 1])
    n = len(ws)

    def fn(x_, *params):
        return sk.multiwidth_conv1d(x_, L, list(params[:n]), list(params[n:]), activation, causal, dilation, reverse)

    assert torch.autograd.gradcheck(fn, (x, *ws, *bs))


def test_gradcheck_no_bias_no_lengths():
    x, ws, _, _ = make_inputs(2, 8, 2, (4, 3), filters=2, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x_, a, b: sk.multiwidth_conv1d(x_, None, [a, b], activation=None), (x, *ws))


@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
@pytest.mark.parametrize("variant", ["full", "minimal", "sigmoid"])
def test_opcheck(requires_grad, variant):
    if variant == "sigmoid":
        x, ws, bs, L = make_inputs(2, 9, 4, (2,), dtype=torch.float32, requires_grad=requires_grad)
        args = (x, L, ws, torch.cat(bs).detach().requires_grad_(requires_grad), "sigmoid", True, False, 1)
    elif variant == "full":
        x, ws, bs, L = make_inputs(3, 13, 5, (1, 4, 3), dtype=torch.float32, requires_grad=requires_grad)
        bias = torch.cat(bs).detach().requires_grad_(requires_grad)
        args = (x, L, ws, bias, "relu", False, True, 2)
    else:
        x, ws, _, _ = make_inputs(2, 5, 3, (2,), dtype=torch.float32, bias=False, lengths=None,
                                  requires_grad=requires_grad)
        args = (x, None, ws, None, "none", True, False, 1)
    torch.library.opcheck(OP_FWD, args)
    d = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
    ws_d = [w.detach() for w in ws]
    y = OP_FWD(d[0], d[1], ws_d, *d[3:])
    for need_x, need_w in [(True, True), (True, False), (False, True)]:
        torch.library.opcheck(OP_BWD, (torch.randn_like(y), d[0], d[1], ws_d, y if args[4] != "none" else None,
                                       *args[4:], need_x, need_w))


def test_torch_compile_fullgraph():
    x, ws, bs, L = make_inputs(3, 40, 8, (3, 4, 9), dtype=torch.float32, requires_grad=True)

    def layer(x, ws, bs, L):
        y = sk.multiwidth_conv1d(torch.tanh(x), L, ws, bs, dilation=2)
        return (y * 2).square().sum()

    compiled = torch.compile(layer, fullgraph=True)
    loss = compiled(x, ws, bs, L)
    grads = torch.autograd.grad(loss, [x, *ws, *bs])
    ref = layer(x, ws, bs, L)
    ref_grads = torch.autograd.grad(ref, [x, *ws, *bs])
    assert_close(loss, ref, name="loss")
    for a, e in zip(grads, ref_grads):
        assert_close(a, e, name="grad")


@given(
    B=st.integers(1, 4),
    T=st.integers(1, 60),
    C=st.integers(1, 20),
    widths=st.lists(st.integers(1, 12), min_size=1, max_size=4),
    causal=st.booleans(),
    reverse=st.booleans(),
    dilation=st.integers(1, 4),
    relu=st.booleans(),
    isa=st.sampled_from(["", "avx2", "baseline"]),
    dx_layout=st.sampled_from(["normal", "transposed"]),
    data=st.data(),
)
def test_property_matches_reference(B, T, C, widths, causal, reverse, dilation, relu, isa, dx_layout, data):
    import os
    import platform

    if platform.machine() not in ("x86_64", "AMD64"):
        isa = "baseline"
    # C up to 20 against register tiles of 4 or 6 rows and vectors of 4, 8 or 16 lanes, in both
    # layouts of the input gradient (buffers sized for whole tiles past C)
    os.environ["SUBLOCAL_CPU_ISA"], os.environ["SUBLOCAL_MWC_DX"] = isa, dx_layout
    try:
        _property_case(B, T, C, widths, causal, reverse, dilation, relu, data)
    finally:
        os.environ.pop("SUBLOCAL_CPU_ISA")
        os.environ.pop("SUBLOCAL_MWC_DX")


def _property_case(B, T, C, widths, causal, reverse, dilation, relu, data):
    lengths = torch.tensor(data.draw(st.lists(st.integers(1, T), min_size=B, max_size=B)))
    x, ws, bs, _ = make_inputs(B, T, C, tuple(widths), filters=2)
    kw = dict(activation="relu" if relu else None, causal=causal, dilation=dilation, reverse=reverse)
    grad_y = torch.randn(B, T, sum(w.shape[0] for w in ws), dtype=torch.float64)
    y, g = run_with_grads(sk.multiwidth_conv1d, x, ws, bs, lengths, grad_y, **kw)
    yr, gr = run_with_grads(multiwidth_conv1d_ref, x, ws, bs, lengths, grad_y, **kw)
    assert_close(y, yr)
    for a, e in zip(g, gr):
        assert_close(a, e)


# ---- bad input: one test per rule --------------------------------------------------------

def _ok():
    x, ws, bs, L = make_inputs(2, 5, 3, (1, 3), dtype=torch.float32)
    return dict(x=x, weights=ws, bias=bs, lengths=L)


@pytest.mark.parametrize(
    "change,exc,pattern",
    [
        (lambda a: a.update(x=a["x"].numpy()), TypeError, r"`x` must be a torch.Tensor"),
        (lambda a: a.update(x=a["x"][0]), ValueError, r"`x` must have 3 dimensions"),
        (lambda a: a.update(x=a["x"].int()), TypeError, r"`x` must have dtype"),
        (lambda a: a.update(weights=a["weights"][0]), TypeError, r"`weights` must be a list or tuple"),
        (lambda a: a.update(weights=[]), ValueError, r"`weights` must hold at least one"),
        (lambda a: a.update(weights=[a["weights"][0][:, :2]]), ValueError,
         r"`weights\[0\]` must have shape \(3, 3, 1\) \(F_i, C, k_i\), got \(3, 2, 1\)"),
        (lambda a: a.update(weights=[a["weights"][0], a["weights"][1][0]]), ValueError,
         r"`weights\[1\]` must have 3 dimensions"),
        (lambda a: a.update(weights=[a["weights"][0], a["weights"][1].double()]), TypeError,
         r"`weights\[1\]` has dtype torch.float64 but `x` has dtype torch.float32"),
        (lambda a: a.update(weights=[a["weights"][0].to("meta"), a["weights"][1]]), ValueError,
         r"`weights\[0\]` is on meta but `x` is on cpu"),
        (lambda a: a.update(weights=[torch.zeros(2, 3, 0)]), ValueError, r"`weights\[0\]` must have a kernel width"),
        (lambda a: a.update(bias=a["bias"][:1]), ValueError, r"`bias` must hold one \(F_i,\) tensor per width: "
                                                               r"expected 2, got 1"),
        (lambda a: a.update(bias=torch.zeros(5)), TypeError, r"`bias` must be None or a list"),
        (lambda a: a.update(bias=[a["bias"][0], a["bias"][1][:2]]), ValueError, r"`bias\[1\]` must have shape \(4,\) \(F_i,\), got \(2,\)"),
        (lambda a: a.update(bias=[a["bias"][0].half(), a["bias"][1]]), TypeError, r"`bias\[0\]` has dtype"),
        (lambda a: a.update(lengths=torch.tensor([5, 6])), ValueError,
         r"`lengths\[1\]` = 6 is out of range.*\[1, 5\]"),
        (lambda a: a.update(lengths=torch.tensor([0, 2])), ValueError, r"`lengths\[0\]` = 0 is out of range.*\[1, 5\]"),
        (lambda a: a.update(lengths=torch.tensor([5])), ValueError, r"`lengths` must have shape \(2,\)"),
        (lambda a: a.update(lengths=torch.tensor([5.0, 2.0])), TypeError, r"`lengths` must have dtype int32 or int64"),
        (lambda a: a.update(activation="gelu"), ValueError,
         r"`activation` must be \"relu\", \"tanh\", \"sigmoid\" or None, got 'gelu'"),
        (lambda a: a.update(activation=torch.relu), TypeError, r"`activation` must be \"relu\", \"tanh\""),
        (lambda a: a.update(causal=1), TypeError, r"`causal` must be a bool"),
        (lambda a: a.update(reverse="yes"), TypeError, r"`reverse` must be a bool"),
        (lambda a: a.update(dilation=0), ValueError, r"`dilation` must be >= 1, got 0"),
        (lambda a: a.update(dilation=2.0), TypeError, r"`dilation` must be an int"),
    ],
    ids=["x-not-tensor", "x-ndim", "x-int", "weights-not-list", "weights-empty", "weight-wrong-C", "weight-ndim",
         "weight-dtype", "weight-device", "weight-k0", "bias-count", "bias-not-list", "bias-shape", "bias-dtype",
         "length-too-long", "length-zero", "lengths-shape", "lengths-float", "activation-name", "activation-type",
         "causal-type", "reverse-type", "dilation-zero", "dilation-float"],
)
def test_bad_input(change, exc, pattern):
    args = _ok()
    change(args)
    with pytest.raises(exc, match=pattern):
        sk.multiwidth_conv1d(**args)


def test_op_level_checks_for_direct_callers():
    x, ws, bs, L = make_inputs(2, 5, 3, (1, 3), dtype=torch.float32)
    b = torch.cat(bs)
    with pytest.raises(RuntimeError, match=r"`lengths\[0\]` = 9 is out of range"):
        OP_FWD(x, torch.tensor([9, 1]), ws, b, "relu", False, False, 1)
    with pytest.raises(RuntimeError, match=r"`weights\[1\]` must have shape \(F_i, 3, k_i\)"):
        OP_FWD(x, L, [ws[0], ws[1][:, :2]], b, "relu", False, False, 1)
    with pytest.raises(RuntimeError, match=r"`bias` must have shape \[7\], got \[4\]"):
        OP_FWD(x, L, ws, b[:4], "relu", False, False, 1)
    with pytest.raises(RuntimeError, match=r"`activation` must be \"relu\", \"tanh\", \"sigmoid\" or \"none\""):
        OP_FWD(x, L, ws, b, "gelu", False, False, 1)
    with pytest.raises(RuntimeError, match=r"`dilation` must be >= 1"):
        OP_FWD(x, L, ws, b, "relu", False, False, 0)
    with pytest.raises(RuntimeError, match=r"`weights` must hold at least one"):
        OP_FWD(x, L, [], b, "relu", False, False, 1)
    y = OP_FWD(x, L, ws, b, "relu", False, False, 1)
    with pytest.raises(RuntimeError, match=r"`y` \(the forward output\) is required"):
        OP_BWD(y, x, L, ws, None, "relu", False, False, 1, True, True)
    with pytest.raises(RuntimeError, match=r"`grad_y` must have shape"):
        OP_BWD(y[:, :, :3], x, L, ws, y, "relu", False, False, 1, True, True)


# ---- Triton kernels on CPU tensors (interpreter) ---------------------------------------------

TRITON_CASES = [
    pytest.param(2, 37, 5, PAPER_WIDTHS, False, False, 1, "relu", 2, id="B2-T37-C5-paper-relu-split2"),
    pytest.param(3, 21, 20, (3, 5), True, False, 2, "relu", 1, id="B3-T21-C20-w3-5-causal-d2"),
    pytest.param(2, 19, 1, (2,), False, True, 4, None, 3, id="B2-T19-C1-w2-reverse-d4-linear-split3"),
    pytest.param(2, 33, 41, (4, 7), True, True, 1, None, 2, id="B2-T33-C41-w4-7-causal-reverse-linear"),
    pytest.param(2, 23, 6, (2,), True, False, 1, "tanh", 2, id="B2-T23-C6-w2-causal-tanh"),
    pytest.param(2, 23, 6, (2,), True, True, 1, "sigmoid", 1, id="B2-T23-C6-w2-causal-reverse-sigmoid"),
]


@triton_interpreted
@pytest.mark.triton
@pytest.mark.parametrize("B,T,C,widths,causal,reverse,dilation,activation,splits", TRITON_CASES)
def test_triton_matches_reference(B, T, C, widths, causal, reverse, dilation, activation, splits, poisoned):
    from sublocal_kernels.ops.multiwidth_conv1d.triton import (
        multiwidth_conv1d_bwd_triton,
        multiwidth_conv1d_fwd_triton,
    )

    x, ws, bs, L = make_inputs(B, T, C, widths)
    kw = dict(activation=activation, causal=causal, dilation=dilation, reverse=reverse)
    grad_y = torch.randn(B, T, sum(w.shape[0] for w in ws), dtype=torch.float64)
    yr, gr = run_with_grads(multiwidth_conv1d_ref, x, ws, bs, L, grad_y, **kw)
    act = activation or "none"
    # block_t=16: several position tiles per sequence even at these small T
    y = multiwidth_conv1d_fwd_triton(x, L, ws, torch.cat(bs), act, causal, reverse, dilation, block_t=16)
    assert_close(y, yr, name="y")
    gx, gw, gb = multiwidth_conv1d_bwd_triton(grad_y, x, L, ws, y, act, causal, reverse, dilation, True, True,
                                              block_t=16, splits=splits)
    n = len(ws)
    assert_close(gx, gr[0], name="grad x")
    for i in range(n):
        assert_close(gw[i], gr[1 + i], name=f"grad weights[{i}]")
    assert_close(gb, torch.cat(gr[1 + n:]), name="grad bias")


@triton_interpreted
@pytest.mark.triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_triton_low_precision_noncontiguous_and_partial_grads(dtype):
    from sublocal_kernels.ops.multiwidth_conv1d.triton import (
        multiwidth_conv1d_bwd_triton,
        multiwidth_conv1d_fwd_triton,
    )

    B, T, C = 2, 30, 6
    x64, ws64, bs64, _ = make_inputs(B, T, 2 * C, (3, 4))
    x = x64.to(dtype)[:, :, ::2]  # strided channels
    ws = [w[:, :C].to(dtype) for w in ws64]
    bias = torch.cat(bs64).to(dtype)
    L = torch.tensor([30, 9])
    grad_y = torch.randn(B, T, 7).to(dtype)
    y = multiwidth_conv1d_fwd_triton(x, L, ws, bias, "relu", False, False, 1, block_t=16)
    d = lambda t: t.double()  # noqa: E731
    yr, gr = run_with_grads(multiwidth_conv1d_ref, d(x), [d(w) for w in ws], [d(b) for b in torch.split(bias, [3, 4])],
                            L, d(grad_y))
    assert y.dtype == dtype
    assert_close(y, yr, dtype, scale=2.0)
    gx, gw, gb = multiwidth_conv1d_bwd_triton(grad_y, x, L, ws, y, "relu", False, False, 1, True, False,
                                              block_t=16)
    assert gw == [] and gb.numel() == 0
    assert_close(gx, gr[0], dtype, scale=4.0, name="grad x")
    gx2, gw, gb = multiwidth_conv1d_bwd_triton(grad_y, x, L, ws, y, "relu", False, False, 1, False, True,
                                               block_t=16, splits=2)
    assert gx2.numel() == 0
    for a, e in zip(gw, gr[1:3]):
        assert_close(a, e, dtype, scale=4.0 * float(e.abs().max()), name="grad weight")


# ---- CUDA (skipped where no GPU is present) --------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("B,T,C,widths,causal,dilation,reverse", [
    pytest.param(4, 151, 20, PAPER_WIDTHS, False, 1, False, id="B4-T151-C20-paper"),
    pytest.param(3, 63, 41, (4, 7), True, 2, False, id="B3-T63-C41-w4-7-causal-d2"),
    pytest.param(2, 300, 5, (2,), True, 1, True, id="B2-T300-C5-w2-causal-reverse"),
    pytest.param(128, 1000, 20, PAPER_WIDTHS, False, 1, False, id="paper"),
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64],
                         ids=["f32", "bf16", "f16", "f64"])
def test_cuda_matches_reference(B, T, C, widths, causal, dilation, reverse, dtype, poisoned):
    x, ws, bs, L = make_inputs(B, T, C, widths, dtype=dtype, device="cuda")
    grad_y = torch.randn(B, T, sum(w.shape[0] for w in ws), device="cuda").to(dtype)
    kw = dict(causal=causal, dilation=dilation, reverse=reverse)
    y, g = run_with_grads(sk.multiwidth_conv1d, x, ws, bs, L, grad_y, **kw)
    d = lambda t: t.double().cpu()  # noqa: E731
    yr, gr = run_with_grads(multiwidth_conv1d_ref, d(x), [d(w) for w in ws], [d(b) for b in bs], L.cpu(), d(grad_y),
                            **kw)
    assert_close(y, yr, dtype, scale=4.0, name="y")
    for a, e in zip(g, gr):
        assert_close(a, e, dtype, scale=4.0 * max(1.0, float(e.abs().max())), name="grad")
