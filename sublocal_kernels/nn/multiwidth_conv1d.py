"""MultiWidthConv1d: a bank of 1D convolutions of several widths as one layer over the fused op."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..ops.multiwidth_conv1d import ACTIVATIONS, multiwidth_conv1d, window


class MultiWidthConv1d(nn.Module):
    """Convolutions of several widths over the same channels-last sequence, concatenated.

    The opening layer of the convolutional LSTM localization models (widths 1, 3, 5, 9, 15 and
    21, 10 filters each, ReLU): one fused pass instead of six ``nn.Conv1d``, a ``torch.cat``, a
    ReLU and a mask (see :func:`sublocal_kernels.multiwidth_conv1d`).

    Args:
        in_channels: ``C``, the channels of the input.
        filters_per_width: filters of each width, an int (the same for all) or one int per width.
        widths: the kernel widths ``k_i`` (odd or even, any number of them).
        activation: ``"relu"``, ``"tanh"``, ``"sigmoid"`` or None (fused into the kernel).
        causal: position ``t`` sees ``t - (k - 1) * dilation ... t``; otherwise ('same')
            ``t - (k // 2) * dilation ... t + ((k - 1) // 2) * dilation``.
        dilation: spacing of the taps.
        bias: learn one bias per filter.
        reverse: read every sequence backwards (flip it within its length, convolve, flip
            back; causal then sees ``t ... t + (k - 1) * dilation``).

    Parameters ``weights[i]`` ``(F_i, C, k_i)`` and ``biases[i]`` ``(F_i,)`` are initialised as
    ``nn.Conv1d(C, F_i, k_i)`` initialises them (with the same random stream: the layer built
    after ``torch.manual_seed(s)`` holds the weights of ``[nn.Conv1d(C, F_i, k_i) for ...]`` built
    after the same seed). :meth:`from_conv1d` copies trained ``nn.Conv1d`` layers.

    Shapes: ``forward(x, lengths=None)`` takes ``x`` ``(B, T, C)`` and ``lengths`` ``(B,)`` int in
    ``[1, T]`` (or None) and returns ``(B, T, sum F_i)``, zero at or past each length.

    Example::

        >>> layer = MultiWidthConv1d(20)                      # 6 widths x 10 filters
        >>> x = torch.randn(4, 100, 20)
        >>> y = layer(x, lengths=torch.tensor([100, 80, 31, 1]))
        >>> y.shape
        torch.Size([4, 100, 60])
    """

    def __init__(
        self,
        in_channels: int,
        filters_per_width: int | Sequence[int] = 10,
        widths: Sequence[int] = (1, 3, 5, 9, 15, 21),
        activation: str | None = "relu",
        causal: bool = False,
        dilation: int = 1,
        bias: bool = True,
        reverse: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        widths = tuple(widths)
        if not widths or not all(isinstance(k, int) and k >= 1 for k in widths):
            raise ValueError(f"MultiWidthConv1d: `widths` must be a non-empty sequence of ints >= 1, got {widths}")
        if isinstance(filters_per_width, int):
            filters = (filters_per_width,) * len(widths)
        else:
            filters = tuple(filters_per_width)
            if len(filters) != len(widths):
                raise ValueError(f"MultiWidthConv1d: `filters_per_width` must be an int or one int per width "
                                 f"({len(widths)}), got {filters}")
        if not all(isinstance(f, int) and f >= 1 for f in filters):
            raise ValueError(f"MultiWidthConv1d: `filters_per_width` must be ints >= 1, got {filters_per_width}")
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"MultiWidthConv1d: `in_channels` must be an int >= 1, got {in_channels}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"MultiWidthConv1d: `activation` must be \"relu\", \"tanh\", \"sigmoid\" or None, "
                             f"got {activation!r}")
        if not isinstance(dilation, int) or isinstance(dilation, bool) or dilation < 1:
            raise ValueError(f"MultiWidthConv1d: `dilation` must be an int >= 1, got {dilation!r}")
        self.in_channels = in_channels
        self.filters = filters
        self.widths = widths
        self.activation = activation
        self.causal = bool(causal)
        self.reverse = bool(reverse)
        self.dilation = dilation
        factory = {"device": device, "dtype": dtype}
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.empty(f, in_channels, k, **factory)) for f, k in zip(filters, widths)])
        self.biases = nn.ParameterList([nn.Parameter(torch.empty(f, **factory)) for f in filters]) if bias else None
        self.reset_parameters()

    @property
    def out_channels(self) -> int:
        return sum(self.filters)

    def reset_parameters(self) -> None:
        """``nn.Conv1d``'s initialisation, width by width (weight, then bias)."""
        for i, w in enumerate(self.weights):
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            if self.biases is not None:
                fan_in = w.shape[1] * w.shape[2]
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(self.biases[i], -bound, bound)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return multiwidth_conv1d(
            x, lengths, list(self.weights), list(self.biases) if self.biases is not None else None,
            self.activation, self.causal, self.dilation, self.reverse)

    def extra_repr(self) -> str:
        filters = self.filters[0] if len(set(self.filters)) == 1 else self.filters
        return (f"{self.in_channels}, filters_per_width={filters}, widths={self.widths}, "
                f"activation={self.activation!r}, causal={self.causal}, dilation={self.dilation}, "
                f"bias={self.biases is not None}" + (", reverse=True" if self.reverse else ""))

    @classmethod
    def from_conv1d(cls, convs: Sequence[nn.Conv1d], activation: str | None = "relu",
                    causal: bool = False) -> "MultiWidthConv1d":
        """The layer computing what ``convs`` compute on a ``(B, C, T)`` input, concatenated.

        Copies the weights and biases of ``nn.Conv1d`` layers that share ``in_channels`` and
        dilation, with stride 1, ``groups=1`` and zero padding, so a trained model swaps in
        without retraining (transpose its input to channels-last). The padding must give each
        conv this layer's alignment:

        - ``causal=False``: odd widths with ``padding=(k // 2) * dilation`` or ``"same"``. (For
          an even width ``nn.Conv1d(padding="same")`` puts the extra tap on the right; this
          layer puts it on the left, so it is refused rather than silently shifted.)
        - ``causal=True``: ``padding=(k - 1) * dilation`` (the ``conv(x)[..., :T]`` idiom) or
          ``padding=0`` (the ``conv(F.pad(x, ((k - 1) * dilation, 0)))`` idiom).
        """
        convs = list(convs)
        if not convs:
            raise ValueError("MultiWidthConv1d.from_conv1d: `convs` must hold at least one nn.Conv1d, got none")
        for i, conv in enumerate(convs):
            if not isinstance(conv, nn.Conv1d):
                raise TypeError(f"MultiWidthConv1d.from_conv1d: `convs[{i}]` must be an nn.Conv1d, "
                                f"got {type(conv).__name__}")
        first = convs[0]
        dilation = first.dilation[0]
        for i, conv in enumerate(convs):
            where = f"MultiWidthConv1d.from_conv1d: `convs[{i}]`"
            if conv.in_channels != first.in_channels:
                raise ValueError(f"{where} has in_channels={conv.in_channels}, but `convs[0]` has "
                                 f"{first.in_channels}; they must match")
            if conv.dilation[0] != dilation:
                raise ValueError(f"{where} has dilation={conv.dilation[0]}, but `convs[0]` has {dilation}; "
                                 "they must match")
            if conv.stride[0] != 1 or conv.groups != 1 or conv.padding_mode != "zeros":
                raise ValueError(f"{where} must have stride=1, groups=1 and padding_mode='zeros', got "
                                 f"stride={conv.stride[0]}, groups={conv.groups}, padding_mode={conv.padding_mode!r}")
            if (conv.bias is None) != (first.bias is None):
                raise ValueError(f"{where}: either every conv has a bias or none has")
            k = conv.kernel_size[0]
            pad = conv.padding if isinstance(conv.padding, str) else conv.padding[0]
            if causal:
                ok = pad in ((k - 1) * dilation, 0)
                expected = f"padding={(k - 1) * dilation} or 0"
            else:
                ok = k % 2 == 1 and pad in ("same", window(k, False)[0] * dilation)
                expected = (f"padding={window(k, False)[0] * dilation} or 'same'" if k % 2 else
                            "an odd width (an even width's 'same' padding leans right, this layer's leans left)")
            if not ok:
                raise ValueError(f"{where} (kernel_size={k}, dilation={dilation}, padding={pad!r}) does not have "
                                 f"this layer's {'causal' if causal else 'same'} alignment: expected {expected}")
        layer = cls(first.in_channels, [c.out_channels for c in convs], [c.kernel_size[0] for c in convs],
                    activation=activation, causal=causal, dilation=dilation, bias=first.bias is not None,
                    device=first.weight.device, dtype=first.weight.dtype)
        with torch.no_grad():
            for i, conv in enumerate(convs):
                layer.weights[i].copy_(conv.weight)
                if conv.bias is not None:
                    layer.biases[i].copy_(conv.bias)
        return layer
