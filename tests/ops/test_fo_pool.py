"""fo-pool: every backend against the reference, gradients, registration, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import sublocal_kernels as sk
from sublocal_kernels.ops.fo_pool import CHUNK, fo_pool_ref
from tests.helpers import assert_close, random_lengths, triton_interpreted

OP_FWD = torch.ops.sublocal.fo_pool_fwd
OP_BWD = torch.ops.sublocal.fo_pool_bwd


def make_inputs(B, T, D, dtype=torch.float64, device="cpu", output=True, initial=True, lengths="random",
                requires_grad=False):
    f = torch.rand(B, T, D, dtype=torch.float64).to(dtype).to(device)
    z = torch.randn(B, T, D, dtype=torch.float64).to(dtype).to(device)
    o = torch.rand(B, T, D, dtype=torch.float64).to(dtype).to(device) if output else None
    i0 = torch.randn(B, D, dtype=torch.float64).to(dtype).to(device) if initial else None
    if lengths == "random":
        L = random_lengths(B, T).to(device)
    elif lengths == "full":
        L = torch.full((B,), T, dtype=torch.int64, device=device)
    else:
        L = None
    if requires_grad:
        for t in (f, z, o, i0):
            if t is not None:
                t.requires_grad_(True)
    return f, z, o, L, i0


def grads_of(fn, inputs, seed_grads):
    """Outputs of ``fn(*inputs)`` and the gradients of its float leaves for the given cotangents
    (zeros for a leaf the outputs do not depend on)."""
    leaves = [x for x in inputs if isinstance(x, torch.Tensor) and x.requires_grad]
    outs = fn(*inputs)
    pairs = [(o, g) for o, g in zip(outs, seed_grads) if o.requires_grad]
    grads = [None] * len(leaves)
    if pairs and leaves:
        grads = torch.autograd.grad([o for o, _ in pairs], leaves, [g for _, g in pairs], allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for x, g in zip(leaves, grads)]
    return [o.detach() for o in outs], grads


CASES = [
    pytest.param(1, 1, 1, id="B1-T1-D1"),
    pytest.param(3, 7, 5, id="B3-T7-D5"),
    pytest.param(4, 63, 17, id="B4-T63-D17"),
    pytest.param(5, 151, 20, id="B5-T151-D20"),
    pytest.param(2, 97, 67, id="B2-T97-D67"),
]


def _leaf_copy(inputs):
    return [x.detach().clone().requires_grad_(x.requires_grad) if isinstance(x, torch.Tensor) and x.is_floating_point()
            else x for x in inputs]


@pytest.mark.parametrize("B,T,D", CASES)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("gates", ["fo", "f"], ids=["with-output", "no-output"])
def test_cpu_matches_reference_float64(B, T, D, reverse, gates, poisoned):
    f, z, o, L, i0 = make_inputs(B, T, D, output=gates == "fo", requires_grad=True)
    dh = torch.randn(B, T, D, dtype=torch.float64)
    dc = torch.randn(B, D, dtype=torch.float64)
    args = (f, z, o, L, i0)
    (h, c), g = grads_of(lambda *a: sk.fo_pool(*a, reverse=reverse), args, (dh, dc))
    (hr, cr), gr = grads_of(lambda *a: fo_pool_ref(*a, reverse=reverse), _leaf_copy(args), (dh, dc))
    assert_close(h, hr, name="h")
    assert_close(c, cr, name="c_last")
    for name, a, e in zip(["forget", "z", "output", "initial"], g, gr):
        assert_close(a, e, name=f"grad {name}")
    # padded positions are exactly zero, in h and in every gradient
    for b in range(B):
        assert (h[b, int(L[b]):] == 0).all()
        assert (f.grad is None) or True
    (h2, _), g2 = grads_of(lambda *a: sk.fo_pool(*a, reverse=reverse), args, (dh, dc))
    for b in range(B):
        assert (g2[0][b, int(L[b]):] == 0).all() and (g2[1][b, int(L[b]):] == 0).all()


@pytest.mark.parametrize("chunk", [1, 3, 8, 32, 1000])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_cpu_op_any_chunk(chunk, reverse, poisoned):
    """The checkpoint interval is a free parameter of the C++ kernels: results do not depend on it."""
    B, T, D = 3, 71, 6
    f, z, o, L, i0 = make_inputs(B, T, D)
    dh, dc = torch.randn(B, T, D, dtype=torch.float64), torch.randn(B, D, dtype=torch.float64)
    h, c, ck = OP_FWD(f, z, o, L, i0, reverse, chunk)
    hr, cr = fo_pool_ref(f, z, o, L, i0, reverse)
    assert ck.shape == (B, T // chunk + 1, D)
    assert_close(h, hr, name="h")
    assert_close(c, cr, name="c_last")
    ref = OP_BWD(dh, dc, f, z, o, L, OP_FWD(f, z, o, L, i0, reverse, CHUNK)[2], reverse, CHUNK)
    got = OP_BWD(dh, dc, f, z, o, L, ck, reverse, chunk)
    for a, e in zip(got, ref):
        assert_close(a, e)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["f32", "bf16", "f16"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_cpu_low_precision(dtype, reverse, poisoned):
    B, T, D = 4, 300, 24
    f, z, o, L, i0 = make_inputs(B, T, D, dtype=dtype, requires_grad=True)
    dh = torch.randn(B, T, D).to(dtype)
    dc = torch.randn(B, D).to(dtype)
    args = (f, z, o, L, i0)
    (h, c), g = grads_of(lambda *a: sk.fo_pool(*a, reverse=reverse), args, (dh, dc))
    # reference in float64 on the same (rounded) inputs
    ref_args = [x.detach().double().requires_grad_(True) if isinstance(x, torch.Tensor) and x.is_floating_point()
                else x for x in args]
    (hr, cr), gr = grads_of(lambda *a: fo_pool_ref(*a, reverse=reverse), ref_args, (dh.double(), dc.double()))
    assert h.dtype == dtype and c.dtype == dtype
    assert_close(h, hr, dtype, name="h")
    assert_close(c, cr, dtype, name="c_last")
    # gradients accumulate over up to T steps: allow a few roundings of the largest term
    for name, a, e in zip(["forget", "z", "output", "initial"], g, gr):
        assert_close(a, e, dtype, scale=4.0, name=f"grad {name}")


@pytest.mark.parametrize("D", [1024, 1023], ids=["aligned-rows", "odd-rows"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("gates", ["fo", "f"], ids=["with-output", "no-output"])
def test_cpu_streamed_outputs_equal_plain_stores(D, reverse, gates):
    """float32 outputs of 32 MiB or more are written with streaming stores (fo_pool.cpp,
    kStreamBytes): each sequence's outputs and gradients equal, bit for bit, those of the same
    sequence alone (16 MiB: plain stores), which the other tests hold to the reference."""
    B, T = 2, 4200
    assert B * T * D * 4 >= 32 << 20 > T * D * 4
    f, z, o, L, i0 = make_inputs(B, T, D, dtype=torch.float32, output=gates == "fo", requires_grad=True)
    dh, dc = torch.randn(B, T, D), torch.randn(B, D)
    args = (f, z, o, L, i0)
    (h, c), g = grads_of(lambda *a: sk.fo_pool(*a, reverse=reverse), args, (dh, dc))
    for b in range(B):
        one = [x.detach()[b:b + 1].clone().requires_grad_(x.requires_grad) if isinstance(x, torch.Tensor)
               and x.is_floating_point() else (x[b:b + 1] if isinstance(x, torch.Tensor) else x) for x in args]
        (h1, c1), g1 = grads_of(lambda *a: sk.fo_pool(*a, reverse=reverse), one, (dh[b:b + 1], dc[b:b + 1]))
        assert torch.equal(h[b:b + 1], h1) and torch.equal(c[b:b + 1], c1)
        for name, a, e in zip(["forget", "z", "output", "initial"], g, g1):
            assert torch.equal(a[b:b + 1], e), f"grad {name}, sequence {b}"


def test_long_sequence_forward_float64():
    B, T, D = 2, 1134, 3
    f, z, o, L, i0 = make_inputs(B, T, D)
    for reverse in (False, True):
        h, c = sk.fo_pool(f, z, o, L, i0, reverse)
        hr, cr = fo_pool_ref(f, z, o, L, i0, reverse)
        assert_close(h, hr, name="h")
        assert_close(c, cr, name="c_last")


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("gates", ["fo", "f"])
def test_gradcheck(reverse, gates):
    f, z, o, L, i0 = make_inputs(3, 11, 4, output=gates == "fo", requires_grad=True)
    L = torch.tensor([11, 4, 1])
    if gates == "fo":
        fn = lambda f_, z_, o_, i_: sk.fo_pool(f_, z_, o_, L, i_, reverse)  # noqa: E731
        inputs = (f, z, o, i0)
    else:
        fn = lambda f_, z_, i_: sk.fo_pool(f_, z_, None, L, i_, reverse)  # noqa: E731
        inputs = (f, z, i0)
    assert torch.autograd.gradcheck(fn, inputs)


def test_gradcheck_no_lengths_no_initial():
    f, z, o, _, _ = make_inputs(2, 9, 3, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: sk.fo_pool(a, b, c), (f, z, o))


@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
@pytest.mark.parametrize("variant", ["full", "minimal"])
def test_opcheck(requires_grad, variant):
    if variant == "full":
        f, z, o, L, i0 = make_inputs(3, 13, 5, dtype=torch.float32, requires_grad=requires_grad)
    else:
        f, z, o, L, i0 = make_inputs(2, 5, 3, dtype=torch.float32, output=False, initial=False, lengths=None,
                                     requires_grad=requires_grad)
    for reverse in (False, True):
        torch.library.opcheck(OP_FWD, (f, z, o, L, i0, reverse, CHUNK))
    h, c, ck = OP_FWD(f.detach(), z.detach(), o.detach() if o is not None else None, L,
                      i0.detach() if i0 is not None else None, False, CHUNK)
    torch.library.opcheck(OP_BWD, (torch.randn_like(h), torch.randn_like(c), f.detach(), z.detach(),
                                   o.detach() if o is not None else None, L, ck, False, CHUNK))


def test_torch_compile_fullgraph():
    f, z, o, L, i0 = make_inputs(3, 40, 8, dtype=torch.float32, requires_grad=True)

    def layer(f, z, o, L, i0):
        h, c = sk.fo_pool(torch.sigmoid(f), torch.tanh(z), o, L, i0, reverse=True)
        return (h * 2).sum() + c.square().sum()

    compiled = torch.compile(layer, fullgraph=True)
    loss = compiled(f, z, o, L, i0)
    loss.backward()
    grads = [t.grad.clone() for t in (f, z, o, i0)]
    for t in (f, z, o, i0):
        t.grad = None
    ref = layer(f, z, o, L, i0)
    ref.backward()
    assert_close(loss, ref, name="loss")
    for a, t in zip(grads, (f, z, o, i0)):
        assert_close(a, t.grad, name="grad")


def test_noncontiguous_inputs():
    B, T, D = 3, 29, 7
    big = torch.rand(B, T, 3 * D, dtype=torch.float64)
    f = big[:, :, ::3]  # strided channels
    z = torch.randn(T, B, D, dtype=torch.float64).transpose(0, 1)  # batch-second storage
    o = torch.rand(B, 2 * T, D, dtype=torch.float64)[:, ::2]
    i0 = torch.randn(D, B, dtype=torch.float64).t()
    L = torch.tensor([29, 1, 17], dtype=torch.int32)
    assert not (f.is_contiguous() or z.is_contiguous() or o.is_contiguous() or i0.is_contiguous())
    for reverse in (False, True):
        h, c = sk.fo_pool(f, z, o, L, i0, reverse)
        hr, cr = fo_pool_ref(f.contiguous(), z.contiguous(), o.contiguous(), L, i0.contiguous(), reverse)
        assert_close(h, hr)
        assert_close(c, cr)
    # gradients arriving non-contiguous (an expanded ones tensor from .sum())
    fr = f.clone().requires_grad_(True)
    h, c = sk.fo_pool(fr, z, o, L, i0)
    h.sum().backward()
    fr2 = f.clone().requires_grad_(True)
    fo_pool_ref(fr2, z, o, L, i0)[0].sum().backward()
    assert_close(fr.grad, fr2.grad)


def test_lengths_forms():
    f, z, o, _, i0 = make_inputs(3, 6, 2)
    h1, c1 = sk.fo_pool(f, z, o, [6, 1, 2], i0)
    h2, c2 = sk.fo_pool(f, z, o, torch.tensor([6, 1, 2], dtype=torch.int32), i0)
    assert torch.equal(h1, h2) and torch.equal(c1, c2)
    assert (h1[1, 1:] == 0).all() and (h1[2, 2:] == 0).all()
    h3, c3 = sk.fo_pool(f, z, o, None, i0)
    h4, c4 = sk.fo_pool(f, z, o, [6, 6, 6], i0)
    assert torch.equal(h3, h4) and torch.equal(c3, c4)


def test_empty_batch_and_channels():
    for B, D in [(0, 4), (2, 0)]:
        f, z, o, _, i0 = make_inputs(B, 5, D)
        h, c = sk.fo_pool(f, z, o, None, i0)
        assert h.shape == (B, 5, D) and c.shape == (B, D)


@given(
    B=st.integers(1, 4),
    T=st.integers(1, 70),
    D=st.integers(1, 9),
    reverse=st.booleans(),
    with_output=st.booleans(),
    with_initial=st.booleans(),
    data=st.data(),
)
def test_property_matches_reference(B, T, D, reverse, with_output, with_initial, data):
    lengths = data.draw(st.lists(st.integers(1, T), min_size=B, max_size=B))
    f, z, o, _, i0 = make_inputs(B, T, D, output=with_output, initial=with_initial, requires_grad=True)
    L = torch.tensor(lengths)
    dh, dc = torch.randn(B, T, D, dtype=torch.float64), torch.randn(B, D, dtype=torch.float64)
    args = (f, z, o, L, i0)
    (h, c), g = grads_of(lambda *a: sk.fo_pool(*a, reverse=reverse), args, (dh, dc))
    (hr, cr), gr = grads_of(lambda *a: fo_pool_ref(*a, reverse=reverse), _leaf_copy(args), (dh, dc))
    assert_close(h, hr)
    assert_close(c, cr)
    for a, e in zip(g, gr):
        assert_close(a, e)


# ---- bad input: one test per rule --------------------------------------------------------

def _ok():
    f, z, o, L, i0 = make_inputs(2, 5, 3, dtype=torch.float32)
    return dict(forget=f, z=z, output=o, lengths=L, initial=i0)


@pytest.mark.parametrize(
    "change,exc,pattern",
    [
        (lambda a: a.update(forget=a["forget"].numpy()), TypeError, r"`forget` must be a torch.Tensor"),
        (lambda a: a.update(forget=a["forget"][0]), ValueError, r"`forget` must have 3 dimensions"),
        (lambda a: a.update(forget=a["forget"].int(), z=a["z"].int()), TypeError, r"`forget` must have dtype"),
        (lambda a: a.update(z=a["z"][:, :4]), ValueError, r"`z` must have shape \(2, 5, 3\)"),
        (lambda a: a.update(z=a["z"].double()), TypeError, r"`z` has dtype torch.float64 but `forget`"),
        (lambda a: a.update(output=a["output"][:1]), ValueError, r"`output` must have shape"),
        (lambda a: a.update(initial=a["initial"][:, :2]), ValueError, r"`initial` must have shape \(2, 3\)"),
        (lambda a: a.update(initial=a["initial"].half()), TypeError, r"`initial` has dtype"),
        (lambda a: a.update(lengths=torch.tensor([5, 6])), ValueError, r"`lengths\[1\]` = 6 is out of range.*\[1, 5\]"),
        (lambda a: a.update(lengths=torch.tensor([-1, 2])), ValueError, r"`lengths\[0\]` = -1 is out of range"),
        (lambda a: a.update(lengths=torch.tensor([5])), ValueError, r"`lengths` must have shape \(2,\)"),
        (lambda a: a.update(lengths=torch.tensor([5.0, 2.0])), TypeError, r"`lengths` must have dtype int32 or int64"),
        (lambda a: a.update(lengths="5,2"), TypeError, r"`lengths` must be a torch.Tensor or a list of ints"),
        (lambda a: a.update(z=a["z"].to("meta")), ValueError, r"`z` is on meta but `forget` is on cpu"),
        (lambda a: a.update(reverse=1), TypeError, r"`reverse` must be a bool"),
    ],
    ids=["not-tensor", "ndim", "int-dtype", "z-shape", "z-dtype", "output-shape", "initial-shape",
         "initial-dtype", "length-too-long", "length-negative", "lengths-shape", "lengths-float",
         "lengths-string", "device-mismatch", "reverse-type"],
)
def test_bad_input(change, exc, pattern):
    args = _ok()
    change(args)
    with pytest.raises(exc, match=pattern):
        sk.fo_pool(**args)


def test_op_level_checks_for_direct_callers():
    f, z, o, L, i0 = make_inputs(2, 5, 3, dtype=torch.float32)
    with pytest.raises(RuntimeError, match=r"`lengths\[0\]` = 9 is out of range"):
        OP_FWD(f, z, o, torch.tensor([9, 1]), i0, False, CHUNK)
    with pytest.raises(RuntimeError, match=r"`z` must have shape"):
        OP_FWD(f, z[:, :2], o, L, i0, False, CHUNK)
    with pytest.raises(RuntimeError, match=r"`checkpoints` must have shape"):
        OP_BWD(f, f[:, 0], f, z, o, L, torch.zeros(2, 2, 3), False, CHUNK)


# ---- Triton kernels on CPU tensors (interpreter) ---------------------------------------------

# The interpreter runs tl.associative_scan element by element in Python, so tiles stay small
# and each feature (time split, several channel blocks with a masked tail, reverse, no output
# gate, length 1/T) is covered by a few cases rather than the full product.
def _tc(B, T, D, segments, chunk, block_d, reverse, gates):
    rid = "rev" if reverse else "fwd"
    return pytest.param(B, T, D, segments, chunk, block_d, reverse, gates,
                        id=f"B{B}-T{T}-D{D}-seg{segments}-chunk{chunk}-bd{block_d or 'auto'}-{rid}-{gates}")


TRITON_CASES = [
    _tc(1, 1, 1, 1, 4, None, False, "fo"),
    _tc(1, 1, 1, 1, 4, None, True, "f"),
    *[_tc(3, 37, 5, 1, 8, None, r, g) for r in (False, True) for g in ("fo", "f")],
    _tc(3, 71, 20, 3, 8, 16, False, "fo"),
    _tc(3, 71, 20, 3, 8, 16, True, "f"),
    _tc(2, 83, 37, 2, 16, 16, True, "fo"),
    _tc(2, 83, 37, 2, 16, 16, False, "f"),
    _tc(1, 101, 9, 5, 8, None, False, "fo"),
    _tc(1, 101, 9, 5, 8, None, True, "fo"),
]


@triton_interpreted
@pytest.mark.triton
@pytest.mark.parametrize("B,T,D,segments,chunk,block_d,reverse,gates", TRITON_CASES)
def test_triton_matches_reference(B, T, D, segments, chunk, block_d, reverse, gates, poisoned):
    from sublocal_kernels.ops.fo_pool.triton import fo_pool_bwd_triton, fo_pool_fwd_triton

    f, z, o, L, i0 = make_inputs(B, T, D, output=gates == "fo", requires_grad=True)
    dh, dc = torch.randn(B, T, D, dtype=torch.float64), torch.randn(B, D, dtype=torch.float64)
    (hr, cr), gr = grads_of(lambda *a: fo_pool_ref(*a, reverse=reverse), (f, z, o, L, i0), (dh, dc))
    d = lambda t: t.detach() if t is not None else None  # noqa: E731
    h, c, ck = fo_pool_fwd_triton(d(f), d(z), d(o), L, d(i0), reverse, chunk, segments=segments, block_d=block_d)
    assert_close(h, hr, name="h")
    assert_close(c, cr, name="c_last")
    gf, gz, go, gi = fo_pool_bwd_triton(dh, dc, d(f), d(z), d(o), L, ck, reverse, chunk, segments=segments,
                                        block_d=block_d)
    assert_close(gf, gr[0], name="grad forget")
    assert_close(gz, gr[1], name="grad z")
    if o is not None:
        assert_close(go, gr[2], name="grad output")
    assert_close(gi, gr[-1], name="grad initial")


@triton_interpreted
@pytest.mark.triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_triton_low_precision_and_noncontiguous(dtype):
    from sublocal_kernels.ops.fo_pool.triton import fo_pool_bwd_triton, fo_pool_fwd_triton

    B, T, D = 2, 45, 10
    f = torch.rand(B, T, 2 * D).to(dtype)[:, :, ::2]
    z = torch.randn(B, T, D).to(dtype)
    o = torch.rand(B, T, D).to(dtype)
    L = torch.tensor([45, 13])
    h, c, ck = fo_pool_fwd_triton(f, z, o, L, None, False, 16, segments=2, block_d=16)
    hr, cr = fo_pool_ref(f.double(), z.double(), o.double(), L)
    assert ck.dtype == torch.float32  # state in float32 whatever the input dtype
    assert_close(h, hr, dtype)
    assert_close(c, cr, dtype)
    dh, dc = torch.randn(B, T, D).to(dtype), torch.randn(B, D).to(dtype)
    ref = OP_BWD(dh.double(), dc.double(), f.double(), z.double(), o.double(), L,
                 OP_FWD(f.double(), z.double(), o.double(), L, None, False, 16)[2], False, 16)
    got = fo_pool_bwd_triton(dh, dc, f, z, o, L, ck, False, 16, segments=2, block_d=16)
    for a, e in zip(got, ref):
        assert_close(a, e, dtype, scale=4.0)


# ---- CUDA (skipped where no GPU is present) --------------------------------------------------

def _cuda_backends():
    from sublocal_kernels import _library

    backends = ["triton"]
    if _library.has_kernel("_fo_pool_fwd_cuda", "CUDA"):
        backends.append("cuda")
    return backends


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("B,T,D", CASES + [pytest.param(1, 5000, 64, id="B1-T5000-D64"),
                                           pytest.param(64, 1000, 512, id="qrnn")])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=["f32", "bf16", "f64"])
def test_cuda_matches_cpu(backend, B, T, D, reverse, dtype, monkeypatch, poisoned):
    if backend not in _cuda_backends():
        pytest.skip("the CUDA C++ fo-pool kernel is not in this build")
    if backend == "cuda" and dtype == torch.float64:
        pytest.skip("the CUDA C++ kernel covers float32/bfloat16/float16")
    monkeypatch.setenv("SUBLOCAL_FO_POOL_BACKEND", backend)
    f, z, o, L, i0 = make_inputs(B, T, D, dtype=dtype, requires_grad=True)
    dh, dc = torch.randn(B, T, D).to(dtype), torch.randn(B, D).to(dtype)
    args = (f, z, o, L, i0)
    (h, c), g = grads_of(lambda *a: sk.fo_pool(*a, reverse=reverse), [x.cuda() if x is not None else None for x in _leaf_copy(args)],
                         (dh.cuda(), dc.cuda()))
    ref_args = [x.detach().double().requires_grad_(True) if isinstance(x, torch.Tensor) and x.is_floating_point()
                else x for x in args]
    (hr, cr), gr = grads_of(lambda *a: sk.fo_pool(*a, reverse=reverse), ref_args, (dh.double(), dc.double()))
    assert_close(h, hr, dtype, name="h")
    assert_close(c, cr, dtype, name="c_last")
    for a, e in zip(g, gr):
        assert_close(a, e, dtype, scale=8.0, name="grad")
