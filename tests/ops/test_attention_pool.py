"""attention pooling: every backend against the reference, gradients, registration, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import sublocal_kernels as sk
from sublocal_kernels.ops.attention_pool import attention_pool_ref
from tests.helpers import TOLERANCES, assert_close, random_lengths, triton_interpreted

OP_FWD = torch.ops.sublocal.attention_pool_fwd
OP_BWD = torch.ops.sublocal.attention_pool_bwd


def make_inputs(B, T, D, A, dtype=torch.float64, device="cpu", bias=True, lengths="random", requires_grad=False,
                v_scale=1.0):
    """h, lengths, w_a, v_a, b_a; drawn in float64 and rounded to ``dtype``."""
    h = torch.randn(B, T, D, dtype=torch.float64)
    w = torch.randn(D, A, dtype=torch.float64) / max(D, 1) ** 0.5
    v = torch.randn(A, dtype=torch.float64) * v_scale
    b = torch.randn(A, dtype=torch.float64) * 0.5 if bias else None
    if lengths == "random":
        L = random_lengths(B, T, low=1)
    else:
        L = torch.full((B,), T, dtype=torch.int64)
    tensors = [x.to(dtype).to(device) if x is not None else None for x in (h, w, v, b)]
    if requires_grad:
        for x in tensors:
            if x is not None:
                x.requires_grad_(True)
    h, w, v, b = tensors
    return h, L.to(device), w, v, b


def leaves_of(args):
    return [x for x in args if isinstance(x, torch.Tensor) and x.is_floating_point() and x.requires_grad]


def run_with_grads(fn, args, cotangents):
    """Outputs of ``fn(*args)`` and the gradients of its float leaves for the given cotangents."""
    outs = fn(*args)
    leaves = leaves_of(args)
    pairs = [(o, g) for o, g in zip(outs, cotangents) if g is not None]
    grads = torch.autograd.grad([o for o, _ in pairs], leaves, [g for _, g in pairs])
    return [o.detach() for o in outs], list(grads)


def as_reference_args(args):
    """Detached float64 copies that require grad (the reference's inputs)."""
    return [x.detach().double().requires_grad_(x.requires_grad) if isinstance(x, torch.Tensor) and x.is_floating_point()
            else x for x in args]


def cotangents_for(B, T, D, dtype=torch.float64):
    return torch.randn(B, D, dtype=torch.float64).to(dtype), torch.randn(B, T, dtype=torch.float64).to(dtype)


def check_padding(alpha, grad_h, L):
    for b in range(alpha.shape[0]):
        n = int(L[b])
        assert (alpha[b, n:] == 0).all(), "alpha must be exactly 0 at padded steps"
        assert (grad_h[b, n:] == 0).all(), "grad h must be exactly 0 at padded steps"


CASES = [
    pytest.param(1, 1, 1, 1, id="B1-T1-D1-A1"),
    pytest.param(3, 7, 30, 64, id="B3-T7-D30-A64"),
    pytest.param(4, 63, 1, 400, id="B4-T63-D1-A400"),
    pytest.param(5, 151, 30, 400, id="B5-T151-D30-A400"),
    pytest.param(2, 97, 512, 64, id="B2-T97-D512-A64"),
    pytest.param(3, 41, 600, 400, id="B3-T41-D600-A400"),
    pytest.param(2, 1134, 30, 1, id="B2-T1134-D30-A1"),
    pytest.param(6, 300, 17, 9, id="B6-T300-D17-A9"),
]


@pytest.mark.parametrize("B,T,D,A", CASES)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_cpu_matches_reference_float64(B, T, D, A, bias, poisoned):
    args = make_inputs(B, T, D, A, bias=bias, requires_grad=True)
    cot = cotangents_for(B, T, D)
    (c, a), g = run_with_grads(sk.attention_pool, args, cot)
    (cr, ar), gr = run_with_grads(attention_pool_ref, as_reference_args(args), cot)
    assert_close(c, cr, name="context")
    assert_close(a, ar, name="alpha")
    for name, x, y in zip(["h", "w_a", "v_a", "b_a"], g, gr):
        assert_close(x, y, name=f"grad {name}")
    check_padding(a, g[0], args[1])
    assert_close(a.sum(1), torch.ones(B, dtype=torch.float64), name="alpha sums to 1")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["f32", "bf16", "f16"])
