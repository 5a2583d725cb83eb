"""Modules over fo-pool: the bare recurrence and the QRNN layer."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import ArgChecker
from ..ops.fo_pool import fo_pool
from ..ops.multiwidth_conv1d import multiwidth_conv1d


class FoPool(nn.Module):
    """QRNN fo-pooling as a module (no parameters); see :func:`sublocal_kernels.fo_pool`.

    ``forward(forget, z, output=None, lengths=None, initial=None) -> (h, c_last)`` with
    ``forget``, ``z``, ``output``: ``(B, T, D)``; ``lengths``: ``(B,)`` in ``[1, T]``.

    Example::

        >>> pool = FoPool()
        >>> f, z = torch.rand(2, 6, 4), torch.randn(2, 6, 4)
        >>> h, c = pool(f, z, lengths=torch.tensor([6, 3]))
    """

    def __init__(self, reverse: bool = False):
        super().__init__()
        self.reverse = reverse

    def forward(self, forget, z, output=None, lengths=None, initial=None):
        return fo_pool(forget, z, output, lengths, initial, self.reverse)

    def extra_repr(self) -> str:
        return f"reverse={self.reverse}"


class QRNN(nn.Module):
    """Quasi-recurrent layer stack: a width-``kernel_size`` causal convolution produces the
    candidate ``Z = tanh``, forget ``F = sigmoid`` and (optionally) output ``O = sigmoid``
    gates for every step at once, then fo-pooling runs the recurrence
    ``c_t = f_t c_{t-1} + (1 - f_t) z_t``, ``h_t = o_t c_t``.

    Args:
        input_size: features per step ``C``.
        hidden_size: ``H`` per direction.
        num_layers: stacked layers; layer ``i > 0`` reads layer ``i - 1``'s output.
        kernel_size: width ``k`` of the convolution over time (the QRNN paper uses 2; 1 gives
            a purely elementwise gate).
        bidirectional: add a direction that runs each sequence from its own last valid step
            back to step 0 (its convolution looks at the next ``k - 1`` steps, which read as
            zero past the sequence's end); outputs are concatenated, forward first.
        output_gate: fo-pooling (True) or f-pooling (False: ``h_t = c_t``).
        dropout: dropout on each layer's output except the last, as in ``nn.LSTM``.
        batch_first: ``x`` is ``(B, T, C)`` (default) or ``(T, B, C)``.

    ``forward(x, lengths=None, initial=None) -> (output, c_n)``:
        ``x``: ``(B, T, C)``; ``lengths``: ``(B,)`` int in ``[1, T]`` (None: all ``T``);
        ``initial``: ``(num_layers * num_directions, B, H)`` or None (zeros).
        ``output``: ``(B, T, num_directions * H)``, zero at padded positions;
        ``c_n``: ``(num_layers * num_directions, B, H)``, each direction's state after the
        sequence's last valid step (layer-major, forward direction first, as ``nn.LSTM``).

    Parameters ``weight_l{i}`` ``((2 or 3) * H, C_i, k)`` and ``bias_l{i}`` per layer, with a
    ``_reverse`` suffix for the backward direction, initialised as ``nn.Conv1d`` initialises
    its weight and bias. Gate order along the first dimension: z, f, o.

    Example::

        >>> layer = QRNN(5, 16, kernel_size=2, bidirectional=True)
        >>> x = torch.randn(3, 40, 5)
        >>> out, c_n = layer(x, lengths=torch.tensor([40, 12, 1]))
        >>> out.shape, c_n.shape
        (torch.Size([3, 40, 32]), torch.Size([2, 3, 16]))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, kernel_size: int = 2,
                 bidirectional: bool = False, output_gate: bool = True, dropout: float = 0.0,
                 batch_first: bool = True, device=None, dtype=None):
        super().__init__()
        for name, value, low in [("input_size", input_size, 1), ("hidden_size", hidden_size, 1),
                                 ("num_layers", num_layers, 1), ("kernel_size", kernel_size, 1)]:
            if not isinstance(value, int) or value < low:
                raise ValueError(f"QRNN: `{name}` must be an int >= {low}, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"QRNN: `dropout` must be in [0, 1), got {dropout!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.kernel_size = kernel_size
        self.bidirectional = bidirectional
        self.output_gate = output_gate
        self.dropout = dropout
        self.batch_first = batch_first
        self.num_directions = 2 if bidirectional else 1
        gates = 3 if output_gate else 2
        factory = {"device": device, "dtype": dtype}
        self._names = []
        for layer in range(num_layers):
            c_in = input_size if layer == 0 else hidden_size * self.num_directions
            for suffix in ([""] + (["_reverse"] if bidirectional else [])):
                w = nn.Parameter(torch.empty(gates * hidden_size, c_in, kernel_size, **factory))
                b = nn.Parameter(torch.empty(gates * hidden_size, **factory))
                self.register_parameter(f"weight_l{layer}{suffix}", w)
                self.register_parameter(f"bias_l{layer}{suffix}", b)
                self._names.append((f"weight_l{layer}{suffix}", f"bias_l{layer}{suffix}"))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Conv1d's initialisation: kaiming_uniform_(a=sqrt(5)) and a fan-in uniform bias.
        for wname, bname in self._names:
            w, b = getattr(self, wname), getattr(self, bname)
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            fan_in = w.shape[1] * w.shape[2]
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(b, -bound, bound)

    def _gates(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, reverse: bool, lengths):
        # x: (B, T, C). The width-k convolution is the multi-width conv op with one causal width,
        # channels last: tap j reads x[t - (k-1) + j]; reverse mirrors the window, tap j reads
        # x[t + (k-1) - j], and inputs at or past each sequence's length read as zero, so the
        # reverse direction never sees the padding. Length-0 sequences are passed as length 1
        # (the op's lengths are in [1, T]): fo-pool ignores every step of a length-0 sequence,
        # so that output and its (zero) gradient go nowhere.
        if lengths is not None:
            lengths = lengths.clamp(min=1)
        # One call per gate, so z, f and o come out contiguous: tanh and sigmoid on slices of one
        # (B, T, 3H) output ran 3x slower (strided elementwise), and the slices' backward added a
        # concatenation along the last dimension as long as the convolution's own backward. The
        # activation is fused into each call (applied to the tile it has just computed, and its
        # derivative taken from the kept output in the backward): eager tanh / sigmoid and their
        # backward were 14% of the QRNN classifier's training step at `paper`.
        H = self.hidden_size
        conv = lambda i, act: multiwidth_conv1d(  # noqa: E731
            x, lengths, [weight[i * H:(i + 1) * H]], [bias[i * H:(i + 1) * H]], activation=act, causal=True,
            reverse=reverse)
        z, f = conv(0, "tanh"), conv(1, "sigmoid")
        o = conv(2, "sigmoid") if self.output_gate else None
        return f, z, o

    def forward(self, x: torch.Tensor, lengths=None, initial: torch.Tensor | None = None):
        chk = ArgChecker("QRNN")
        chk.tensor("x", x, 3, dims="(B, T, C)" if self.batch_first else "(T, B, C)")
        if not self.batch_first:
            x = x.transpose(0, 1)
        B, T, C = x.shape
        if C != self.input_size:
            chk.fail(f"`x` must have {self.input_size} features (input_size), got {C}")
        lengths = chk.lengths(lengths, "x", x)
        n_states = self.num_layers * self.num_directions
        if initial is not None:
            chk.like("initial", initial, "x", x, shape=(n_states, B, self.hidden_size),
                     dims="(num_layers * num_directions, B, H)")
        finals = []
        out = x
        for layer in range(self.num_layers):
            outs = []
            for d, suffix in enumerate([""] + (["_reverse"] if self.bidirectional else [])):
                w, b = getattr(self, f"weight_l{layer}{suffix}"), getattr(self, f"bias_l{layer}{suffix}")
                f, z, o = self._gates(out, w, b, d == 1, lengths)
                init = initial[layer * self.num_directions + d] if initial is not None else None
                h, c = fo_pool(f, z, o, lengths, init, reverse=d == 1)
                outs.append(h)
                finals.append(c)
            out = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                out = F.dropout(out, self.dropout, training=True)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, torch.stack(finals, dim=0)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, kernel_size={self.kernel_size}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if not self.output_gate:
            s += ", output_gate=False"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if not self.batch_first:
            s += ", batch_first=False"
        return s
