"""The seed papers' localization classifiers, built from :mod:`sublocal_kernels.nn` layers.

Every classifier takes a padded batch of tokens and the sequence lengths (full length: nothing
is truncated here) and returns class logits:

``model(tokens, lengths, features=None) -> logits (B, num_classes)``

- ``tokens``: ``(B, T)`` int64 (0 at padded positions), see :mod:`sublocal_kernels.data`.
- ``lengths``: ``(B,)`` int64 in ``[1, T]``, on any device.
- ``features``: ``(B, T, F)`` float precomputed per-residue features (the encoder's
  ``extra_features``), or None.

``model.forward_details(...)`` also returns the pooled sequence representation (for the t-SNE
map) and the attention weights ``(B, T)`` where the model has attention (else None).

Every hyperparameter is a constructor argument; ``model.config`` holds them (JSON-serialisable)
and :func:`~sublocal_kernels.models.build_model` rebuilds a model from its name and config.
``layers="torch"`` builds the same model from stock ``torch.nn`` layers (see
:mod:`~sublocal_kernels.models.layers`).

Example (variable lengths)::

    >>> import torch
    >>> from sublocal_kernels.models import ALSTM
    >>> model = ALSTM(num_classes=7, hidden_size=32, attention_size=40, dense_size=32)
    >>> tokens = torch.randint(1, 21, (3, 50)); lengths = torch.tensor([50, 17, 1])
    >>> tokens[1, 17:] = 0; tokens[2, 1:] = 0
    >>> model(tokens, lengths).shape
    torch.Size([3, 7])
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import nn

from ..data.encodings import ResidueEncoder
from .layers import add_forget_bias, make_attention, make_conv, make_lstm, make_qrnn, masked_mean, run_lstm, run_qrnn

__all__ = ["ClassifierOutput", "SequenceClassifier", "RLSTM", "ALSTM", "CNNLSTM", "QRNNClassifier", "TCNClassifier"]

PAPER_WIDTHS = (1, 3, 5, 9, 15, 21)


class ClassifierOutput(NamedTuple):
    """``logits (B, K)``; ``representation (B, R)`` the pooled vector the dense head reads;
    ``attention (B, T)`` (zero at padded positions) or None for models without attention."""

    logits: torch.Tensor
    representation: torch.Tensor
    attention: torch.Tensor | None


def _head(in_size: int, dense_size: int, num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_size, dense_size), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(dense_size, num_classes))


def _positive(name: str, value, allow_zero: bool = False) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < (0 if allow_zero else 1):
        raise ValueError(f"`{name}` must be a {'non-negative' if allow_zero else 'positive'} int, got {value!r}")
    return value


def _probability(name: str, value) -> float:
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1), got {value!r}")
    return float(value)


class SequenceClassifier(nn.Module):
    """Base class: the residue encoder, the config record and the common forward."""

    #: the name used by the command line and checkpoints (``--model``)
    name = ""

    def __init__(self, config: dict, num_classes: int, alphabet: str, encoding: str, embedding_dim: int,
                 extra_features: int, layers: str):
        super().__init__()
        _positive("num_classes", num_classes)
        self.config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()
                       if k not in ("self", "__class__")}
        self.layers = layers
        self.encoder = ResidueEncoder(alphabet, encoding, embedding_dim, extra_features)
        self.num_classes = num_classes

    def pool(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x (B, T, C)`` encoded residues -> ``(representation (B, R), attention (B, T) or None)``."""
        raise NotImplementedError

    def forward_details(self, tokens: torch.Tensor, lengths: torch.Tensor,
                        features: torch.Tensor | None = None) -> ClassifierOutput:
        x = self.encoder(tokens, features)
        representation, attention = self.pool(x, lengths)
        return ClassifierOutput(self.head(representation), representation, attention)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, features: torch.Tensor | None = None
                ) -> torch.Tensor:
        return self.forward_details(tokens, lengths, features).logits

    def first_conv(self) -> nn.Module | None:
        """The convolution that reads the encoded residues (its filters are drawn as logos)."""
        return None