def test_cpu_low_precision(dtype, poisoned):
    B, T, D, A = 4, 200, 48, 40
    args = make_inputs(B, T, D, A, dtype=dtype, requires_grad=True)
    cot = cotangents_for(B, T, D, dtype)
    (c, a), g = run_with_grads(sk.attention_pool, args, cot)
    # the reference in float64 on the same (rounded) inputs
    (cr, ar), gr = run_with_grads(attention_pool_ref, as_reference_args(args), [x.double() for x in cot])
    assert c.dtype == dtype and a.dtype == dtype and all(x.dtype == dtype for x in g)
    assert_close(c, cr, dtype, name="context")
    assert_close(a, ar, dtype, name="alpha")
    # dW_a and dv_a sum over every valid step: allow a few roundings of the largest terms
    for name, x, y in zip(["h", "w_a", "v_a", "b_a"], g, gr):
        assert_close(x, y, dtype, scale=4.0 if dtype == torch.float32 else 2.0, name=f"grad {name}")


def test_long_sequence_float64():
    """T = 30000 (the `rna` length) with a length-1 and a full-length sequence: values and grads."""
    B, T, D, A = 3, 30000, 30, 64
    args = list(make_inputs(B, T, D, A, requires_grad=True))
    args[1] = torch.tensor([T, 1, 12345])
    cot = cotangents_for(B, T, D)
    (c, a), g = run_with_grads(sk.attention_pool, args, cot)
    (cr, ar), gr = run_with_grads(attention_pool_ref, as_reference_args(args), cot)
    assert_close(c, cr, name="context")
    assert_close(a, ar, name="alpha")
    for name, x, y in zip(["h", "w_a", "v_a", "b_a"], g, gr):
        assert_close(x, y, name=f"grad {name}")
    check_padding(a, g[0], args[1])


def test_length_one():
    """A length-1 sequence puts all its weight on step 0: context is h[0] exactly, its gradient
    reaches only h[0] (through the context) and nothing reaches the scores."""
    B, T, D, A = 2, 9, 5, 7
    h, _, w, v, b = make_inputs(B, T, D, A, requires_grad=True)
    L = torch.tensor([1, 1])
    c, a = sk.attention_pool(h, L, w, v, b)
    assert torch.equal(a[:, 0], torch.ones(B, dtype=a.dtype)) and (a[:, 1:] == 0).all()
    assert torch.equal(c, h[:, 0].detach())
    dc = torch.randn(B, D, dtype=torch.float64)
    gh, gw, gv, gb = torch.autograd.grad(c, [h, w, v, b], dc)
    assert torch.equal(gh[:, 0], dc) and (gh[:, 1:] == 0).all()
    for x in (gw, gv, gb):
        assert (x.abs() < 1e-12).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("v_scale", [1e3, 1e6], ids=["v1e3", "v1e6"])
def test_huge_scores(dtype, v_scale, poisoned):
    """Scores of magnitude up to 1e6 * A: the max-subtracted softmax neither overflows nor gives NaN."""
    B, T, D, A = 4, 300, 16, 24
    args = make_inputs(B, T, D, A, dtype=dtype, requires_grad=True, v_scale=v_scale)
    cot = cotangents_for(B, T, D, dtype)
    (c, a), g = run_with_grads(sk.attention_pool, args, cot)
    for x in [c, a, *g]:
        assert torch.isfinite(x).all()
    assert_close(a.sum(1), torch.ones(B, dtype=torch.float64), dtype, name="alpha sums to 1")
    # A score is a sum of A terms up to |v_a| each, so rounding moves it by about
    # eps * sum|v_a| whatever the algorithm: the weights are only that well conditioned.
    h, _, _, v, _ = (x.detach() if x is not None else None for x in args)
    eps = torch.finfo(dtype).eps
    scale = max(1.0, 8 * eps * float(v.abs().sum()) / TOLERANCES[dtype][1])
    (cr, ar), gr = run_with_grads(attention_pool_ref, as_reference_args(args), [x.double() for x in cot])
    assert_close(c, cr, dtype, scale=scale, name="context")
    assert_close(a, ar, dtype, scale=scale, name="alpha")
    # The softmax is saturated, so the exact gradients of w_a, v_a, b_a are ~0 and any
    # evaluation returns rounding noise: eps * |dalpha| in de_t = alpha_t (dalpha_t - g),
    # amplified by |v_a| (r = de (1 - tanh^2) v_a) and |h| (dW_a = h^T r), per sequence.
    dalpha = float(cot[1].abs().max()) + float(cot[0].abs().max()) * float(h.abs().max()) * D
    noise = 8 * eps * dalpha * float(v.abs().max()) * max(1.0, float(h.abs().max())) * B
    assert_close(g[0], gr[0], dtype, scale=scale, name="grad h")
    for name, x, y in zip(["w_a", "v_a", "b_a"], g[1:], gr[1:]):
        torch.testing.assert_close(x.double(), y, atol=noise, rtol=0, msg=lambda m: f"grad {name}: {m}")


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_gradcheck(bias):
    h, _, w, v, b = make_inputs(3, 11, 4, 5, bias=bias, requires_grad=True)
    L = torch.tensor([11, 1, 6])
    if bias:
        assert torch.autograd.gradcheck(lambda h_, w_, v_, b_: sk.attention_pool(h_, L, w_, v_, b_), (h, w, v, b))
    else:
        assert torch.autograd.gradcheck(lambda h_, w_, v_: sk.attention_pool(h_, L, w_, v_), (h, w, v))


