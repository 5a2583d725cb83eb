"""channel-wise attention pooling: every backend against the reference, gradients, registration, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import sublocal_kernels as sk
from sublocal_kernels.ops.channel_attention_pool import channel_attention_pool_ref
from tests.helpers import TOLERANCES, assert_close, random_lengths, triton_interpreted
from tests.ops.test_conventions import _Record

OP_FWD = torch.ops.sublocal.channel_attention_pool_fwd
OP_BWD = torch.ops.sublocal.channel_attention_pool_bwd


def tie_free(B, T, D):
    """(B, T, D) float64 values with no two equal along T (a permutation of steps / 16 per channel):
    exact in bfloat16 and float16 for T <= 256, so the max-pool's arg-max step is unique in every dtype."""
    ranks = torch.rand(B, T, D, dtype=torch.float64).argsort(dim=1).double()
    return (ranks - T / 2) / 16


def make_inputs(B, T, D, dtype=torch.float64, lengths="random", requires_grad=False, logit_scale=1.0):
    """values, logits, lengths; drawn in float64 and rounded to ``dtype``; values tie-free along T."""
    values = tie_free(B, T, D) if dtype != torch.float64 else torch.randn(B, T, D, dtype=torch.float64)
    logits = torch.randn(B, T, D, dtype=torch.float64) * logit_scale
    L = random_lengths(B, T) if lengths == "random" else torch.full((B,), T, dtype=torch.int64)
    values, logits = values.to(dtype), logits.to(dtype)
    if requires_grad:
        values.requires_grad_(True)
        logits.requires_grad_(True)
    return values, logits, L


def cotangents_for(B, T, D, dtype=torch.float64, alpha=True):
    """Gradients for (context, maxpool, alpha); alpha's is None when it is not returned."""
    dc, dm = torch.randn(B, D, dtype=torch.float64), torch.randn(B, D, dtype=torch.float64)
    da = torch.randn(B, T, D, dtype=torch.float64) if alpha else None
    return [x.to(dtype) if x is not None else None for x in (dc, dm, da)]


def run_with_grads(fn, values, logits, L, cotangents):
    outs = fn(values, logits, L)
    pairs = [(o, g) for o, g in zip(outs, cotangents) if g is not None]
    # materialize_grads: the reference's logits get no gradient when only maxpool is used
    grads = torch.autograd.grad([o for o, _ in pairs], [values, logits], [g for _, g in pairs], materialize_grads=True)
    return [o.detach() if o is not None else None for o in outs], list(grads)


def sk_fn(return_alpha):
    return lambda v, e, L: sk.channel_attention_pool(v, e, L, return_alpha=return_alpha)


def ref_args(values, logits):
    return [x.detach().double().requires_grad_(True) for x in (values, logits)]


def check_padding(L, *tensors):
    for b in range(len(L)):
        n = int(L[b])
        for x in tensors:
            assert (x[b, n:] == 0).all(), "padded steps must be exactly 0"


CASES = [
    pytest.param(1, 1, 1, id="B1-T1-D1"),
    pytest.param(3, 7, 30, id="B3-T7-D30"),
    pytest.param(4, 63, 1, id="B4-T63-D1"),
    pytest.param(5, 151, 100, id="B5-T151-D100"),
    pytest.param(2, 97, 513, id="B2-T97-D513"),
    pytest.param(6, 300, 17, id="B6-T300-D17"),
]


@pytest.mark.parametrize("B,T,D", CASES)
@pytest.mark.parametrize("return_alpha", [True, False], ids=["alpha", "no-alpha"])
def test_cpu_matches_reference_float64(B, T, D, return_alpha, poisoned):
    v, e, L = make_inputs(B, T, D, requires_grad=True)
    cot = cotangents_for(B, T, D, alpha=return_alpha)
    (c, m, a), g = run_with_grads(sk_fn(return_alpha), v, e, L, cot)
    (cr, mr, ar), gr = run_with_grads(channel_attention_pool_ref, *ref_args(v, e), L, cot)
    assert_close(c, cr, name="context")
    assert_close(m, mr, name="maxpool")
    if return_alpha:
        assert_close(a, ar, name="alpha")
        check_padding(L, a)
        assert_close(a.sum(1), torch.ones(B, D, dtype=torch.float64), name="alpha sums to 1")
    else:
        assert a is None
    for name, x, y in zip(["values", "logits"], g, gr):
        assert_close(x, y, name=f"grad {name}")
    check_padding(L, *g)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["f32", "bf16", "f16"])
