"""sublocal_kernels.nn.LSTM: a drop-in for torch.nn.LSTM (parameters, state_dict, packed I/O)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import sublocal_kernels as sk
from tests.helpers import assert_close

CONFIGS = [
    pytest.param(dict(num_layers=1, bias=True, bidirectional=True), id="1layer-bi"),
    pytest.param(dict(num_layers=2, bias=True, bidirectional=True, dropout=0.25), id="2layers-bi-dropout"),
    pytest.param(dict(num_layers=3, bias=False, bidirectional=False), id="3layers-uni-nobias"),
]


def pair(C=5, H=6, dtype=torch.float64, **kw):
    ours = sk.nn.LSTM(C, H, **kw).to(dtype)
    ref = torch.nn.LSTM(C, H, batch_first=kw.get("batch_first", True), num_layers=kw.get("num_layers", 1),
                        bias=kw.get("bias", True), dropout=kw.get("dropout", 0.0),
                        bidirectional=kw.get("bidirectional", True)).to(dtype)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


@pytest.mark.parametrize("kw", CONFIGS)
def test_parameters_and_state_dict_match_torch(kw):
    ours = sk.nn.LSTM(5, 6, **kw)
    ref = torch.nn.LSTM(5, 6, batch_first=True, **kw)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in ref.named_parameters()]
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())  # strict, both ways
    ref.load_state_dict(ours.state_dict())
    for a, b in zip(ours.parameters(), ref.parameters()):
        assert torch.equal(a, b)
    bound = 1 / math.sqrt(6)
    fresh = sk.nn.LSTM(5, 6, **kw)
    assert all(float(p.detach().abs().max()) <= bound for p in fresh.parameters())
    assert len(ours.all_weights) == len(ref.all_weights)


@pytest.mark.parametrize("kw", CONFIGS)
def test_packed_sequence_matches_torch(kw):
    ours, ref = pair(**kw)
    ours.eval(), ref.eval()
    D = 2 if kw["bidirectional"] else 1
    x = torch.randn(4, 9, 5, dtype=torch.float64, requires_grad=True)
    L = torch.tensor([9, 1, 6, 9])
    packed = pack_padded_sequence(x, L, batch_first=True, enforce_sorted=False)
    LD = kw["num_layers"] * D
    h0 = torch.randn(LD, 4, 6, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(LD, 4, 6, dtype=torch.float64, requires_grad=True)
    out, (h_n, c_n) = ours(packed, (h0, c0))
    r_out, (r_h, r_c) = ref(packed, (h0, c0))
    assert torch.equal(out.batch_sizes, r_out.batch_sizes)
    assert torch.equal(out.sorted_indices, r_out.sorted_indices)
    assert torch.equal(out.unsorted_indices, r_out.unsorted_indices)
    assert_close(out.data, r_out.data, name="packed data")
    assert_close(h_n, r_h, name="h_n")
    assert_close(c_n, r_c, name="c_n")
    leaves = [x, h0, c0]
    loss = (out.data.square().sum() + h_n.sum() + (c_n * 0.5).sum())
    r_loss = (r_out.data.square().sum() + r_h.sum() + (r_c * 0.5).sum())
    g = torch.autograd.grad(loss, leaves + list(ours.parameters()), retain_graph=True)  # packed is shared
    r_g = torch.autograd.grad(r_loss, leaves + list(ref.parameters()))
    for a, e in zip(g, r_g):
        assert_close(a, e, name="grad")


def test_enforce_sorted_packed_input():
    ours, ref = pair()
    x = torch.randn(3, 7, 5, dtype=torch.float64)
    packed = pack_padded_sequence(x, torch.tensor([7, 4, 2]), batch_first=True)
    out, (h_n, _) = ours(packed)
    r_out, (r_h, _) = ref(packed)
    assert out.sorted_indices is None
    assert_close(out.data, r_out.data)
    assert_close(h_n, r_h)


def test_tensor_and_lengths_input():
    ours, ref = pair(num_layers=2)
    x = torch.randn(3, 8, 5, dtype=torch.float64)
    L = torch.tensor([8, 3, 1])
    out, (h_n, c_n) = ours(x, L)
    r_out, (r_h, r_c) = ref(pack_padded_sequence(x, L, batch_first=True, enforce_sorted=False))
    r_out, _ = pad_packed_sequence(r_out, batch_first=True, total_length=8)
    assert_close(out, r_out)
    assert_close(h_n, r_h)
    assert_close(c_n, r_c)
    h0 = torch.randn(4, 3, 6, dtype=torch.float64)
    c0 = torch.randn(4, 3, 6, dtype=torch.float64)
    a = ours(x, L, (h0, c0))
    b = ours(x, lengths=L, hx=(h0, c0))
    assert torch.equal(a[0], b[0])
    # no lengths: every sequence runs all T steps, as nn.LSTM on the padded tensor
    full, (fh, _) = ours(x, (h0, c0))
    r_full, (rfh, _) = ref(x, (h0, c0))
    assert_close(full, r_full)
    assert_close(fh, rfh)


def test_batch_first_false_and_unbatched():
    ours, ref = pair(batch_first=False, bidirectional=False)
    x = torch.randn(7, 3, 5, dtype=torch.float64)  # (T, B, C)
    out, (h_n, _) = ours(x)
    r_out, (r_h, _) = ref(x)
    assert out.shape == (7, 3, 6)
    assert_close(out, r_out)
    assert_close(h_n, r_h)
    one = torch.randn(7, 5, dtype=torch.float64)  # unbatched (T, C)
    out1, (h1, c1) = ours(one)
    r1, (rh1, rc1) = ref(one)
    assert out1.shape == (7, 6) and h1.shape == (1, 6)
    assert_close(out1, r1)
    assert_close(h1, rh1)
    assert_close(c1, rc1)


def test_dropout_between_layers_in_training_only():
    ours = sk.nn.LSTM(5, 6, num_layers=2, dropout=0.5).double()
    x = torch.randn(3, 8, 5, dtype=torch.float64)
    L = torch.tensor([8, 3, 1])
    ours.eval()
    a, _ = ours(x, L)
    b, _ = ours(x, L)
    assert torch.equal(a, b)
    ours.train()
    c, (h_n, _) = ours(x, L)
    assert not torch.allclose(a, c)
    for i in range(3):
        assert (c[i, int(L[i]):] == 0).all()
    c.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in ours.parameters())
    nodrop = sk.nn.LSTM(5, 6, num_layers=2, dropout=0.0).double()
    nodrop.load_state_dict(ours.state_dict())
    ours.eval()
    assert torch.equal(nodrop.train()(x, L)[0], ours(x, L)[0])


def test_float32_module_and_repr():
    ours, ref = pair(C=20, H=32, dtype=torch.float32, num_layers=2)
    x = torch.randn(4, 30, 20)
    L = torch.tensor([30, 12, 1, 29])
    out, (h_n, _) = ours(x, L)
    r_out, (r_h, _) = ref(pack_padded_sequence(x, L, batch_first=True, enforce_sorted=False))
    r_out, _ = pad_packed_sequence(r_out, batch_first=True, total_length=30)
    assert_close(out, r_out, scale=10.0)
    assert_close(h_n, r_h, scale=10.0)
    text = repr(ours)
    assert text.startswith("LSTM(20, 32") and "num_layers=2" in text and "bidirectional=True" in text


@pytest.mark.parametrize(
    "call,exc,pattern",
    [
        (lambda m: m(torch.randn(2, 4, 3, dtype=torch.float64)), ValueError, r"`input` must have 5 features"),
        (lambda m: m(torch.randn(2, 2, 4, 5, dtype=torch.float64)), ValueError, r"`input` must have 3 dimensions"),
        (lambda m: m("x"), TypeError, r"`input` must be a torch.Tensor or a PackedSequence"),
        (lambda m: m(pack_padded_sequence(torch.randn(2, 4, 5, dtype=torch.float64), [4, 2], batch_first=True),
                     torch.tensor([4, 2])), ValueError, r"`lengths` must be None when `input` is a PackedSequence"),
        (lambda m: m(torch.randn(2, 4, 5, dtype=torch.float64), torch.tensor([4, 2]),
                     (torch.zeros(1, 2, 6, dtype=torch.float64),) * 2), ValueError, r"`hx h0` must have shape \(2, 2, 6\)"),
        (lambda m: m(torch.randn(2, 4, 5, dtype=torch.float64), torch.tensor([4, 9])), ValueError,
         r"`lengths\[1\]` = 9 is out of range"),
    ],
    ids=["features", "ndim", "not-tensor", "lengths-with-packed", "hx-shape", "lengths-range"],
)
def test_bad_input(call, exc, pattern):
    m = sk.nn.LSTM(5, 6).double()
    with pytest.raises(exc, match=pattern):
        call(m)


@pytest.mark.parametrize(
    "kw,pattern",
    [(dict(input_size=0), r"`input_size` must be >= 1"), (dict(hidden_size=2.5), r"`hidden_size` must be an int"),
     (dict(dropout=1.5), r"`dropout` must be a number in \[0, 1\]"), (dict(num_layers=0), r"`num_layers` must be >= 1")],
    ids=["input-size", "hidden-type", "dropout", "layers"],
)
def test_bad_constructor(kw, pattern):
    args = dict(input_size=5, hidden_size=6)
    args.update(kw)
    with pytest.raises((ValueError, TypeError), match=pattern):
        sk.nn.LSTM(**args)


# ---- the multiplicative cell (cell="mlstm") ---------------------------------------------------

def test_mlstm_parameters_and_init():
    m = sk.nn.LSTM(10, 7, num_layers=2, cell="mlstm")
    names = [n for n, _ in m.named_parameters()]
    per = ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_mx", "weight_mh"]
    assert names == [f"{n}_l{k}{s}" for k in range(2) for s in ("", "_reverse") for n in per]
    assert m.weight_mx_l0.shape == (7, 10) and m.weight_mx_l1.shape == (7, 14) and m.weight_mh_l1.shape == (7, 7)
    # weight_mx as an nn.Linear of its input, everything else as nn.LSTM.
    for name, p in m.named_parameters():
        bound = 1 / math.sqrt(p.shape[1] if name.startswith("weight_mx") else 7)
        assert float(p.detach().abs().max()) <= bound, name
        assert float(p.detach().abs().max()) > 0.5 * bound, name
    assert len(m.all_weights) == 4 and len(m.all_weights[0]) == 6
    other = sk.nn.LSTM(10, 7, num_layers=2, cell="mlstm")
    other.load_state_dict(m.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(other.parameters(), m.parameters()))
    with pytest.raises(RuntimeError, match="weight_mx_l0"):
        sk.nn.LSTM(10, 7, num_layers=2).load_state_dict(m.state_dict())
    assert "cell='mlstm'" in repr(m) and "cell" not in repr(sk.nn.LSTM(10, 7))


def test_mlstm_module_matches_reference_layer_by_layer():
    m = sk.nn.LSTM(4, 5, num_layers=2, cell="mlstm").double()
    x = torch.randn(3, 8, 4, dtype=torch.float64, requires_grad=True)
    L = torch.tensor([8, 1, 5])
    out, (h_n, c_n) = m(x, L)
    ref, hs, cs = x, [], []
    for layer in range(2):
        ref, h, c = sk.lstm_ref(ref, L, m.layer_weights(layer), cell="mlstm")
        hs.append(h)
        cs.append(c)
    assert_close(out, ref)
    assert_close(h_n, torch.cat(hs))
    assert_close(c_n, torch.cat(cs))
    g = torch.autograd.grad(out.sum() + h_n.sum(), [x, m.weight_mh_l1])
    g_ref = torch.autograd.grad(ref.sum() + torch.cat(hs).sum(), [x, m.weight_mh_l1])
    for a, e in zip(g, g_ref):
        assert_close(a, e)
    # A PackedSequence goes through the same layers.
    packed = pack_padded_sequence(x, L, batch_first=True, enforce_sorted=False)
    p_out, (p_h, _) = m(packed)
    p_out, _ = pad_packed_sequence(p_out, batch_first=True, total_length=8)
    assert_close(p_out, out)
    assert_close(p_h, h_n)


def test_mlstm_unidirectional_unirep_shape():
    m = sk.nn.LSTM(10, 12, bidirectional=False, cell="mlstm")
    out, (h_n, c_n) = m(torch.randn(2, 6, 10), torch.tensor([6, 3]))
    assert out.shape == (2, 6, 12) and h_n.shape == (1, 2, 12) and (out[1, 3:] == 0).all()


def test_mlstm_bad_cell():
    with pytest.raises(ValueError, match=r"LSTM: `cell` must be one of 'lstm', 'mlstm', got 'gru'"):
        sk.nn.LSTM(5, 6, cell="gru")


@pytest.mark.parametrize("unbatched", [False, True])
def test_final_states_only(unbatched):
    """forward(..., return_sequences=False): out is None, the states are those of the full
    forward (every layer but the last still feeds the next)."""
    torch.manual_seed(0)
    layer = sk.nn.LSTM(4, 3, num_layers=2).double()
    x = torch.randn(5, 4, dtype=torch.float64) if unbatched else torch.randn(2, 5, 4, dtype=torch.float64)
    lengths = None if unbatched else torch.tensor([5, 2])
    out, (h, c) = layer(x, lengths)
    none, (h2, c2) = layer(x, lengths, return_sequences=False)
    assert none is None and out is not None
    assert torch.equal(h, h2) and torch.equal(c, c2)