@pytest.mark.parametrize("output", ["context", "alpha"])
def test_gradcheck_one_output(output):
    """Only one output reaches the loss: the other's gradient is None (not zeros) in the backward."""
    h, _, w, v, b = make_inputs(2, 8, 3, 4, requires_grad=True)
    L = torch.tensor([8, 3])
    i = 0 if output == "context" else 1
    assert torch.autograd.gradcheck(lambda *x: sk.attention_pool(x[0], L, *x[1:])[i], (h, w, v, b))


def test_backward_is_deterministic_and_leaves_incoming_grads_alone():
    args = make_inputs(5, 333, 40, 30, dtype=torch.float32)
    B, T, D = args[0].shape
    c, a, act = OP_FWD(*args)
    dc, da = cotangents_for(B, T, D, torch.float32)
    dc0, da0 = dc.clone(), da.clone()
    first = OP_BWD(dc, da, *args, c, a, act)
    second = OP_BWD(dc, da, *args, c, a, act)
    assert torch.equal(dc, dc0) and torch.equal(da, da0), "the backward wrote into an incoming gradient"
    for x, y in zip(first, second):
        assert torch.equal(x, y)


def test_activations_are_valid_rows_only():
    """The CPU kernel keeps tanh(h W_a + b_a) for the valid steps only: sum(lengths) rows."""
    h, L, w, v, b = make_inputs(4, 50, 6, 7)
    _, _, act = OP_FWD(h, L, w, v, b)
    assert act.shape == (int(L.sum()), 7)
    valid = torch.cat([h[i, : int(L[i])] for i in range(4)])
    assert_close(act, torch.tanh(valid @ w + b))


@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_opcheck(requires_grad, bias):
    h, L, w, v, b = make_inputs(3, 13, 5, 6, dtype=torch.float32, bias=bias, requires_grad=requires_grad)
    torch.library.opcheck(OP_FWD, (h, L, w, v, b))
    d = lambda t: t.detach() if t is not None else None  # noqa: E731
    c, a, act = OP_FWD(d(h), L, d(w), d(v), d(b))
    dc, da = torch.randn_like(c), torch.randn_like(a)
    torch.library.opcheck(OP_BWD, (dc, da, d(h), L, d(w), d(v), d(b), c, a, act))
    torch.library.opcheck(OP_BWD, (dc, None, d(h), L, d(w), d(v), d(b), c, a, act))


def test_torch_compile_fullgraph():
    h, L, w, v, b = make_inputs(3, 40, 8, 6, dtype=torch.float32, requires_grad=True)

    def layer(h, L, w, v, b):
        context, alpha = sk.attention_pool(torch.tanh(h), L, w, v, b)
        return (context * 2).sum() + alpha.square().sum()

    compiled = torch.compile(layer, fullgraph=True)
    loss = compiled(h, L, w, v, b)
    grads = torch.autograd.grad(loss, [h, w, v, b])
    ref = layer(h, L, w, v, b)
    ref_grads = torch.autograd.grad(ref, [h, w, v, b])
    assert_close(loss, ref, name="loss")
    for x, y in zip(grads, ref_grads):
        assert_close(x, y, name="grad")