def test_cpu_low_precision(dtype, poisoned):
    B, T, D = 4, 200, 48
    v, e, L = make_inputs(B, T, D, dtype=dtype, requires_grad=True)
    cot = cotangents_for(B, T, D, dtype)
    (c, m, a), g = run_with_grads(sk_fn(True), v, e, L, cot)
    # the reference in float64 on the same (rounded) inputs
    (cr, mr, ar), gr = run_with_grads(channel_attention_pool_ref, *ref_args(v, e), L, [x.double() for x in cot])
    assert all(x.dtype == dtype for x in (c, m, a, *g))
    assert_close(c, cr, dtype, name="context")
    assert torch.equal(m.double(), mr), "the max-pool is exact in every dtype"
    assert_close(a, ar, dtype, name="alpha")
    for name, x, y in zip(["values", "logits"], g, gr):
        assert_close(x, y, dtype, scale=2.0, name=f"grad {name}")


@pytest.mark.parametrize("D", [16, 37, 64, 130, 1024], ids=lambda d: f"D{d}")
@pytest.mark.parametrize("logits_kind", ["normal", "ramp", "ramp-down", "some-neg-inf"])
def test_cpu_float32_vector_path(D, logits_kind, poisoned):
    """float32 runs 16-lane vectors with a tail of scalar channels (D = 37: two vectors and 5; 130:
    two items of four vectors and a 2-channel item) and a lagging exponent reference that is raised,
    the block redone, when a logit passes it by 16: a ramp rising 0.5 per step forces that at most
    blocks, a falling one never; -inf logits at some valid steps get zero weight."""
    B, T = 5, 301
    v, e, L = make_inputs(B, T, D, dtype=torch.float32)
    e = e.double()
    if logits_kind in ("ramp", "ramp-down"):
        ramp = torch.arange(T, dtype=torch.float64)[None, :, None] * 0.5
        e = e + (ramp if logits_kind == "ramp" else -ramp)
    elif logits_kind == "some-neg-inf":
        hole = torch.rand(B, T, D) < 0.3
        hole[:, 0] = False  # every channel keeps a finite logit
        e = e.masked_fill(hole, float("-inf"))
    e = e.float()
    v.requires_grad_(True)
    e.requires_grad_(True)
    cot = cotangents_for(B, T, D, torch.float32)
    (c, m, a), g = run_with_grads(sk_fn(True), v, e, L, cot)
    (cr, mr, ar), gr = run_with_grads(channel_attention_pool_ref, *ref_args(v, e), L, [x.double() for x in cot])
    assert_close(c, cr, torch.float32, name="context")
    assert torch.equal(m.double(), mr), "the max-pool is exact"
    assert_close(a, ar, torch.float32, name="alpha")
    for name, x, y in zip(["values", "logits"], g, gr):
        assert_close(x, y, torch.float32, scale=2.0, name=f"grad {name}")
    if logits_kind == "some-neg-inf":
        assert (a[e.detach() == float("-inf")] == 0).all()
    check_padding(L, a, *g)


def test_long_sequence_float64():
    """T = 30000 (the `rna` length) with a length-1 and a full-length sequence."""
    B, T, D = 3, 30000, 5
    v, e, _ = make_inputs(B, T, D, requires_grad=True)
    L = torch.tensor([T, 1, 12345])
    cot = cotangents_for(B, T, D)
    (c, m, a), g = run_with_grads(sk_fn(True), v, e, L, cot)
    (cr, mr, ar), gr = run_with_grads(channel_attention_pool_ref, *ref_args(v, e), L, cot)
    for name, x, y in zip(["context", "maxpool", "alpha", "grad values", "grad logits"], [c, m, a, *g], [cr, mr, ar, *gr]):
        assert_close(x, y, name=name)


