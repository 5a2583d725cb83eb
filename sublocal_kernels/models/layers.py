"""The layers the classifiers are built from, in two interchangeable sets.

``layers="sublocal"`` (the default) builds every layer from :mod:`sublocal_kernels.nn`. ``layers="torch"`` builds the same
layers from stock ``torch.nn`` modules (``nn.Conv1d`` per width, one-direction ``nn.LSTM``
modules, ``nn.Linear`` attention), the peer the library is tested and benchmarked
against. :mod:`sublocal_kernels.models.convert` maps the weights (or gradients) of one set onto
the other (:func:`~sublocal_kernels.models.convert.convert_state_dict`), so the two builds of a
classifier can be compared weight for weight; its names are also importable from here.

Every layer takes and returns channels-last ``(B, T, C)`` tensors and a ``lengths (B,)`` tensor;
outputs are zero at padded positions.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import nn as snn

LAYER_SETS = ("sublocal", "torch")

# conv_filter_weights and convert_state_dict come from models.convert through __getattr__ below.
__all__ = ["LAYER_SETS", "make_conv", "make_lstm", "make_attention", "make_channel_attention", "make_qrnn", "run_lstm", "run_qrnn", "add_forget_bias", "masked_mean",
           "pad_mask", "conv_filter_weights", "reverse_within_lengths", "TorchBiLSTM", "TorchMultiWidthConv1d", "TorchAttentionPool", "TorchChannelAttentionPool", "TorchQRNN", "convert_state_dict"]  # noqa: F822


def _check_layers(layers: str) -> str:
    if layers not in LAYER_SETS:
        raise ValueError(f"layers must be one of {LAYER_SETS}, got {layers!r}")
    return layers


def pad_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """``(B, T) bool``: True at valid positions (``t < lengths[b]``)."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean of ``x (B, T, C)`` over each sequence's valid positions: ``(B, C)``."""
    mask = pad_mask(lengths.to(x.device), x.shape[1]).to(x.dtype)
    return (x * mask[..., None]).sum(1) / lengths.to(x.device, x.dtype).clamp_min(1)[:, None]


# --------------------------------------------------------------------------------------------
# Multi-width convolution


class TorchMultiWidthConv1d(nn.Module):
    """``len(widths)`` ``nn.Conv1d`` layers, outputs concatenated along channels, then the
    activation: the stock-PyTorch build of :class:`sublocal_kernels.nn.MultiWidthConv1d`.

    Positions at or past a sequence's length are treated as zeros (the input is masked) and
    their outputs are zero. Non-causal widths are centred (``w//2`` steps before, ``(w-1)//2``
    after, times ``dilation``: an even width leans left, as the fused layer does); causal ones
    look back only (``(w-1)*dilation`` steps).
    """

    def __init__(self, in_channels: int, filters_per_width: int = 10, widths: Sequence[int] = (1, 3, 5, 9, 15, 21),
                 activation: str | None = "relu", causal: bool = False, dilation: int = 1):
        super().__init__()
        self.in_channels, self.filters_per_width, self.widths = in_channels, filters_per_width, tuple(widths)
        self.activation, self.causal, self.dilation = activation, causal, dilation
        self.convs = nn.ModuleList(nn.Conv1d(in_channels, filters_per_width, w, dilation=dilation) for w in widths)
        self.out_channels = filters_per_width * len(self.widths)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        mask = None if lengths is None else pad_mask(lengths.to(x.device), T)
        if mask is not None:
            x = x * mask[..., None].to(x.dtype)
        xc = x.transpose(1, 2)
        outs = []
        for w, conv in zip(self.widths, self.convs):
            span = (w - 1) * self.dilation
            left = span if self.causal else (w // 2) * self.dilation
            outs.append(conv(F.pad(xc, (left, span - left))))
        y = torch.cat(outs, dim=1).transpose(1, 2)
        if self.activation == "relu":
            y = torch.relu(y)
        elif self.activation is not None:
            raise ValueError(f"activation must be 'relu' or None, got {self.activation!r}")
        if mask is not None:
            y = y * mask[..., None].to(y.dtype)
        return y


def make_conv(layers: str, in_channels: int, filters_per_width: int, widths: Sequence[int],
              activation: str | None = "relu", causal: bool = False, dilation: int = 1) -> nn.Module:
    if _check_layers(layers) == "torch":
        return TorchMultiWidthConv1d(in_channels, filters_per_width, widths, activation, causal, dilation)
    return snn.MultiWidthConv1d(in_channels, filters_per_width=filters_per_width, widths=tuple(widths),
                                            activation=activation, causal=causal, dilation=dilation)


# --------------------------------------------------------------------------------------------
# Bidirectional LSTM


def reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``x (B, T, ...)`` with each sequence's first ``lengths[b]`` steps in reverse order (the
    padding stays where it is): the backward direction's view of a padded batch."""
    T = x.shape[1]
    t = torch.arange(T, device=x.device)[None, :]
    idx = torch.where(t < lengths[:, None], (lengths[:, None] - 1 - t).clamp_min(0), t)
    return x.gather(1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x))