def test_noncontiguous_inputs():
    B, T, D, A = 3, 29, 7, 5
    h = torch.randn(T, B, 2 * D, dtype=torch.float64).transpose(0, 1)[:, :, ::2]
    w = torch.randn(A, D, dtype=torch.float64).t()
    v = torch.randn(2 * A, dtype=torch.float64)[::2]
    b = torch.randn(A, 3, dtype=torch.float64)[:, 1]
    L = torch.tensor([29, 1, 17, 5, 9], dtype=torch.int32)[::2]
    assert not any(x.is_contiguous() for x in (h, w, v, b, L))
    leaves = [x.requires_grad_(True) for x in (h, w, v, b)]
    cot = cotangents_for(B, T, D)
    (c, a), g = run_with_grads(sk.attention_pool, [h, L, w, v, b], cot)
    ref_args = [x.detach().contiguous().requires_grad_(True) for x in leaves]
    (cr, ar), gr = run_with_grads(attention_pool_ref, [ref_args[0], L.contiguous(), *ref_args[1:]], cot)
    assert_close(c, cr)
    assert_close(a, ar)
    for x, y in zip(g, gr):
        assert_close(x, y)
    # gradients arriving non-contiguous (the expanded ones of .sum())
    c, a = sk.attention_pool(h, L, w, v, b)
    gh = torch.autograd.grad(c.sum() + a.sum(), h)[0]
    cr, ar = attention_pool_ref(ref_args[0], L, *ref_args[1:])
    assert_close(gh, torch.autograd.grad(cr.sum() + ar.sum(), ref_args[0])[0])


def test_lengths_forms():
    h, _, w, v, b = make_inputs(3, 6, 2, 3)
    c1, a1 = sk.attention_pool(h, [6, 1, 2], w, v, b)
    c2, a2 = sk.attention_pool(h, torch.tensor([6, 1, 2], dtype=torch.int32), w, v, b)
    assert torch.equal(c1, c2) and torch.equal(a1, a2)
    c3, a3 = sk.attention_pool(h, None, w, v, b)
    c4, a4 = sk.attention_pool(h, [6, 6, 6], w, v, b)
    assert torch.equal(c3, c4) and torch.equal(a3, a4)


def test_empty_batch():
    h, L, w, v, b = make_inputs(0, 5, 4, 3, requires_grad=True)
    c, a = sk.attention_pool(h, L, w, v, b)
    assert c.shape == (0, 4) and a.shape == (0, 5)
    gh, gw = torch.autograd.grad(c.sum() + a.sum(), [h, w])
    assert gh.shape == h.shape and (gw == 0).all()


@given(
    B=st.integers(1, 4),
    T=st.integers(1, 40),
    D=st.integers(1, 9),
    A=st.integers(1, 9),
    bias=st.booleans(),
    data=st.data(),
)
def test_property_matches_reference(B, T, D, A, bias, data):
    lengths = data.draw(st.lists(st.integers(1, T), min_size=B, max_size=B))
    h, _, w, v, b = make_inputs(B, T, D, A, bias=bias, requires_grad=True)
    args = [h, torch.tensor(lengths), w, v, b]
    cot = cotangents_for(B, T, D)
    (c, a), g = run_with_grads(sk.attention_pool, args, cot)
    (cr, ar), gr = run_with_grads(attention_pool_ref, as_reference_args(args), cot)
    assert_close(c, cr)
    assert_close(a, ar)
    for x, y in zip(g, gr):
        assert_close(x, y)


def _ok():
    h, L, w, v, b = make_inputs(2, 5, 3, 4, dtype=torch.float32)
    return dict(h=h, lengths=torch.tensor([5, 2]), w_a=w, v_a=v, b_a=b)