def test_length_one():
    """A length-1 sequence puts all its weight on step 0: context and maxpool are values[:, 0]
    exactly, and both gradients reach only step 0 of values; the logits get none."""
    B, T, D = 2, 9, 5
    v, e, _ = make_inputs(B, T, D, requires_grad=True)
    L = torch.tensor([1, 1])
    c, m, a = sk.channel_attention_pool(v, e, L, return_alpha=True)
    assert torch.equal(a[:, 0], torch.ones(B, D, dtype=a.dtype)) and (a[:, 1:] == 0).all()
    assert torch.equal(c, v[:, 0].detach()) and torch.equal(m, v[:, 0].detach())
    dc, dm = torch.randn(B, D, dtype=torch.float64), torch.randn(B, D, dtype=torch.float64)
    gv, ge = torch.autograd.grad([c, m], [v, e], [dc, dm])
    assert torch.equal(gv[:, 0], dc + dm) and (gv[:, 1:] == 0).all()
    assert (ge == 0).all()


def test_maxpool_gradient_goes_to_the_argmax_step():
    B, T, D = 3, 20, 6
    v, e, L = make_inputs(B, T, D, requires_grad=True)
    _, m, _ = sk.channel_attention_pool(v, e, L)
    dm = torch.randn(B, D, dtype=torch.float64)
    gv, ge = torch.autograd.grad(m, [v, e], dm)
    masked = v.detach().masked_fill(torch.arange(T)[None, :, None] >= L[:, None, None], float("-inf"))
    expected = torch.zeros_like(gv).scatter_(1, masked.argmax(1, keepdim=True), dm[:, None])
    assert torch.equal(gv, expected)
    assert (ge == 0).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("scale", [1e3, 1e6], ids=["e1e3", "e1e6"])
def test_huge_logits(dtype, scale, poisoned):
    """Logits up to 1e6 in magnitude: the max-subtracted online softmax neither overflows nor gives NaN."""
    B, T, D = 4, 300, 16
    v, e, L = make_inputs(B, T, D, dtype=dtype, requires_grad=True, logit_scale=scale)
    cot = cotangents_for(B, T, D, dtype)
    (c, m, a), g = run_with_grads(sk_fn(True), v, e, L, cot)
    for x in [c, m, a, *g]:
        assert torch.isfinite(x).all()
    assert_close(a.sum(1), torch.ones(B, D, dtype=torch.float64), dtype, name="alpha sums to 1")
    (cr, _, ar), gr = run_with_grads(channel_attention_pool_ref, *ref_args(v, e), L, [x.double() for x in cot])
    # A rounding of a logit of size `scale` moves it by eps * scale: the weights are that well conditioned.
    tol = max(1.0, 8 * torch.finfo(dtype).eps * scale / TOLERANCES[dtype][1])
    assert_close(c, cr, dtype, scale=tol, name="context")
    assert_close(a, ar, dtype, scale=tol, name="alpha")
    for name, x, y in zip(["values", "logits"], g, gr):
        assert_close(x, y, dtype, scale=tol, name=f"grad {name}")


@pytest.mark.parametrize("return_alpha", [True, False], ids=["alpha", "no-alpha"])
def test_gradcheck(return_alpha):
    """Every output, the max-pool's gradient included (random values: no ties)."""
    v, e, _ = make_inputs(3, 7, 3, requires_grad=True)
    L = torch.tensor([7, 1, 4])
    if return_alpha:
        assert torch.autograd.gradcheck(lambda v_, e_: sk.channel_attention_pool(v_, e_, L, True), (v, e))
    else:
        assert torch.autograd.gradcheck(lambda v_, e_: sk.channel_attention_pool(v_, e_, L)[:2], (v, e))


@pytest.mark.parametrize("output", [0, 1, 2], ids=["context", "maxpool", "alpha"])
def test_gradcheck_one_output(output):
    """Only one output reaches the loss: the others' gradients are None (not zeros) in the backward."""
    v, e, _ = make_inputs(2, 8, 3, requires_grad=True)
    L = torch.tensor([8, 3])
    assert torch.autograd.gradcheck(lambda v_, e_: sk.channel_attention_pool(v_, e_, L, True)[output], (v, e))