class TorchBiLSTM(nn.Module):
    """A (bidirectional) LSTM from one-direction ``nn.LSTM`` modules run on the padded batch:
    the forward direction as is (its outputs at valid steps never see the padding), the
    backward direction on each sequence reversed within its length. Exactly the packed
    ``nn.LSTM(bidirectional=True)``'s results, without its CPU cost (``nn.LSTM`` on a
    ``PackedSequence`` runs many times slower than on padded input on CPU).

    ``directions[layer][d]`` is an ``nn.LSTM(in, hidden, batch_first=True)``; ``d = 1`` is the
    backward direction (``*_reverse`` in ``nn.LSTM``'s and :class:`sublocal_kernels.nn.LSTM`'s
    names, which :func:`convert_state_dict` maps).

    ``forward(x, lengths) -> (output (B, T, D*H) zero at padding, h_n (layers*D, B, H))``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = True):
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.num_directions = 2 if bidirectional else 1
        self.directions = nn.ModuleList(
            nn.ModuleList(nn.LSTM(input_size if layer == 0 else hidden_size * self.num_directions, hidden_size,
                                  batch_first=True) for _ in range(self.num_directions))
            for layer in range(num_layers))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = lengths.to(x.device)
        mask = pad_mask(lengths, x.shape[1])[..., None].to(x.dtype)
        rows = torch.arange(x.shape[0], device=x.device)
        finals = []
        for layer in self.directions:
            fwd, _ = layer[0](x)
            outs = [fwd]
            finals.append(fwd[rows, lengths - 1])
            if self.num_directions == 2:
                bwd = reverse_within_lengths(layer[1](reverse_within_lengths(x, lengths))[0], lengths)
                outs.append(bwd)
                finals.append(bwd[:, 0])
            x = torch.cat(outs, dim=-1) * mask
        return x, torch.stack(finals)


def make_lstm(layers: str, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = True
              ) -> nn.Module:
    if _check_layers(layers) == "torch":
        return TorchBiLSTM(input_size, hidden_size, num_layers, bidirectional)
    return snn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True,
                                bidirectional=bidirectional)


def add_forget_bias(lstm: nn.Module, value: float) -> None:
    """Add ``value`` to the forget-gate slice of every input bias (gate order i, f, g, o, as in
    ``nn.LSTM``; both builds use those names). A positive value starts the cell with a long
    memory (sigmoid(3) = 0.95 per step instead of 0.5), which is what lets a signal at one end
    of a protein reach the other end early in training."""
    if not value:
        return
    with torch.no_grad():
        for name, p in lstm.named_parameters():
            if name.rsplit(".", 1)[-1].startswith("bias_ih"):
                h = p.shape[0] // 4
                p[h:2 * h] += value


def run_lstm(lstm: nn.Module, x: torch.Tensor, lengths: torch.Tensor,
             sequences: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Run either LSTM build over variable-length ``x (B, T, C)``.

    Returns ``(output (B, T, D*H), h_n (layers*D, B, H))``: outputs zero at padded positions;
    ``h_n`` the state after each sequence's last valid step (forward) and after its first step
    (backward), as ``nn.LSTM`` on a ``PackedSequence`` gives them. With ``sequences=False``
    the fused LSTM skips the output (None); the torch.nn build always makes it.
    """
    if isinstance(lstm, TorchBiLSTM):
        return lstm(x, lengths)
    out, (h_n, _) = lstm(x, lengths, return_sequences=sequences)
    return out, h_n


# --------------------------------------------------------------------------------------------
# Attention pooling


