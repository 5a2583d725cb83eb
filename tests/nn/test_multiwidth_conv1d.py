"""nn.MultiWidthConv1d: initialisation, nn.Conv1d interchange, forward, arguments."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sublocal_kernels.nn import MultiWidthConv1d
from sublocal_kernels.ops.multiwidth_conv1d import multiwidth_conv1d_ref
from tests.helpers import assert_close

WIDTHS = (1, 3, 5, 9, 15, 21)


def test_initialisation_is_nn_conv1d():
    """Same seed, same parameters as the list of nn.Conv1d it replaces (weight, then bias, per width)."""
    torch.manual_seed(7)
    layer = MultiWidthConv1d(20, 10, WIDTHS)
    torch.manual_seed(7)
    convs = [nn.Conv1d(20, 10, k) for k in WIDTHS]
    for i, conv in enumerate(convs):
        assert torch.equal(layer.weights[i], conv.weight)
        assert torch.equal(layer.biases[i], conv.bias)


def test_forward_matches_nn_conv1d_bank():
    torch.manual_seed(0)
    convs = [nn.Conv1d(20, 10, k, padding=k // 2) for k in WIDTHS]
    layer = MultiWidthConv1d.from_conv1d(convs)
    x = torch.randn(3, 57, 20)
    expected = torch.relu(torch.cat([c(x.transpose(1, 2)) for c in convs], 1)).transpose(1, 2)
    assert_close(layer(x), expected)
    # and the gradients of the copied parameters
    layer(x).square().sum().backward()
    torch.relu(torch.cat([c(x.transpose(1, 2)) for c in convs], 1)).square().sum().backward()
    for i, conv in enumerate(convs):
        assert_close(layer.weights[i].grad, conv.weight.grad, scale=10.0)
        assert_close(layer.biases[i].grad, conv.bias.grad, scale=10.0)


def test_forward_with_lengths_matches_reference():
    layer = MultiWidthConv1d(5, (2, 3), (4, 7), activation=None, causal=True, dilation=2).double()
    x = torch.randn(4, 30, 5, dtype=torch.float64)
    L = torch.tensor([30, 1, 12, 29])
    y = layer(x, L)
    assert y.shape == (4, 30, layer.out_channels) and layer.out_channels == 5
    assert_close(y, multiwidth_conv1d_ref(x, L, list(layer.weights), list(layer.biases), None, True, 2))


def test_causal_from_conv1d_idioms():
    torch.manual_seed(1)
    x = torch.randn(2, 25, 6)
    T = x.shape[1]
    # conv(x)[..., :T] with padding (k - 1) * d
    a = nn.Conv1d(6, 4, 3, padding=4, dilation=2)
    # conv(F.pad(x, ((k - 1) * d, 0))) with padding 0
    b = nn.Conv1d(6, 5, 2, padding=0, dilation=2)
    layer = MultiWidthConv1d.from_conv1d([a, b], activation=None, causal=True)
    xt = x.transpose(1, 2)
    expected = torch.cat([a(xt)[..., :T], b(F.pad(xt, (2, 0)))], 1).transpose(1, 2)
    assert_close(layer(x), expected)


def test_from_conv1d_without_bias():
    convs = [nn.Conv1d(4, 3, k, padding="same", bias=False) for k in (3, 5)]
    layer = MultiWidthConv1d.from_conv1d(convs)
    assert layer.biases is None and not layer.reverse
    x = torch.randn(2, 10, 4)
    assert_close(layer(x), torch.relu(torch.cat([c(x.transpose(1, 2)) for c in convs], 1)).transpose(1, 2))


def test_from_conv1d_even_width_refused():
    with pytest.raises(ValueError, match=r"`convs\[1\]` \(kernel_size=4.*an odd width"):
        MultiWidthConv1d.from_conv1d([nn.Conv1d(4, 3, 3, padding=1), nn.Conv1d(4, 3, 4, padding="same")])


def test_reverse_reads_each_sequence_backwards():
    layer = MultiWidthConv1d(3, (2, 3), (2, 5), causal=True, reverse=True).double()
    assert "reverse=True" in repr(layer)
    x = torch.randn(2, 12, 3, dtype=torch.float64)
    L = torch.tensor([12, 7])
    y = layer(x, L)
    forward = MultiWidthConv1d(3, (2, 3), (2, 5), causal=True).double()
    forward.load_state_dict(layer.state_dict())
    for b in range(2):
        n = int(L[b])
        assert_close(y[b, :n], forward(x[b:b + 1, :n].flip(1))[0].flip(0))


@pytest.mark.parametrize(
    "convs,exc,pattern",
    [
        ([], ValueError, r"at least one nn.Conv1d"),
        ([nn.Linear(3, 3)], TypeError, r"`convs\[0\]` must be an nn.Conv1d"),
        ([nn.Conv1d(4, 3, 3, padding=1), nn.Conv1d(5, 3, 3, padding=1)], ValueError, r"in_channels=5.*must match"),
        ([nn.Conv1d(4, 3, 3, padding=2, dilation=2), nn.Conv1d(4, 3, 3, padding=1)], ValueError,
         r"`convs\[1\]` has dilation=1"),
        ([nn.Conv1d(4, 3, 3, padding=1, stride=2)], ValueError, r"stride=1, groups=1"),
        ([nn.Conv1d(4, 3, 3, padding=1, padding_mode="reflect")], ValueError, r"padding_mode='zeros'"),
        ([nn.Conv1d(4, 3, 3, padding=1), nn.Conv1d(4, 3, 3, padding=1, bias=False)], ValueError, r"bias"),
        ([nn.Conv1d(4, 3, 5, padding=1)], ValueError, r"expected padding=2 or 'same'"),
    ],
    ids=["empty", "not-conv", "in-channels", "dilation", "stride", "padding-mode", "bias-mix", "padding"],
)
def test_from_conv1d_bad_input(convs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        MultiWidthConv1d.from_conv1d(convs)


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        (dict(in_channels=0), r"`in_channels` must be an int >= 1"),
        (dict(in_channels=4, widths=()), r"`widths` must be a non-empty"),
        (dict(in_channels=4, widths=(3, 0)), r"`widths` must be a non-empty sequence of ints >= 1"),
        (dict(in_channels=4, filters_per_width=(1, 2)), r"`filters_per_width` must be an int or one int per width"),
        (dict(in_channels=4, activation="gelu"), r"`activation` must be \"relu\", \"tanh\", \"sigmoid\" or None"),
        (dict(in_channels=4, dilation=0), r"`dilation` must be an int >= 1"),
    ],
)
def test_constructor_bad_input(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        MultiWidthConv1d(**kwargs)


def test_extra_repr_and_state_dict():
    layer = MultiWidthConv1d(20, (10, 20), (3, 5), causal=True, dilation=2, bias=False)
    assert repr(layer).startswith(
        "MultiWidthConv1d(\n  20, filters_per_width=(10, 20), widths=(3, 5), activation='relu', causal=True, "
        "dilation=2, bias=False")
    assert sorted(layer.state_dict()) == ["weights.0", "weights.1"]
    assert "filters_per_width=10," in repr(MultiWidthConv1d(20))