def test_workspace_and_unused_gradients_reach_the_backward_as_none():
    """Only maxpool is used: the backward gets None for context, alpha and both workspaces (the
    convention's _backward raises on a workspace gradient), and nothing is zero-filled for them."""
    v, e, L = make_inputs(3, 5, 4, requires_grad=True)
    _, m, _ = sk.channel_attention_pool(v, e, L)
    rec = _Record()
    with rec:
        m.sum().backward()
    (args,) = [a for name, _, a in rec.calls if "channel_attention_pool_bwd" in name]
    assert args[0] is None and args[2] is None and args[1] is not None
    assert not rec.zero_fills()


def test_only_needed_input_gradients_are_computed():
    v, e, L = make_inputs(3, 5, 4)
    e.requires_grad_(True)
    c, _, _ = sk.channel_attention_pool(v, e, L)
    rec = _Record()
    with rec:
        c.sum().backward()
    (call,) = [(a, shapes) for name, shapes, a in rec.calls if "channel_attention_pool_bwd" in name]
    args, shapes = call
    assert args[-2:] == (False, True)  # need_grad_values, need_grad_logits
    assert shapes[0] == (0,), "no grad_values tensor is made when values needs no gradient"
    assert v.grad is None and e.grad is not None


def test_workspaces_are_small_statistics():
    """The forward keeps (B, D) statistics only: the log-sum-exp and the arg-max step."""
    v, e, L = make_inputs(4, 50, 6)
    c, m, a, lse, arg = OP_FWD(v, e, L, False)
    assert a.shape == (0,) and lse.shape == (4, 6) and arg.shape == (4, 6) and arg.dtype == torch.int64
    pad = torch.arange(50)[None, :, None] >= L[:, None, None]
    assert_close(lse, torch.logsumexp(e.masked_fill(pad, float("-inf")), 1), name="lse")
    assert torch.equal(arg, v.masked_fill(pad, float("-inf")).argmax(1))


@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
@pytest.mark.parametrize("return_alpha", [True, False], ids=["alpha", "no-alpha"])
def test_opcheck(requires_grad, return_alpha):
    v, e, L = make_inputs(3, 13, 5, dtype=torch.float32, requires_grad=requires_grad)
    torch.library.opcheck(OP_FWD, (v, e, L, return_alpha))
    v, e = v.detach(), e.detach()
    c, m, a, lse, arg = OP_FWD(v, e, L, True)
    dc, dm, da = torch.randn_like(c), torch.randn_like(m), torch.randn_like(a)
    torch.library.opcheck(OP_BWD, (dc, dm, da, v, e, L, c, lse, arg, True, True))
    torch.library.opcheck(OP_BWD, (None, dm, None, v, e, L, c, lse, arg, True, False))
    torch.library.opcheck(OP_BWD, (dc, None, None, v, e, L, c, lse, arg, False, True))


def test_torch_compile_fullgraph():
    v, e, L = make_inputs(3, 40, 8, dtype=torch.float32, requires_grad=True)

    def layer(v, e, L):
        context, maxpool, alpha = sk.channel_attention_pool(torch.tanh(v), e, L, return_alpha=True)
        return (context * 2).sum() + maxpool.sum() + alpha.square().sum()

    compiled = torch.compile(layer, fullgraph=True)
    loss = compiled(v, e, L)
    grads = torch.autograd.grad(loss, [v, e])
    ref = layer(v, e, L)
    ref_grads = torch.autograd.grad(ref, [v, e])
    assert_close(loss, ref, name="loss")
    for x, y in zip(grads, ref_grads):
        assert_close(x, y, name="grad")


