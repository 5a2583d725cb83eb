"""Subnormal floats inside the CPU kernels (csrc/cpu/fp_mode.h).

Every CPU kernel runs with flush-to-zero and denormals-are-zero on each thread that computes
and restores the previous mode afterwards. These tests check, against the exact-IEEE references
computed in float32: gradients that decay into subnormals are exactly zero in ours where the
reference's are subnormal, and equal where they are normal; our results contain no subnormals;
normal-range results still match within the tolerance table; and the caller's floating-point
mode (on its own thread and on the intra-op pool's threads) is what it was before each call,
whichever mode the caller had set, also when the kernel raises.
"""

from __future__ import annotations

import platform

import pytest
import torch

import sublocal_kernels as sk
from sublocal_kernels.ops import registry
from tests.helpers import assert_close

TINY = torch.finfo(torch.float32).tiny  # 1.1755e-38, the smallest normal float32

pytestmark = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64", "aarch64", "arm64"),
                                reason="flush-to-zero is a documented no-op on this architecture")


def subnormal(t: torch.Tensor) -> torch.Tensor:
    return (t != 0) & (t.abs() < TINY)


def caller_flushes() -> tuple[bool, bool]:
    """(this thread flushes, some intra-op pool thread flushes): a subnormal product computed
    once on the calling thread and once by a large elementwise op split over the threads."""
    one = (torch.tensor(1e-30) * torch.tensor(1e-10)).item() == 0.0
    many = torch.full((1 << 20,), 1e-30) * torch.full((1 << 20,), 1e-10)
    return one, bool((many == 0).any())


def leaf_grads(outputs, leaves, grads):
    return torch.autograd.grad(outputs, leaves, grads, allow_unused=True)


# Every op run forward and backward once on small float32 inputs (its `float32_case` in
# sublocal_kernels/ops/registry.py; ref=True: the same through the op's reference, exact IEEE on
# the calling thread).
OPS = {spec.name: spec.float32_case for spec in registry.OPS}


@pytest.mark.parametrize("caller_flush", [False, True], ids=["caller-ieee", "caller-flush"])
@pytest.mark.parametrize("op", list(OPS))
def test_caller_mode_unchanged(op, caller_flush):
    threads = torch.get_num_threads()
    # One thread and back: the intra-op pool may start its threads inside the kernel's next
    # call, and a new thread inherits the mode of the thread that starts it.
    torch.set_num_threads(1)
    caller_flushes()
    torch.set_num_threads(threads)
    old = torch.set_flush_denormal(caller_flush)
    assert old, "this CPU has no flush-to-zero control"
    try:
        assert caller_flushes()[0] == caller_flush
        for _ in range(2):  # the second call finds the pool threads already used by a kernel
            OPS[op]()
            one, many = caller_flushes()
            assert one == caller_flush, f"{op} changed the calling thread's flush-to-zero mode"
            assert many == caller_flush, f"{op} left an intra-op thread's flush-to-zero mode changed"
    finally:
        torch.set_flush_denormal(False)


def test_caller_mode_unchanged_when_the_kernel_raises():
    f = torch.rand(2, 5, 3)
    with pytest.raises(RuntimeError, match="lengths"):
        torch.ops.sublocal.fo_pool_fwd(f, f, None, torch.tensor([5, 9]), None, False, 64)
    assert caller_flushes() == (False, False)


# ---- gradients that decay into subnormals --------------------------------------------------

def test_fo_pool_gradient_flushed_where_the_reference_is_subnormal():
    # The loss reads only c_last: the gradient reaching step s is the product of the later
    # forget values, about 0.1 per step, so it crosses 1.2e-38 about 38 steps before the end.
    B, T, D = 6, 80, 67
    g = torch.Generator().manual_seed(3)
    f = (0.05 + 0.15 * torch.rand(B, T, D, generator=g)).requires_grad_()
    z = torch.randn(B, T, D, generator=g).requires_grad_()
    lengths = torch.tensor([80, 75, 60, 80, 50, 79])
    ours = leaf_grads(sk.fo_pool(f, z, lengths=lengths)[1].sum(), [f, z], None)
    ref = leaf_grads(sk.fo_pool_ref(f, z, lengths=lengths)[1].sum(), [f, z], None)
    for name, a, r in zip(("forget", "z"), ours, ref):
        assert subnormal(r).sum() > 100, f"{name}: the case no longer produces subnormals in the reference"
        assert not subnormal(a).any(), f"{name}: our gradient holds subnormals"
        assert (a[subnormal(r)] == 0).all(), f"{name}: nonzero where the reference is subnormal"
        # Where the gradient reaching c (q, from the reference: dz = q (1 - f)) is normal with a
        # margin, ours equals the reference; df = q (c - z) is compared to q's scale, as c - z
        # can cancel. (Where q itself is subnormal, q (c - z) can still be a normal number in
        # the reference; ours reads q as zero there: denormals-are-zero.)
        q = ref[1].detach() / (1 - f.detach())
        chain = (q >= 64 * TINY) & (r.abs() >= 2 * TINY)
        assert chain.sum() > 1000
        err = (a - r).abs()[chain]
        assert (err <= 1e-5 * (r.abs()[chain] + 8 * q[chain])).all(), f"{name}: normal values differ"
        assert (a[r == 0] == 0).all()


