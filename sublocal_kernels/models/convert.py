"""Conversion between the two builds of the classifiers' layers (see :mod:`.layers`).

:func:`convert_state_dict` maps the weights (or gradients) of a model built with one layer set
(``"sublocal"`` or ``"torch"``) onto the other's names and layouts, so the two builds of a
classifier can be compared weight for weight; :func:`conv_filter_weights` reads either
multi-width conv build's filters in ``nn.Conv1d``'s layout.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import nn as snn
from ..ops.lstm import weight_names
from .layers import TorchAttentionPool, TorchBiLSTM, TorchMultiWidthConv1d, TorchQRNN, _check_layers

__all__ = ["convert_state_dict", "conv_filter_weights"]


def conv_filter_weights(conv: nn.Module) -> list[tuple[int, torch.Tensor]]:
    """``[(width, weight (F, C, width))]`` of either multi-width conv build, in width order
    (``nn.Conv1d``'s layout: tap ``k`` of a centred filter reads position ``t - (w-1)//2 + k``)."""
    if isinstance(conv, TorchMultiWidthConv1d):
        return [(w, c.weight) for w, c in zip(conv.widths, conv.convs)]
    return _sublocal_conv_filters(conv)


# --------------------------------------------------------------------------------------------
# Weight conversion between the two builds


def convert_state_dict(state: dict, model: nn.Module, to: str) -> dict:
    """Map a state dict (or a dict of gradients with the same keys) of ``model``'s other build
    onto ``model``'s (``to`` is ``model``'s layer set, ``"torch"`` or ``"sublocal"``).

    Conversion is structural: a layer's tensors are renamed and re-laid out; values are never
    changed. Keys of layers that are the same in both builds (encoder, dense, ``nn.LSTM``
    parameters, which :class:`sublocal_kernels.nn.LSTM` shares by name) pass through.
    """
    _check_layers(to)
    out = dict(state)
    for prefix, module in model.named_modules():
        p = f"{prefix}." if prefix else ""
        if isinstance(module, TorchMultiWidthConv1d) and to == "torch":
            _conv_to_torch(out, p, module)
        elif isinstance(module, TorchAttentionPool) and to == "torch":
            _attention_to_torch(out, p)
        elif isinstance(module, snn.MultiWidthConv1d) and to == "sublocal":
            _conv_to_sublocal(out, p, module)
        elif isinstance(module, snn.AttentionPool) and to == "sublocal":
            _attention_to_sublocal(out, p)
        elif isinstance(module, TorchBiLSTM) and to == "torch":
            _lstm_to_torch(out, p, module)
        elif isinstance(module, snn.LSTM) and to == "sublocal":
            _lstm_to_sublocal(out, p, module)
        elif isinstance(module, TorchQRNN) and to == "torch":
            _qrnn_to_torch(out, p, module)
        elif isinstance(module, snn.QRNN) and to == "sublocal":
            _qrnn_to_sublocal(out, p, module)
    return out


def _attention_to_torch(s: dict, p: str) -> None:
    s[f"{p}project.weight"] = s.pop(f"{p}w_a").t().contiguous()
    if f"{p}b_a" in s:
        s[f"{p}project.bias"] = s.pop(f"{p}b_a")
    s[f"{p}score.weight"] = s.pop(f"{p}v_a")[None, :].contiguous()


def _attention_to_sublocal(s: dict, p: str) -> None:
    s[f"{p}w_a"] = s.pop(f"{p}project.weight").t().contiguous()
    if f"{p}project.bias" in s:
        s[f"{p}b_a"] = s.pop(f"{p}project.bias")
    s[f"{p}v_a"] = s.pop(f"{p}score.weight")[0].contiguous()


def _conv_to_torch(s: dict, p: str, module: TorchMultiWidthConv1d) -> None:
    for i in range(len(module.convs)):
        s[f"{p}convs.{i}.weight"] = s.pop(f"{p}weights.{i}")
        if f"{p}biases.{i}" in s:
            s[f"{p}convs.{i}.bias"] = s.pop(f"{p}biases.{i}")


def _conv_to_sublocal(s: dict, p: str, module: nn.Module) -> None:
    for i in range(len(module.weights)):
        s[f"{p}weights.{i}"] = s.pop(f"{p}convs.{i}.weight")
        if f"{p}convs.{i}.bias" in s:
            s[f"{p}biases.{i}"] = s.pop(f"{p}convs.{i}.bias")


def _lstm_names(num_layers: int, directions: int):
    """(TorchBiLSTM's key, sublocal_kernels.nn.LSTM's key) of every LSTM parameter: direction d of
    layer k is a one-direction nn.LSTM of one layer, ``directions.{k}.{d}``."""
    one_direction = weight_names(bidirectional=False, bias=True, layer=0)
    for layer in range(num_layers):
        names = weight_names(bidirectional=directions == 2, bias=True, layer=layer)
        for i, theirs in enumerate(names):
            d, kind = divmod(i, len(one_direction))
            yield f"directions.{layer}.{d}.{one_direction[kind]}", theirs


def _lstm_to_torch(s: dict, p: str, module: "TorchBiLSTM") -> None:
    for ours, theirs in _lstm_names(module.num_layers, module.num_directions):
        s[f"{p}{ours}"] = s.pop(f"{p}{theirs}")


def _lstm_to_sublocal(s: dict, p: str, module: nn.Module) -> None:
    for ours, theirs in _lstm_names(module.num_layers, 2 if module.bidirectional else 1):
        s[f"{p}{theirs}"] = s.pop(f"{p}{ours}")


def _qrnn_names(num_layers: int, directions: int):
    for layer in range(num_layers):
        for d in range(directions):
            yield layer * directions + d, f"l{layer}{'_reverse' if d else ''}"


def _qrnn_to_torch(s: dict, p: str, module: "TorchQRNN") -> None:
    for i, name in _qrnn_names(module.num_layers, module.num_directions):
        s[f"{p}convs.{i}.weight"] = s.pop(f"{p}weight_{name}")
        s[f"{p}convs.{i}.bias"] = s.pop(f"{p}bias_{name}")


def _qrnn_to_sublocal(s: dict, p: str, module: nn.Module) -> None:
    for i, name in _qrnn_names(module.num_layers, module.num_directions):
        s[f"{p}weight_{name}"] = s.pop(f"{p}convs.{i}.weight")
        s[f"{p}bias_{name}"] = s.pop(f"{p}convs.{i}.bias")


def _sublocal_conv_filters(conv: nn.Module):
    return list(zip(conv.widths, conv.weights))