def test_noncontiguous_inputs():
    B, T, D = 3, 29, 7
    v = torch.randn(T, B, 2 * D, dtype=torch.float64).transpose(0, 1)[:, :, ::2].requires_grad_(True)
    e = torch.randn(B, D, T, dtype=torch.float64).transpose(1, 2).requires_grad_(True)
    L = torch.tensor([29, 1, 17, 5, 9], dtype=torch.int32)[::2]
    assert not any(x.is_contiguous() for x in (v, e, L))
    cot = cotangents_for(B, T, D)
    outs, g = run_with_grads(sk_fn(True), v, e, L, cot)
    ref, gr = run_with_grads(channel_attention_pool_ref, *[x.detach().contiguous().requires_grad_(True) for x in (v, e)],
                             L.contiguous(), cot)
    for x, y in zip(outs + g, ref + gr):
        assert_close(x, y)
    # gradients arriving non-contiguous (the expanded ones of .sum())
    c, m, a = sk.channel_attention_pool(v, e, L, return_alpha=True)
    gv, ge = torch.autograd.grad(c.sum() + m.sum() + a.sum(), [v, e])
    vr, er = ref_args(v, e)
    cr, mr, ar = channel_attention_pool_ref(vr, er, L)
    for x, y in zip((gv, ge), torch.autograd.grad(cr.sum() + mr.sum() + ar.sum(), [vr, er])):
        assert_close(x, y)


def test_lengths_forms():
    v, e, _ = make_inputs(3, 6, 2)
    r1 = sk.channel_attention_pool(v, e, [6, 1, 2], True)
    r2 = sk.channel_attention_pool(v, e, torch.tensor([6, 1, 2], dtype=torch.int32), True)
    r3 = sk.channel_attention_pool(v, e, None, True)
    r4 = sk.channel_attention_pool(v, e, [6, 6, 6], True)
    assert all(torch.equal(x, y) for x, y in zip(r1, r2))
    assert all(torch.equal(x, y) for x, y in zip(r3, r4))


def test_empty_batch_and_no_channels():
    v, e, L = make_inputs(0, 5, 4, requires_grad=True)
    c, m, a = sk.channel_attention_pool(v, e, L, True)
    assert c.shape == (0, 4) and m.shape == (0, 4) and a.shape == (0, 5, 4)
    gv, ge = torch.autograd.grad(c.sum() + m.sum(), [v, e])
    assert gv.shape == v.shape and ge.shape == e.shape
    v, e, L = make_inputs(2, 5, 0, requires_grad=True)
    c, m, _ = sk.channel_attention_pool(v, e, L)
    assert c.shape == (2, 0) and m.shape == (2, 0)


@given(
    B=st.integers(1, 4),
    T=st.integers(1, 40),
    D=st.integers(1, 70),
    return_alpha=st.booleans(),
    data=st.data(),
)
def test_property_matches_reference(B, T, D, return_alpha, data):
    lengths = torch.tensor(data.draw(st.lists(st.integers(1, T), min_size=B, max_size=B)))
    v, e, _ = make_inputs(B, T, D, requires_grad=True)
    cot = cotangents_for(B, T, D, alpha=return_alpha)
    outs, g = run_with_grads(sk_fn(return_alpha), v, e, lengths, cot)
    ref, gr = run_with_grads(channel_attention_pool_ref, *ref_args(v, e), lengths, cot)
    for x, y in zip(outs + g, ref + gr):
        if x is not None:
            assert_close(x, y)


def _ok():
    v, e, _ = make_inputs(2, 5, 3, dtype=torch.float32)
    return dict(values=v, logits=e, lengths=torch.tensor([5, 2]))


