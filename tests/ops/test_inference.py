"""The inference paths: when no gradient is needed, every op keeps nothing for a backward.

Each public op calls its ``sublocal::<op>_infer`` variant under ``torch.no_grad()``,
``torch.inference_mode()`` or when no input requires a gradient; its outputs must equal the
training forward's bit for bit on the CPU, and the memory the call allocates must drop. The
recurrent ops' own inference tests (both cells; the mLSTM's inference kernel is equal up to
rounding, not bit for bit) are in test_recurrent.py, which uses the helpers here.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

import sublocal_kernels as sk
from sublocal_kernels.ops.fo_pool import CHUNK
from tests.helpers import assert_close, random_lengths

DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]
MODES = ["no_grad", "inference_mode", "no_requires_grad"]


def _lstm_params(C, H, bidirectional, bias, dtype):
    layer = torch.nn.LSTM(C, H, bias=bias, batch_first=True, bidirectional=bidirectional).to(dtype)
    return list(layer.parameters())


def _infer(mode, fn, *tensors):
    """fn(*tensors) on the inference path selected by ``mode``."""
    if mode == "no_requires_grad":
        return fn(*[t.detach() if isinstance(t, torch.Tensor) else t for t in tensors])
    ctx = torch.no_grad() if mode == "no_grad" else torch.inference_mode()
    with ctx:
        return fn(*tensors)


def _assert_identical(got, want, names):
    for a, e, name in zip(got, want, names):
        assert a.grad_fn is None, f"{name}: the inference path recorded a graph"
        assert torch.equal(a, e.detach()), f"{name}: differs by {(a - e.detach()).abs().max().item()}"


class _OpLog(TorchDispatchMode):
    """Records the name of every op dispatched while active."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func.overloadpacket).replace("sublocal.", "sublocal::"))
        return func(*args, **(kwargs or {}))