def test_lstm_gradient_flushed_where_the_reference_is_subnormal():
    # An R-LSTM-like case: one direction, the loss reads only h_n, forget gates near 0.02 (bias -4) and small
    # recurrent weights, so the gradient reaching x decays by orders of magnitude per step.
    B, T, C, H = 5, 60, 7, 16
    torch.manual_seed(5)
    m = torch.nn.LSTM(C, H, batch_first=True)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.startswith("weight_hh"):
                p.mul_(0.5)
            if name.startswith("bias_ih"):
                p[H:2 * H] = -4.0
    weights = list(m.parameters())
    x = torch.randn(B, T, C, requires_grad=True)
    lengths = torch.tensor([60, 55, 41, 60, 33])
    ours = leaf_grads(sk.lstm(x, lengths, weights, bidirectional=False)[1].sum(), [x, *weights], None)
    ref = leaf_grads(sk.lstm_ref(x, lengths, weights, bidirectional=False)[1].sum(), [x, *weights], None)
    assert_flushed_like_reference(ours, ref)


def test_mlstm_gradient_flushed_where_the_reference_is_subnormal():
    # The same case for the multiplicative cell: its recurrent path W_hh (W_mx x * W_mh h) decays too.
    B, T, C, H = 5, 60, 7, 16
    torch.manual_seed(5)
    m = sk.nn.LSTM(C, H, bidirectional=False, cell="mlstm")
    with torch.no_grad():
        m.weight_hh_l0.mul_(0.5)
        m.bias_ih_l0[H:2 * H] = -4.0
    weights = m.layer_weights(0)
    x = torch.randn(B, T, C, requires_grad=True)
    lengths = torch.tensor([60, 55, 41, 60, 33])
    run = lambda f: f(x, lengths, weights, bidirectional=False, cell="mlstm")[1].sum()  # noqa: E731
    ours = leaf_grads(run(sk.lstm), [x, *weights], None)
    ref = leaf_grads(run(sk.lstm_ref), [x, *weights], None)
    assert_flushed_like_reference(ours, ref)


def assert_flushed_like_reference(ours, ref):
    """ours/ref: the gradients of (x, *weights) of a loss on h_n, from the kernel and the reference."""
    gx, rx = ours[0], ref[0]
    for a in ours:
        assert not subnormal(a).any(), "our gradient holds subnormals"
    # x's gradient mixes the 4H gate gradients of a step (dx = dgates W_ih), so near the
    # boundary the reference's sum of subnormal terms and ours (those terms read as zero) may
    # differ. Steps whose reference gradient is three decades below the boundary (this case
    # decays about tenfold per step) were computed from subnormal terms only: ours is zero there.
    row = rx.abs().amax(-1)
    deep = (row > 0) & (row < TINY / 1000)
    assert deep.sum() >= 5, "the case no longer produces subnormals in the reference"
    assert (gx[deep] == 0).all(), "nonzero where the reference is deep in the subnormal range"
    # Normal values match. Near the boundary the reference keeps subnormal terms that ours
    # drops (up to 4H terms below 1.2e-38 each), so compare from 1e-33 up, relatively.
    big = rx.abs() >= 1e-33
    assert big.sum() > 100
    torch.testing.assert_close(gx[big], rx[big], rtol=1e-3, atol=0)
    for a, r in zip(ours[1:], ref[1:]):  # weight gradients are dominated by the last steps
        assert_close(a, r, name="weight grad")


def test_subnormal_inputs_read_as_zero_in_conv_and_attention():
    # Denormals-are-zero: subnormal inputs contribute nothing; the references (exact IEEE) give
    # subnormal results. Batch 8 spreads the work over every intra-op thread.
    x = torch.full((8, 40, 5), 1e-40)
    ws = [torch.full((4, 5, k), 0.5) for k in (1, 3)]
    y_ref = sk.multiwidth_conv1d_ref(x, None, ws, activation=None)
    y = sk.multiwidth_conv1d(x, None, ws, activation=None)
    assert subnormal(y_ref).all()
    assert (y == 0).all()
    h = torch.full((8, 30, 6), 3e-39)
    w, v = torch.randn(6, 5), torch.randn(5)
    ctx_ref, _ = sk.attention_pool_ref(h, torch.full((8,), 30), w, v)
    ctx, alpha = sk.attention_pool(h, None, w, v)
    assert subnormal(ctx_ref).all()
    assert (ctx == 0).all()
    assert_close(alpha, torch.full((8, 30), 1 / 30), name="alpha")


@pytest.mark.parametrize("op", list(OPS))
def test_normal_range_float32_still_matches_reference(op):
    # One float32 case per op, outputs and gradients, against the float32 reference (the op
    # test files compare float64 and float32 in depth; this checks that the flush changes
    # nothing in the normal range).
    torch.manual_seed(11)
    ours = OPS[op]()
    torch.manual_seed(11)
    want = OPS[op](ref=True)
    assert len(ours) == len(want)
    for a, r in zip(ours, want):
        assert_close(a, r, name=op)