@pytest.mark.parametrize(
    "change,exc,pattern",
    [
        (lambda a: a.update(values=[[1.0]]), TypeError, r"`values` must be a torch.Tensor"),
        (lambda a: a.update(values=a["values"][0]), ValueError, r"`values` must have 3 dimensions"),
        (lambda a: a.update(values=a["values"].int()), TypeError, r"`values` must have dtype in"),
        (lambda a: a.update(logits=3.0), TypeError, r"`logits` must be a torch.Tensor"),
        (lambda a: a.update(logits=a["logits"][0]), ValueError, r"`logits` must have 3 dimensions"),
        (lambda a: a.update(logits=a["logits"][:, :4]), ValueError, r"`logits` must have shape \(2, 5, 3\)"),
        (lambda a: a.update(logits=a["logits"].double()), TypeError, r"`logits` has dtype torch.float64 but `values`"),
        (lambda a: a.update(logits=a["logits"].to("meta")), ValueError, r"`logits` is on meta but `values` is on cpu"),
        (lambda a: a.update(lengths=torch.tensor([6, 2])), ValueError, r"`lengths\[0\]` = 6 is out of range.*\[1, 5\]"),
        (lambda a: a.update(lengths=torch.tensor([5, 0])), ValueError, r"`lengths\[1\]` = 0 is out of range.*\[1, 5\]"),
        (lambda a: a.update(lengths=torch.tensor([5])), ValueError, r"`lengths` must have shape \(2,\)"),
        (lambda a: a.update(lengths=torch.tensor([5.0, 2.0])), TypeError, r"`lengths` must have dtype int32 or int64"),
        (lambda a: a.update(lengths="5,2"), TypeError, r"`lengths` must be a torch.Tensor or a list of ints"),
        (lambda a: a.update(values=a["values"][:, :0], logits=a["logits"][:, :0], lengths=None), ValueError,
         r"`values` must have at least one step"),
        (lambda a: a.update(return_alpha=1), TypeError, r"`return_alpha` must be a bool, got int"),
    ],
    ids=["values-not-tensor", "values-ndim", "values-int", "logits-not-tensor", "logits-ndim", "logits-shape",
         "logits-dtype", "device-mismatch", "length-too-long", "length-zero", "lengths-shape", "lengths-float",
         "lengths-string", "no-steps", "return-alpha-not-bool"],
)
def test_bad_input(change, exc, pattern):
    args = _ok()
    change(args)
    with pytest.raises(exc, match=f"^channel_attention_pool: .*{pattern}"):
        sk.channel_attention_pool(**args)


def test_op_level_checks_for_direct_callers():
    v, e, L = make_inputs(2, 5, 3, dtype=torch.float32)
    with pytest.raises(RuntimeError, match=r"`lengths\[1\]` = 0 is out of range"):
        OP_FWD(v, e, torch.tensor([5, 0]), False)
    with pytest.raises(RuntimeError, match=r"`logits` must have shape"):
        OP_FWD(v, e[:, :4], L, False)
    c, m, a, lse, arg = OP_FWD(v, e, L, False)
    with pytest.raises(RuntimeError, match=r"`lse` must have shape"):
        OP_BWD(c, m, None, v, e, L, c, lse[:1], arg, True, True)
    with pytest.raises(RuntimeError, match=r"`argmax` value 5 at \(0, 0\) is not a valid step"):
        OP_BWD(c, m, None, v, e, L, c, lse, torch.full_like(arg, 5), True, True)
    with pytest.raises(RuntimeError, match=r"`grad_alpha` must have shape"):
        OP_BWD(c, m, c, v, e, L, c, lse, arg, True, True)


# ---- Triton kernels on CPU tensors (interpreter) ---------------------------------------------

TRITON_CASES = [
    # B, T, D, blocks (t, d)
    pytest.param(1, 1, 1, (16, 16), id="B1-T1-D1"),
    pytest.param(3, 45, 20, (16, 16), id="B3-T45-D20"),
    pytest.param(2, 70, 37, (32, 16), id="B2-T70-D37"),
]


@triton_interpreted
@pytest.mark.triton
@pytest.mark.parametrize("B,T,D,blocks", TRITON_CASES)
@pytest.mark.parametrize("grads", ["all", "maxpool-only", "context-only"])
def test_triton_matches_reference_float64(B, T, D, blocks, grads, poisoned):
    from sublocal_kernels.ops.channel_attention_pool.triton import (channel_attention_pool_bwd_triton,
                                                                    channel_attention_pool_fwd_triton)

    bt, bd = blocks
    v, e, L = make_inputs(B, T, D, requires_grad=True)
    cot = cotangents_for(B, T, D)
    if grads == "maxpool-only":
        cot[0] = cot[2] = None
    elif grads == "context-only":
        cot[1] = cot[2] = None
    (cr, mr, ar), gr = run_with_grads(channel_attention_pool_ref, *ref_args(v, e), L, cot)
    c, m, a, lse, arg = channel_attention_pool_fwd_triton(v.detach(), e.detach(), L, True, block_t=bt, block_d=bd)
    assert_close(c, cr, name="context")
    assert_close(m, mr, name="maxpool")
    assert_close(a, ar, name="alpha")
    check_padding(L, a)
    g = channel_attention_pool_bwd_triton(*cot, v.detach(), e.detach(), L, c, lse, arg, True, True,
                                          block_t=bt, block_d=bd)
    for name, x, y in zip(["values", "logits"], g, gr):
        assert_close(x, y, name=f"grad {name}")
    check_padding(L, *g)
    c2, m2, a2, lse2, arg2 = channel_attention_pool_fwd_triton(v.detach(), e.detach(), L, False, block_t=bt,
                                                               block_d=bd)
    assert a2.shape == (0,) and torch.equal(c2, c) and torch.equal(m2, m) and torch.equal(arg2, arg)
    gv, ge = channel_attention_pool_bwd_triton(*cot, v.detach(), e.detach(), L, c, lse, arg, False, True,
                                               block_t=bt, block_d=bd)
    assert gv.shape == (0,) and torch.equal(ge, g[1])