class RLSTM(SequenceClassifier):
    """R-LSTM: multi-width conv (widths 1, 3, 5, 9, 15, 21 x 10 filters, ReLU) -> dropout ->
    bidirectional LSTM -> the final states of both directions -> dense (ReLU) -> dropout ->
    classes. ``forget_bias`` is added to the LSTM's forget-gate bias at initialisation (0: the
    ``nn.LSTM`` initialisation).

    Equivalent to: six ``nn.Conv1d`` + ``torch.cat`` + ReLU, a bidirectional ``nn.LSTM``
    (``h_n`` of both directions, as on a ``PackedSequence``), ``nn.Linear`` layers
    (``RLSTM(..., layers="torch")``).
    """

    name = "rlstm"

    def __init__(self, num_classes: int, alphabet: str = "protein", encoding: str = "onehot",
                 embedding_dim: int = 32, extra_features: int = 0, widths: Sequence[int] = PAPER_WIDTHS,
                 filters_per_width: int = 10, hidden_size: int = 256, num_layers: int = 1, dense_size: int = 512,
                 dropout: float = 0.5, conv_dropout: float | None = None, forget_bias: float = 0.0,
                 layers: str = "sublocal"):
        super().__init__(dict(locals()), num_classes, alphabet, encoding, embedding_dim, extra_features, layers)
        _positive("hidden_size", hidden_size)
        _positive("dense_size", dense_size)
        self.conv = make_conv(layers, self.encoder.out_channels, _positive("filters_per_width", filters_per_width),
                              widths, "relu")
        self.conv_dropout = nn.Dropout(_probability("conv_dropout", dropout if conv_dropout is None else conv_dropout))
        self.lstm = make_lstm(layers, filters_per_width * len(widths), hidden_size, _positive("num_layers", num_layers))
        add_forget_bias(self.lstm, float(forget_bias))
        self.head = _head(2 * hidden_size, dense_size, num_classes, _probability("dropout", dropout))

    def pool(self, x, lengths):
        y = self.conv_dropout(self.conv(x, lengths))
        _, h_n = run_lstm(self.lstm, y, lengths, sequences=False)
        return torch.cat([h_n[-2], h_n[-1]], dim=-1), None

    def first_conv(self):
        return self.conv


class ALSTM(SequenceClassifier):
    """A-LSTM: multi-width conv -> dropout -> bidirectional LSTM -> attention pooling (attention
    size 400) over all hidden states -> dense (ReLU) -> dropout -> classes.

    Equivalent to: six ``nn.Conv1d`` + ``torch.cat`` + ReLU, a bidirectional ``nn.LSTM`` (as on a
    ``PackedSequence``), ``v . tanh(nn.Linear(h))`` scores with a masked softmax
    (``ALSTM(..., layers="torch")``).
    """

    name = "alstm"

    def __init__(self, num_classes: int, alphabet: str = "protein", encoding: str = "onehot",
                 embedding_dim: int = 32, extra_features: int = 0, widths: Sequence[int] = PAPER_WIDTHS,
                 filters_per_width: int = 10, hidden_size: int = 256, num_layers: int = 1,
                 attention_size: int = 400, dense_size: int = 512, dropout: float = 0.5,
                 conv_dropout: float | None = None, forget_bias: float = 0.0, layers: str = "sublocal"):
        super().__init__(dict(locals()), num_classes, alphabet, encoding, embedding_dim, extra_features, layers)
        _positive("hidden_size", hidden_size)
        _positive("dense_size", dense_size)
        self.conv = make_conv(layers, self.encoder.out_channels, _positive("filters_per_width", filters_per_width),
                              widths, "relu")
        self.conv_dropout = nn.Dropout(_probability("conv_dropout", dropout if conv_dropout is None else conv_dropout))
        self.lstm = make_lstm(layers, filters_per_width * len(widths), hidden_size, _positive("num_layers", num_layers))
        add_forget_bias(self.lstm, float(forget_bias))
        self.attention = make_attention(layers, 2 * hidden_size, _positive("attention_size", attention_size))
        self.head = _head(2 * hidden_size, dense_size, num_classes, _probability("dropout", dropout))

    def pool(self, x, lengths):
        y = self.conv_dropout(self.conv(x, lengths))
        h, _ = run_lstm(self.lstm, y, lengths)
        return self.attention(h, lengths)

    def first_conv(self):
        return self.conv


class CNNLSTM(SequenceClassifier):
    """The CNN-LSTM notebook's model: convs of widths 3 and 5 (10 filters each, ReLU,
    concatenated) -> a width-3 conv of 20 filters (ReLU) -> bidirectional LSTM of 15 units ->
    final states -> dense 30 (ReLU) -> dropout 0.5 -> classes."""

    name = "cnnlstm"

    def __init__(self, num_classes: int, alphabet: str = "protein", encoding: str = "onehot",
                 embedding_dim: int = 32, extra_features: int = 0, widths: Sequence[int] = (3, 5),
                 filters_per_width: int = 10, second_width: int = 3, second_filters: int = 20,
                 hidden_size: int = 15, dense_size: int = 30, dropout: float = 0.5, forget_bias: float = 0.0,
                 layers: str = "sublocal"):
        super().__init__(dict(locals()), num_classes, alphabet, encoding, embedding_dim, extra_features, layers)
        self.conv = make_conv(layers, self.encoder.out_channels, _positive("filters_per_width", filters_per_width),
                              widths, "relu")
        self.conv2 = make_conv(layers, filters_per_width * len(widths), _positive("second_filters", second_filters),
                               (_positive("second_width", second_width),), "relu")
        self.lstm = make_lstm(layers, second_filters, _positive("hidden_size", hidden_size))
        add_forget_bias(self.lstm, float(forget_bias))
        self.head = _head(2 * hidden_size, _positive("dense_size", dense_size), num_classes,
                          _probability("dropout", dropout))

    def pool(self, x, lengths):
        y = self.conv2(self.conv(x, lengths), lengths)
        _, h_n = run_lstm(self.lstm, y, lengths, sequences=False)
        return torch.cat([h_n[-2], h_n[-1]], dim=-1), None

    def first_conv(self):
        return self.conv


