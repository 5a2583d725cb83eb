"""The conventions every op shares: autograd (ops/_common.py) and the `lengths` contract."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import sublocal_kernels as sk
from sublocal_kernels.ops import registry

B, T = 3, 5
LENGTHS = torch.tensor([5, 2, 3])


class _Record(TorchDispatchMode):
    """Every op that runs, with the shapes of the tensors it returns."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        flat = out if isinstance(out, (tuple, list)) else [out]
        self.calls.append((str(func), [tuple(t.shape) for t in flat if isinstance(t, torch.Tensor)], args))
        return out

    def zero_fills(self):
        names = ("zeros", "zero_", "fill", "full", "new_zeros")
        return [shape for name, shapes, _ in self.calls if any(n in name for n in names) for shape in shapes]


def _case(spec):
    """The op's small float64 case (sublocal_kernels/ops/registry.py): (call, fwd, x)."""
    return lambda lengths=LENGTHS, T=T: spec.lengths_case(lengths, B, T)


OPS = {spec.name: _case(spec) for spec in registry.OPS}
# How many of each forward op's results are workspaces (its last results); the rest are real outputs.
WORKSPACES = {spec.name: len(spec.workspaces) for spec in registry.OPS}
# The public function behind each op, which names itself in its errors (the mLSTM is a cell of lstm).
PUBLIC = {spec.name: spec.public_name for spec in registry.OPS}
# Each public op's per-step (B, T, ...) inputs: `lengths` comes right after them, everywhere.
PER_STEP_INPUTS = {spec.name: list(spec.per_step_inputs) for spec in registry.OPS if not spec.is_variant}


@pytest.mark.parametrize("op", OPS)
def test_workspace_gradients_are_never_materialised(op):
    """Only the first output is used: autograd hands the backward None for every other output,
    workspaces included, and the backward allocates no zero tensor the size of a workspace."""
    _, fwd, _ = OPS[op]()
    results = fwd()
    workspaces = [tuple(t.shape) for t in results[len(results) - WORKSPACES[op]:]]
    rec = _Record()
    with rec:
        results[0].sum().backward()
    fills = rec.zero_fills()
    assert not [s for s in fills if s in workspaces], (op, fills, workspaces)
    assert any(f"{op}_bwd" in name for name, _, _ in rec.calls), "the backward kernel ran"


@pytest.mark.parametrize("op", ["lstm", "mlstm"])
def test_unused_lstm_output_gets_no_zero_gradient(op):
    """A classifier on the final states leaves `out` (B, T, D H) unused: its gradient reaches
    the kernel as None, and no zero tensor of its shape is made."""
    _, fwd, x = OPS[op]()
    out, h_n = fwd()[:2]
    rec = _Record()
    with rec:
        h_n.sum().backward()
    assert tuple(out.shape) not in rec.zero_fills(), rec.zero_fills()
    (args,) = [a for name, _, a in rec.calls if f"{op}_bwd" in name]
    assert args[0] is None and x.grad is not None and x.grad.abs().sum() > 0


def test_lstm_cpu_workspace_has_one_row_per_valid_step():
    _, fwd, _ = OPS["lstm"]()
    _, _, _, gates, states = fwd()
    n = int(LENGTHS.sum())
    assert gates.shape == (2, n, 12) and states.shape == (2, n, 6)
    _, fwd_all, _ = OPS["lstm"](lengths=None)
    assert fwd_all()[3].shape == (2, B * T, 12)


def test_only_needed_input_gradients_are_computed():
    x = torch.randn(B, T, 4, dtype=torch.float64)  # no gradient wanted for x
    ws = [torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)]
    rec = _Record()
    y = sk.multiwidth_conv1d(x, LENGTHS, ws)
    with rec:
        y.sum().backward()
    (args,) = [a for name, _, a in rec.calls if "multiwidth_conv1d_bwd" in name]
    assert args[-2:] == (False, True)  # need_grad_x, need_grad_weights
    assert x.grad is None and ws[0].grad is not None


@pytest.mark.parametrize("op", OPS)
def test_one_lengths_contract(op):
    call, _, x = OPS[op]()
    # None means every sequence has length T, in every op; a list of ints is accepted too.
    for a, b in zip(call(None), call(torch.full((B,), T))):
        assert (a is None and b is None) or torch.equal(a, b)
    for a, b in zip(call([5, 2, 3]), call(LENGTHS.int())):
        assert (a is None and b is None) or torch.equal(a, b)
    # Length 0 is refused by every op with one message, in Python and in C++.
    message = r"`lengths\[1\]` = 0 is out of range; each length must be in \[1, T\] = \[1, 5\]"
    with pytest.raises(ValueError, match=f"^{PUBLIC[op]}: {message}"):
        call(torch.tensor([5, 0, 3]))
    _, fwd0, _ = OPS[op](lengths=torch.tensor([5, 0, 3]))
    with pytest.raises(RuntimeError, match=message):
        fwd0()
    with pytest.raises(ValueError, match=r"`lengths\[0\]` = 6 is out of range"):
        call(torch.tensor([6, 2, 3]))
    # No steps at all leaves nothing to compute with when lengths is None.
    empty_call, _, x0 = OPS[op](T=0)
    with pytest.raises(ValueError, match=r"must have at least one step \(T >= 1\) when `lengths` is None"):
        empty_call(None)