@triton_interpreted
@pytest.mark.triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["f32", "bf16", "f16"])
def test_triton_low_precision_and_noncontiguous(dtype):
    from sublocal_kernels.ops.channel_attention_pool.triton import (channel_attention_pool_bwd_triton,
                                                                    channel_attention_pool_fwd_triton)

    B, T, D = 2, 40, 24
    v = tie_free(B, T, 2 * D).to(dtype)[:, :, ::2]
    e = torch.randn(B, D, T).to(dtype).transpose(1, 2)
    L = torch.tensor([40, 13])
    c, m, a, lse, arg = channel_attention_pool_fwd_triton(v, e, L, True, block_t=16, block_d=16)
    vr, er = ref_args(v, e)
    cr, mr, ar = channel_attention_pool_ref(vr, er, L)
    assert c.dtype == dtype and m.dtype == dtype and a.dtype == dtype and lse.dtype == torch.float32
    assert_close(c, cr, dtype, name="context")
    assert torch.equal(m.double(), mr.detach())
    assert_close(a, ar, dtype, name="alpha")
    cot = cotangents_for(B, T, D, dtype)
    g = channel_attention_pool_bwd_triton(*cot, v, e, L, c, lse, arg, True, True, block_t=16, block_d=16)
    gr = torch.autograd.grad([cr, mr, ar], [vr, er], [x.double() for x in cot])
    for name, x, y in zip(["values", "logits"], g, gr):
        assert x.dtype == dtype
        assert_close(x, y, dtype, scale=2.0, name=f"grad {name}")


# ---- CUDA (skipped where no GPU is present) --------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("B,T,D", CASES + [pytest.param(32, 1000, 1024, id="light-attention")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64],
                         ids=["f32", "bf16", "f16", "f64"])
def test_cuda_matches_cpu(B, T, D, dtype, poisoned):
    # Past T = 256 the rounded values may tie; both backends then pick the first step.
    v, e, L = make_inputs(B, T, D, dtype=dtype, requires_grad=True)
    cot = cotangents_for(B, T, D, dtype)
    cuda_args = [x.detach().cuda().requires_grad_(True) for x in (v, e)]
    outs, g = run_with_grads(sk_fn(True), *cuda_args, L.cuda(), [x.cuda() for x in cot])
    ref, gr = run_with_grads(sk_fn(True), *ref_args(v, e), L, [x.double() for x in cot])
    for name, x, y in zip(["context", "maxpool", "alpha", "grad values", "grad logits"], outs + g, ref + gr):
        assert_close(x, y, dtype, scale=4.0, name=name)


@pytest.mark.cuda
def test_cuda_lengths_on_device_and_compile():
    v, e, L = make_inputs(4, 100, 32, dtype=torch.float32, requires_grad=True)
    v, e = (x.detach().cuda().requires_grad_(True) for x in (v, e))
    L = L.cuda()
    compiled = torch.compile(lambda *x: sum(o.sum() for o in sk.channel_attention_pool(*x)[:2]), fullgraph=True)
    loss = compiled(v, e, L)
    grads = torch.autograd.grad(loss, [v, e])
    ref = sum(o.sum() for o in channel_attention_pool_ref(v, e, L)[:2])
    assert_close(loss, ref)
    for x, y in zip(grads, torch.autograd.grad(ref, [v, e])):
        assert_close(x, y, scale=4.0)