class TorchAttentionPool(nn.Module):
    """Additive attention pooling from ``nn.Linear`` layers: ``e_t = v . tanh(W h_t + b)``,
    ``alpha`` a softmax over each sequence's valid steps, ``context = sum_t alpha_t h_t``."""

    def __init__(self, input_size: int, attention_size: int = 400, bias: bool = True):
        super().__init__()
        self.project = nn.Linear(input_size, attention_size, bias=bias)
        self.score = nn.Linear(attention_size, 1, bias=False)

    def forward(self, h: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.score(torch.tanh(self.project(h)))[..., 0]
        e = e.masked_fill(~pad_mask(lengths.to(h.device), h.shape[1]), float("-inf"))
        alpha = torch.softmax(e, dim=1)
        return torch.bmm(alpha[:, None, :], h)[:, 0], alpha


def make_attention(layers: str, input_size: int, attention_size: int = 400) -> nn.Module:
    if _check_layers(layers) == "torch":
        return TorchAttentionPool(input_size, attention_size)
    return snn.AttentionPool(input_size, attention_size=attention_size)


class TorchChannelAttentionPool(nn.Module):
    """Channel-wise attention pooling from stock ops: ``alpha`` a softmax of the logits over each
    sequence's valid steps for every channel, ``context = (alpha * values).sum(1)``, and the
    values' max over valid steps (the Light Attention paper's pooling)."""

    def forward(self, values: torch.Tensor, logits: torch.Tensor, lengths: torch.Tensor,
                return_alpha: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        pad = ~pad_mask(lengths.to(values.device), values.shape[1])[..., None]
        alpha = torch.softmax(logits.masked_fill(pad, float("-inf")), dim=1)
        context = (alpha * values).sum(1)
        maxpool = values.masked_fill(pad, float("-inf")).max(1).values
        return context, maxpool, alpha if return_alpha else None


def make_channel_attention(layers: str) -> nn.Module:
    if _check_layers(layers) == "torch":
        return TorchChannelAttentionPool()
    return snn.ChannelAttentionPool()


# --------------------------------------------------------------------------------------------
# QRNN


class TorchQRNN(nn.Module):
    """A stacked, optionally bidirectional QRNN from stock layers: per layer and direction a
    causal ``nn.Conv1d`` of width ``window`` gives ``z, f, o`` (tanh, sigmoid, sigmoid), then
    fo-pooling ``c_t = f_t c_{t-1} + (1 - f_t) z_t``, ``h_t = o_t c_t`` as a loop over time (the
    backward direction runs over each sequence reversed within its length, so its window reads
    the next ``window - 1`` steps: :class:`sublocal_kernels.nn.QRNN`'s alignment).
    ``convs[layer * D + d]`` holds ``weight_l{layer}`` (``d = 0``) or ``weight_l{layer}_reverse``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, window: int = 2,
                 bidirectional: bool = True):
        super().__init__()
        self.hidden_size, self.num_layers, self.window = hidden_size, num_layers, window
        self.num_directions = 2 if bidirectional else 1
        self.convs = nn.ModuleList()
        for layer in range(num_layers):
            size = input_size if layer == 0 else hidden_size * self.num_directions
            for _ in range(self.num_directions):
                self.convs.append(nn.Conv1d(size, 3 * hidden_size, window))

    def _direction(self, conv: nn.Conv1d, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor):
        g = conv(F.pad(x.transpose(1, 2), (self.window - 1, 0))).transpose(1, 2)
        z, f, o = g.chunk(3, dim=-1)
        z, f, o = torch.tanh(z), torch.sigmoid(f), torch.sigmoid(o)
        c = x.new_zeros(x.shape[0], self.hidden_size)
        hs = []
        # unbind, not f[:, t] per step: the backward of one indexing op is a full (B, T, H)
        # zero tensor with one step filled, so T of them made the backward O(T^2) in memory
        # traffic (a QRNN training step at `paper` took minutes); unbind's backward is one stack.
        for ft, zt, ot, valid in zip(f.unbind(1), z.unbind(1), o.unbind(1), mask[..., None].unbind(1)):
            c = torch.where(valid, ft * c + (1 - ft) * zt, c)
            hs.append(ot * c * valid)
        return torch.stack(hs, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(x.device)
        mask = pad_mask(lengths, x.shape[1])
        x = x * mask[..., None].to(x.dtype)
        for layer in range(self.num_layers):
            outs = [self._direction(self.convs[layer * self.num_directions], x, lengths, mask)]
            if self.num_directions == 2:
                rev = self._direction(self.convs[layer * 2 + 1], reverse_within_lengths(x, lengths), lengths, mask)
                outs.append(reverse_within_lengths(rev, lengths))
            x = torch.cat(outs, dim=-1)
        return x


def make_qrnn(layers: str, input_size: int, hidden_size: int, num_layers: int = 1, window: int = 2,
              bidirectional: bool = True) -> nn.Module:
    if _check_layers(layers) == "torch":
        return TorchQRNN(input_size, hidden_size, num_layers, window, bidirectional)
    return snn.QRNN(input_size, hidden_size, num_layers=num_layers, kernel_size=window,
                                bidirectional=bidirectional)


def run_qrnn(qrnn: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Either QRNN build over ``x (B, T, C)``: the outputs ``(B, T, D*H)``, zero at padding."""
    if isinstance(qrnn, TorchQRNN):
        return qrnn(x, lengths)
    out, _ = qrnn(x, lengths)
    return out


# The conversion between the two builds lives in convert.py (it imports this module); its
# names stay importable from here.
_MOVED_TO_CONVERT = ("convert_state_dict", "conv_filter_weights", "_lstm_names")


def __getattr__(name: str):
    if name in _MOVED_TO_CONVERT:
        from . import convert

        return getattr(convert, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