# ---- outputs equal the training path's --------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_attention_pool_matches_training(bias, mode, dtype):
    B, T, D, A = 7, 600, 6, 7  # T > 256: sequences span several work items
    h = torch.randn(B, T, D, dtype=dtype, requires_grad=True)
    w_a, v_a = torch.randn(D, A, dtype=dtype), torch.randn(A, dtype=dtype)
    b_a = torch.randn(A, dtype=dtype) if bias else None
    L = random_lengths(B, T)
    want = sk.attention_pool(h, L, w_a, v_a, b_a)
    assert want[0].grad_fn is not None
    got = _infer(mode, lambda h: sk.attention_pool(h, L, w_a, v_a, b_a), h)
    _assert_identical(got, want, ["context", "alpha"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("gated", [False, True], ids=["f", "fo"])
def test_fo_pool_matches_training(gated, reverse, mode, dtype):
    B, T, D = 5, 3 * CHUNK + 7, 19
    f = torch.rand(B, T, D, dtype=dtype, requires_grad=True)
    z = torch.randn(B, T, D, dtype=dtype)
    o = torch.rand(B, T, D, dtype=dtype) if gated else None
    init = torch.randn(B, D, dtype=dtype)
    L = random_lengths(B, T)
    want = sk.fo_pool(f, z, o, lengths=L, initial=init, reverse=reverse)
    assert want[0].grad_fn is not None
    got = _infer(mode, lambda f: sk.fo_pool(f, z, o, lengths=L, initial=init, reverse=reverse), f)
    _assert_identical(got, want, ["h", "c_last"])


# ---- which kernel runs ------------------------------------------------------------------------

def _calls(fn):
    with _OpLog() as log:
        fn()
    return [n for n in log.names if n.startswith("sublocal::")]


@pytest.mark.parametrize("mode", ["grad", *MODES])
def test_dispatch(mode):
    B, T, C, H = 3, 9, 4, 5
    params = _lstm_params(C, H, True, True, torch.float32)
    x = torch.randn(B, T, C, requires_grad=True)
    L = torch.tensor([9, 2, 5])
    w_a, v_a = torch.randn(2 * H, 3), torch.randn(3)
    conv_w = [torch.randn(4, C, 3), torch.randn(2, C, 5)]

    def model(x, *params):
        out, _, _ = sk.lstm(x, L, list(params))
        ctx, _ = sk.attention_pool(out, L, w_a, v_a)
        h, _ = sk.fo_pool(torch.sigmoid(out), out, lengths=L)
        y = sk.multiwidth_conv1d(x, L, conv_w)
        return ctx.sum() + h.sum() + y.sum()

    if mode == "grad":
        names = _calls(lambda: model(x, *params))
        assert names == ["sublocal::lstm_fwd", "sublocal::attention_pool_fwd", "sublocal::fo_pool_fwd",
                         "sublocal::multiwidth_conv1d_fwd"]
    else:
        names = _calls(lambda: _infer(mode, model, x, *params))
        assert names == ["sublocal::lstm_infer", "sublocal::attention_pool_infer", "sublocal::fo_pool_infer",
                         "sublocal::multiwidth_conv1d_fwd"]


def test_multiwidth_conv1d_keeps_nothing():
    """The conv forward returns only its output (its backward recomputes from x and y), so under
    no_grad nothing of it outlives the call but y; it needs no inference variant."""
    x = torch.randn(2, 11, 3)
    w = [torch.randn(4, 3, 3, requires_grad=True)]
    outs = []

    class Outputs(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            r = func(*args, **(kwargs or {}))
            if "multiwidth" in str(func):
                outs.append(r)
            return r

    with torch.no_grad(), Outputs():
        y = sk.multiwidth_conv1d(x, torch.tensor([11, 4]), w)
    assert len(outs) == 1 and isinstance(outs[0], torch.Tensor) and outs[0].shape == y.shape


# ---- memory -----------------------------------------------------------------------------------

@contextlib.contextmanager
def _one_thread():
    # Every allocation on the calling thread, where the profiler sees it.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _allocations(fn):
    """Sizes (bytes, in time order; negative = freed) of the CPU allocations made by ``fn()``.

    The profiler records every allocation through c10's CPU allocator, inside the C++ kernels
    too. Blocks of the CPU output cache of 4 MiB or more bypass that allocator, so the shapes
    below keep every tensor under 4 MiB.
    """
    sk.empty_cpu_cache()
    with _one_thread(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
        del result
    events = []

    def walk(node):
        extra = node.extra_fields
        if type(extra).__name__ == "_ExtraFields_Allocation":
            events.append((node.start_time_ns, extra.alloc_size))
        for child in node.children:
            walk(child)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root)
    return [size for _, size in sorted(events)]


def _peak(sizes):
    cur = peak = 0
    for s in sizes:
        cur += s
        peak = max(peak, cur)
    return peak


def test_attention_pool_memory():
    B, T, D, A = 8, 300, 64, 100
    h = torch.randn(B, T, D)
    w_a, v_a, b_a = torch.randn(D, A), torch.randn(A), torch.randn(A)
    L = torch.tensor([300, 1, 150, 275, 37, 200, 99, 250])
    act_bytes = int(L.sum()) * A * 4
    h_train = h.clone().requires_grad_()
    train = _allocations(lambda: sk.attention_pool(h_train, L, w_a, v_a, b_a))
    infer = _allocations(lambda: _infer("no_grad", lambda h: sk.attention_pool(h, L, w_a, v_a, b_a), h))
    assert act_bytes in train
    assert max(infer) < act_bytes / 4, (max(infer), act_bytes)
    assert _peak(infer) < 0.5 * _peak(train), (_peak(infer), _peak(train))


def test_fo_pool_memory():
    B, T, D = 4, 300, 32
    f, z = torch.rand(B, T, D), torch.randn(B, T, D)
    L = torch.tensor([300, 1, 150, 275])
    ckpt_bytes = B * (T // CHUNK + 1) * D * 4
    f_train = f.clone().requires_grad_()
    train = _allocations(lambda: sk.fo_pool(f_train, z, lengths=L))
    infer = _allocations(lambda: _infer("no_grad", lambda f: sk.fo_pool(f, z, lengths=L), f))
    assert ckpt_bytes in train
    assert ckpt_bytes not in infer
    assert sum(s for s in infer if s > 0) <= sum(s for s in train if s > 0) - ckpt_bytes


# ---- the new ops' contracts -------------------------------------------------------------------

def _lstm_infer_args(dtype=torch.float64):
    params = _lstm_params(4, 5, True, True, dtype)
    return (torch.randn(3, 8, 4, dtype=dtype), torch.tensor([8, 1, 5]), [p.detach() for p in params],
            torch.randn(2, 3, 5, dtype=dtype), None, True)


def test_opcheck():
    torch.library.opcheck(torch.ops.sublocal.lstm_infer.default, _lstm_infer_args())
    torch.library.opcheck(torch.ops.sublocal.attention_pool_infer.default,
                          (torch.randn(3, 8, 6), torch.tensor([8, 1, 5]), torch.randn(6, 4), torch.randn(4),
                           torch.randn(4)))
    torch.library.opcheck(torch.ops.sublocal.fo_pool_infer.default,
                          (torch.rand(3, 8, 6), torch.randn(3, 8, 6), None, torch.tensor([8, 1, 5]),
                           torch.randn(3, 6), True, CHUNK))


def test_torch_compile_fullgraph():
    B, T, C, H = 3, 20, 6, 8
    params = _lstm_params(C, H, True, True, torch.float32)
    x = torch.randn(B, T, C)
    L = torch.tensor([20, 4, 11])
    w_a, v_a = torch.randn(2 * H, 5), torch.randn(5)

    def model(x, L, params):
        out, h_n, c_n = sk.lstm(torch.tanh(x), L, params)
        ctx, alpha = sk.attention_pool(out, L, w_a, v_a)
        h, c_last = sk.fo_pool(torch.sigmoid(out), out, lengths=L)
        return ctx.sum() + alpha.square().sum() + h.sum() + c_last.sum() + h_n.sum() + c_n.sum()

    graphs = []

    def backend(gm, example_inputs):
        graphs.append({str(n.target).removesuffix(".default") for n in gm.graph.nodes if n.op == "call_function"})
        return torch._inductor.compile(gm, example_inputs)

    compiled = torch.compile(model, fullgraph=True, backend=backend)
    with torch.no_grad():
        got = compiled(x, L, params)
        want = model(x, L, params)
    assert_close(got, want, name="loss")
    assert {"sublocal.lstm_infer", "sublocal.attention_pool_infer", "sublocal.fo_pool_infer"} <= graphs[-1]
    assert "sublocal.lstm_fwd" not in graphs[-1]
    # The same compiled function still trains where a gradient is needed (a guard recompiles).
    xg = x.clone().requires_grad_()
    loss = compiled(xg, L, params)
    assert "sublocal.lstm_fwd" in graphs[-1]
    (g,) = torch.autograd.grad(loss, [xg])
    (g_want,) = torch.autograd.grad(model(xg, L, params), [xg])
    assert_close(g, g_want, name="grad")


# ---- CUDA (skipped where no GPU is present) ---------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_cuda_infer_matches_training(dtype):
    B, T, C, H = 16, 200, 20, 64
    params = [p.detach().to("cuda", dtype) for p in _lstm_params(C, H, True, True, torch.float32)]
    x = torch.randn(B, T, C, device="cuda").to(dtype)
    L = random_lengths(B, T).cuda()
    want = sk.lstm(x.requires_grad_(), L, params)
    with torch.inference_mode():
        got = sk.lstm(x, L, params)
        pooled = sk.attention_pool(got[0], L, torch.randn(2 * H, 8, device="cuda").to(dtype),
                                   torch.randn(8, device="cuda").to(dtype))
    for a, e in zip(got, want):
        assert_close(a, e, dtype, scale=4.0)
    assert pooled[0].shape == (B, 2 * H)
