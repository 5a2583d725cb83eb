"""AttentionPool module: each sequence of a padded batch is pooled as it would be alone."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sublocal_kernels.nn import AttentionPool
from tests.helpers import assert_close


def pool_alone(m: AttentionPool, h):
    """The module's function on one unpadded sequence h (T, D), from torch.nn pieces."""
    linear = nn.Linear(m.input_size, m.attention_size, bias=m.b_a is not None, dtype=h.dtype)
    with torch.no_grad():
        linear.weight.copy_(m.w_a.t())
        if m.b_a is not None:
            linear.bias.copy_(m.b_a)
    alpha = F.softmax(torch.tanh(linear(h)) @ m.v_a, dim=0)
    return alpha @ h, alpha


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_batch_equals_each_sequence_alone(bias):
    B, T, D, A = 4, 23, 6, 5
    m = AttentionPool(D, attention_size=A, bias=bias, dtype=torch.float64)
    h = torch.randn(B, T, D, dtype=torch.float64)
    lengths = torch.tensor([23, 1, 9, 17])
    context, alpha = m(h, lengths)
    assert context.shape == (B, D) and alpha.shape == (B, T)
    for b in range(B):
        L = int(lengths[b])
        c1, a1 = pool_alone(m, h[b, :L])
        assert_close(context[b], c1)
        assert_close(alpha[b, :L], a1)
        assert (alpha[b, L:] == 0).all()


def test_parameters_get_gradients_and_init_ranges():
    D, A = 512, 400
    m = AttentionPool(D)
    assert m.attention_size == 400 and m.w_a.shape == (D, A) and m.v_a.shape == (A,) and m.b_a.shape == (A,)
    assert float(m.w_a.abs().max()) <= 1 / math.sqrt(D) and float(m.b_a.abs().max()) <= 1 / math.sqrt(D)
    assert float(m.v_a.abs().max()) <= 1 / math.sqrt(A)
    assert float(m.w_a.std()) > 0.5 / math.sqrt(3 * D)  # uniform, not zeros
    h = torch.randn(3, 20, D, requires_grad=True)
    context, alpha = m(h, torch.tensor([20, 4, 11]))
    (context.square().sum() + alpha.square().sum()).backward()
    for p in (m.w_a, m.v_a, m.b_a, h):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_extra_repr_and_no_bias():
    m = AttentionPool(30, attention_size=64, bias=False)
    assert m.b_a is None
    assert "30, attention_size=64, bias=False" in repr(m)
    assert len(list(m.parameters())) == 2


@pytest.mark.parametrize("bad", [dict(input_size=0), dict(input_size=3, attention_size=-1), dict(input_size=2.5)])
def test_bad_sizes(bad):
    with pytest.raises(ValueError, match="must be a positive int"):
        AttentionPool(**bad)


def test_packed_sequence_input():
    B, T, D = 3, 12, 4
    m = AttentionPool(D, attention_size=6, dtype=torch.float64)
    h = torch.randn(B, T, D, dtype=torch.float64)
    lengths = torch.tensor([5, 12, 1])
    packed = nn.utils.rnn.pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
    c1, a1 = m(packed)
    c2, a2 = m(h, lengths)
    assert torch.equal(c1, c2) and torch.equal(a1, a2[:, : a1.shape[1]])
    with pytest.raises(ValueError, match="`lengths` must be None"):
        m(packed, lengths)