@pytest.mark.parametrize(
    "change,exc,pattern",
    [
        (lambda a: a.update(h=[[1.0]]), TypeError, r"`h` must be a torch.Tensor"),
        (lambda a: a.update(h=a["h"][0]), ValueError, r"`h` must have 3 dimensions"),
        (lambda a: a.update(h=a["h"].int()), TypeError, r"`h` must have dtype in"),
        (lambda a: a.update(w_a=a["w_a"][0]), ValueError, r"`w_a` must have 2 dimensions"),
        (lambda a: a.update(w_a=a["w_a"][:2]), ValueError, r"`w_a` must have shape \(3, 4\)"),
        (lambda a: a.update(w_a=a["w_a"].double()), TypeError, r"`w_a` has dtype torch.float64 but `h`"),
        (lambda a: a.update(v_a=a["v_a"][:3]), ValueError, r"`v_a` must have shape \(4,\)"),
        (lambda a: a.update(v_a=a["v_a"].half()), TypeError, r"`v_a` has dtype torch.float16"),
        (lambda a: a.update(b_a=a["b_a"][:3]), ValueError, r"`b_a` must have shape \(4,\)"),
        (lambda a: a.update(b_a=a["b_a"].double()), TypeError, r"`b_a` has dtype"),
        (lambda a: a.update(w_a=a["w_a"].to("meta")), ValueError, r"`w_a` is on meta but `h` is on cpu"),
        (lambda a: a.update(lengths=torch.tensor([6, 2])), ValueError, r"`lengths\[0\]` = 6 is out of range.*\[1, 5\]"),
        (lambda a: a.update(lengths=torch.tensor([5, 0])), ValueError, r"`lengths\[1\]` = 0 is out of range.*\[1, 5\]"),
        (lambda a: a.update(lengths=torch.tensor([-1, 2])), ValueError, r"`lengths\[0\]` = -1 is out of range"),
        (lambda a: a.update(lengths=torch.tensor([5])), ValueError, r"`lengths` must have shape \(2,\)"),
        (lambda a: a.update(lengths=torch.tensor([5.0, 2.0])), TypeError, r"`lengths` must have dtype int32 or int64"),
        (lambda a: a.update(lengths="5,2"), TypeError, r"`lengths` must be a torch.Tensor or a list of ints"),
        (lambda a: a.update(h=a["h"][:, :0], lengths=None), ValueError, r"`h` must have at least one step"),
    ],
    ids=["h-not-tensor", "h-ndim", "h-int", "w-ndim", "w-shape", "w-dtype", "v-shape", "v-dtype", "b-shape",
         "b-dtype", "device-mismatch", "length-too-long", "length-zero", "length-negative", "lengths-shape",
         "lengths-float", "lengths-string", "no-steps"],
)
def test_bad_input(change, exc, pattern):
    args = _ok()
    change(args)
    with pytest.raises(exc, match=pattern):
        sk.attention_pool(**args)


def test_op_level_checks_for_direct_callers():
    h, L, w, v, b = make_inputs(2, 5, 3, 4, dtype=torch.float32)
    with pytest.raises(RuntimeError, match=r"`lengths\[1\]` = 0 is out of range"):
        OP_FWD(h, torch.tensor([5, 0]), w, v, b)
    with pytest.raises(RuntimeError, match=r"`v_a` must have shape"):
        OP_FWD(h, L, w, v[:2], b)
    c, a, act = OP_FWD(h, L, w, v, b)
    with pytest.raises(RuntimeError, match=r"`activations` must have shape"):
        OP_BWD(c, a, h, L, w, v, b, c, a, act[1:])


# ---- Triton kernels on CPU tensors (interpreter) ---------------------------------------------

TRITON_CASES = [
    # B, T, D, A, blocks (t, d, a), dw_split, sequences per r slice
    pytest.param(1, 1, 1, 1, (16, 16, 16), 1, 1, id="B1-T1-D1-A1"),
    pytest.param(3, 45, 20, 37, (16, 16, 16), 2, 2, id="B3-T45-D20-A37-split2-slices2"),
    pytest.param(2, 70, 30, 64, (32, 16, 32), 3, 2, id="B2-T70-D30-A64-split3"),
]