@pytest.mark.parametrize("op", PER_STEP_INPUTS)
def test_lengths_comes_right_after_the_per_step_inputs(op):
    """The same argument at the same place in every public op and its reference."""
    import inspect

    expected = PER_STEP_INPUTS[op] + ["lengths"]
    for fn in (getattr(sk, op), getattr(sk, f"{op}_ref")):
        assert list(inspect.signature(fn).parameters)[:len(expected)] == expected, fn


def test_every_schema_takes_optional_lengths():
    """Every kernel-level op takes `Tensor? lengths` (None: every sequence has length T), and
    right after its per-step inputs in the forward ops."""
    schemas = {name: getattr(torch.ops.sublocal, name).default._schema for name in torch.ops.sublocal
               if not name.startswith("_cpu_cache")}
    with_lengths = {n: s for n, s in schemas.items() if any(a.name == "lengths" for a in s.arguments)}
    assert len(with_lengths) >= 12, sorted(with_lengths)
    for name, schema in with_lengths.items():
        (arg,) = [a for a in schema.arguments if a.name == "lengths"]
        assert str(arg.type) == "Optional[Tensor]", (name, str(arg.type))
    for op, inputs in PER_STEP_INPUTS.items():
        names = [a.name for a in schemas[f"{op}_fwd"].arguments]
        assert names.index("lengths") == len(inputs), (op, names)


def test_schema_level_lengths_none_means_all_steps():
    """attention pooling and channel-wise pooling used to require a lengths tensor at the
    kernel level; None now means the same as a full-length tensor there too."""
    for op in ("attention_pool", "channel_attention_pool"):
        _, fwd_none, _ = OPS[op](lengths=None)
        _, fwd_full, _ = OPS[op](lengths=torch.full((B,), T))
        for a, b in zip(fwd_none(), fwd_full()):
            assert torch.equal(a, b), op


def test_conv_old_argument_order_still_works_with_a_warning():
    import warnings

    torch.manual_seed(0)
    x = torch.randn(B, T, 4, dtype=torch.float64)
    ws = [torch.randn(2, 4, k, dtype=torch.float64) for k in (1, 3)]
    bs = [torch.randn(2, dtype=torch.float64) for _ in ws]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new order warns about nothing
        expected = sk.multiwidth_conv1d(x, LENGTHS, ws, bs, None, True)
        assert torch.equal(sk.multiwidth_conv1d(x, weights=ws, bias=bs, lengths=LENGTHS, activation=None,
                                                causal=True), expected)
    for fn in (sk.multiwidth_conv1d, sk.multiwidth_conv1d_ref):
        for old in (lambda: fn(x, ws, bs, LENGTHS, None, True),
                    lambda: fn(x, ws, bs, lengths=LENGTHS, activation=None, causal=True)):
            with pytest.warns(DeprecationWarning, match=r"pass lengths second"):
                got = old()
            torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="multiple values"):
        sk.multiwidth_conv1d(x, ws, bs, LENGTHS, lengths=LENGTHS)


def test_one_float32_dot_policy(monkeypatch):
    """Every Triton launcher takes its dot precision from one rule (ops/_triton_utils.py)."""
    pytest.importorskip("triton")
    from sublocal_kernels.ops import _triton_utils as tu

    matmul = torch.backends.cuda.matmul
    before = torch.get_float32_matmul_precision(), matmul.allow_tf32
    try:
        torch.set_float32_matmul_precision("highest")
        matmul.allow_tf32 = False
        assert tu.dot_precision(torch.float32) == "tf32x3"
        for setting in ("high", "medium"):
            torch.set_float32_matmul_precision(setting)
            assert tu.dot_precision(torch.float32) == "tf32"
        torch.set_float32_matmul_precision("highest")
        matmul.allow_tf32 = True
        assert tu.dot_precision(torch.float32) == "tf32"
        assert tu.dot_precision(torch.float32, "ieee") == "ieee"  # a per-call override wins
    finally:
        torch.set_float32_matmul_precision(before[0])
        matmul.allow_tf32 = before[1]
    with pytest.raises(ValueError, match="`f32_dot` must be one of"):
        tu.dot_precision(torch.float32, "fast")
    assert tu.dot_precision(torch.float64) == "ieee" and tu.dot_precision(torch.float16) == "ieee"
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert tu.dot_precision(torch.bfloat16) == tu.UPCAST
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert tu.dot_precision(torch.bfloat16) == "ieee"