def _pooling(layers: str, pooling: str, size: int, attention_size: int) -> nn.Module | None:
    if pooling == "attention":
        return make_attention(layers, size, _positive("attention_size", attention_size))
    if pooling == "mean":
        return None
    raise ValueError(f"`pooling` must be 'attention' or 'mean', got {pooling!r}")


class QRNNClassifier(SequenceClassifier):
    """Stacked (optionally bidirectional) QRNN layers -> attention or mean pooling -> dense ->
    classes: for long RNA sequences, where a QRNN's parallel recurrence scales to 30000+ steps."""

    name = "qrnn"

    def __init__(self, num_classes: int, alphabet: str = "nucleotide", encoding: str = "onehot",
                 embedding_dim: int = 32, extra_features: int = 0, hidden_size: int = 256, num_layers: int = 2,
                 window: int = 2, bidirectional: bool = True, pooling: str = "attention", attention_size: int = 400,
                 dense_size: int = 256, dropout: float = 0.5, layers: str = "sublocal"):
        super().__init__(dict(locals()), num_classes, alphabet, encoding, embedding_dim, extra_features, layers)
        self.qrnn = make_qrnn(layers, self.encoder.out_channels, _positive("hidden_size", hidden_size),
                              _positive("num_layers", num_layers), _positive("window", window), bool(bidirectional))
        size = hidden_size * (2 if bidirectional else 1)
        self.dropout = nn.Dropout(_probability("dropout", dropout))
        self.attention = _pooling(layers, pooling, size, attention_size)
        self.head = _head(size, _positive("dense_size", dense_size), num_classes, dropout)

    def pool(self, x, lengths):
        h = self.dropout(run_qrnn(self.qrnn, x, lengths))
        if self.attention is None:
            return masked_mean(h, lengths), None
        return self.attention(h, lengths)


class TCNClassifier(SequenceClassifier):
    """A temporal convolutional network: ``num_levels`` residual blocks of a dilated causal
    conv (dilations 1, 2, 4, ..., ReLU, dropout), then attention or mean pooling -> dense ->
    classes. The receptive field is ``1 + (kernel_size - 1) * (2**num_levels - 1)`` steps."""

    name = "tcn"

    def __init__(self, num_classes: int, alphabet: str = "nucleotide", encoding: str = "onehot",
                 embedding_dim: int = 32, extra_features: int = 0, channels: int = 64, num_levels: int = 8,
                 kernel_size: int = 3, pooling: str = "mean", attention_size: int = 400, dense_size: int = 128,
                 dropout: float = 0.5, layers: str = "sublocal"):
        super().__init__(dict(locals()), num_classes, alphabet, encoding, embedding_dim, extra_features, layers)
        _positive("channels", channels)
        self.blocks = nn.ModuleList()
        self.skips = nn.ModuleList()
        size = self.encoder.out_channels
        for level in range(_positive("num_levels", num_levels)):
            self.blocks.append(make_conv(layers, size, channels, (_positive("kernel_size", kernel_size),), "relu",
                                         causal=True, dilation=2 ** level))
            # A 1x1 projection where the residual changes width (the first block only).
            self.skips.append(nn.Linear(size, channels, bias=False) if size != channels else nn.Identity())
            size = channels
        self.dropout = nn.Dropout(_probability("dropout", dropout))
        self.attention = _pooling(layers, pooling, channels, attention_size)
        self.head = _head(channels, _positive("dense_size", dense_size), num_classes, dropout)

    def pool(self, x, lengths):
        for block, skip in zip(self.blocks, self.skips):
            x = skip(x) + self.dropout(block(x, lengths))
        if self.attention is None:
            return masked_mean(x, lengths), None
        return self.attention(x, lengths)

    def first_conv(self):
        return self.blocks[0]