@triton_interpreted
@pytest.mark.triton
@pytest.mark.parametrize("B,T,D,A,blocks,split,per_slice", TRITON_CASES)
def test_triton_matches_reference_float64(B, T, D, A, blocks, split, per_slice, poisoned):
    from sublocal_kernels.ops.attention_pool.triton import attention_pool_bwd_triton, attention_pool_fwd_triton

    bt, bd, ba = blocks
    args = make_inputs(B, T, D, A, bias=B != 2, requires_grad=True)
    h, L, w, v, b = args
    cot = cotangents_for(B, T, D)
    (cr, ar), gr = run_with_grads(attention_pool_ref, as_reference_args(args), cot)
    d = lambda t: t.detach() if t is not None else None  # noqa: E731
    c, a, act = attention_pool_fwd_triton(d(h), L, d(w), d(v), d(b), block_t=bt, block_d=bd, block_a=ba)
    assert act.shape == (0, A)
    assert_close(c, cr, name="context")
    assert_close(a, ar, name="alpha")
    grads = attention_pool_bwd_triton(*cot, d(h), L, d(w), d(v), d(b), c, a, block_t=bt, block_d=bd, block_a=ba,
                                      dw_split=split, r_chunk_elements=per_slice * T * A)
    for name, x, y in zip(["h", "w_a", "v_a", "b_a"], grads, gr):
        assert_close(x, y, name=f"grad {name}")
    check_padding(a, grads[0], L)


@triton_interpreted
@pytest.mark.triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["f32", "bf16", "f16"])
def test_triton_low_precision_and_noncontiguous(dtype):
    from sublocal_kernels.ops.attention_pool.triton import attention_pool_bwd_triton, attention_pool_fwd_triton

    B, T, D, A = 2, 40, 24, 20
    h = torch.randn(B, T, 2 * D).to(dtype)[:, :, ::2]
    w = (torch.randn(A, D) / D ** 0.5).to(dtype).t()
    v, b = torch.randn(A).to(dtype), torch.randn(A).to(dtype)
    L = torch.tensor([40, 13])
    c, a, _ = attention_pool_fwd_triton(h, L, w, v, b, block_t=16, block_d=16, block_a=16)
    ref_args = [x.double().requires_grad_(True) for x in (h, w, v, b)]
    cr, ar = attention_pool_ref(ref_args[0], L, *ref_args[1:])
    assert c.dtype == dtype and a.dtype == dtype
    assert_close(c, cr, dtype, name="context")
    assert_close(a, ar, dtype, name="alpha")
    dc, da = torch.randn(B, D).to(dtype), torch.randn(B, T).to(dtype)
    grads = attention_pool_bwd_triton(dc, da, h, L, w, v, b, c, a, block_t=16, block_d=16, block_a=16, dw_split=2)
    gr = torch.autograd.grad([cr, ar], ref_args, [dc.double(), da.double()])
    for name, x, y in zip(["h", "w_a", "v_a", "b_a"], grads, gr):
        assert x.dtype == dtype
        assert_close(x, y, dtype, scale=4.0, name=f"grad {name}")


# ---- CUDA (skipped where no GPU is present) --------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("B,T,D,A", CASES + [pytest.param(128, 1000, 512, 400, id="paper"),
                                             pytest.param(2, 30000, 256, 400, id="rna-2")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64],
                         ids=["f32", "bf16", "f16", "f64"])
def test_cuda_matches_cpu(B, T, D, A, dtype, poisoned):
    args = make_inputs(B, T, D, A, dtype=dtype, requires_grad=True)
    cot = cotangents_for(B, T, D, dtype)
    cuda_args = [None if x is None else x.detach().cuda().requires_grad_(x.requires_grad) for x in args]
    (c, a), g = run_with_grads(sk.attention_pool, cuda_args, [x.cuda() for x in cot])
    (cr, ar), gr = run_with_grads(sk.attention_pool, as_reference_args(args), [x.double() for x in cot])
    assert_close(c, cr, dtype, name="context")
    assert_close(a, ar, dtype, name="alpha")
    for name, x, y in zip(["h", "w_a", "v_a", "b_a"], g, gr):
        assert_close(x, y, dtype, scale=8.0, name=f"grad {name}")
    check_padding(a.cpu(), g[0].cpu(), args[1])


@pytest.mark.cuda
def test_cuda_lengths_on_device_and_compile():
    h, L, w, v, b = make_inputs(4, 100, 32, 16, dtype=torch.float32, device="cuda", requires_grad=True)
    compiled = torch.compile(lambda *x: sk.attention_pool(*x)[0].sum(), fullgraph=True)
    loss = compiled(h, L, w, v, b)
    grads = torch.autograd.grad(loss, [h, w, v, b])
    ref = attention_pool_ref(h, L, w, v, b)[0].sum()
    assert_close(loss, ref)
    for x, y in zip(grads, torch.autograd.grad(ref, [h, w, v, b])):
        assert_close(x, y, scale=4.0)
