"""A drop-in for ``torch.nn.LSTM`` that runs the packed variable-length kernel."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .._checks import ArgChecker
from ..ops.lstm import CELLS, lstm, weight_names
from ..ops.lstm.reference import cell_weight_count


class LSTM(nn.Module):
    """Multi-layer (bidirectional) LSTM over variable-length batches, with no work on padding.

    The constructor, parameter names (``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` and their ``_reverse`` twins), initialisation, ``state_dict`` keys and
    return values are those of ``torch.nn.LSTM``, so ``load_state_dict`` works both ways; only
    the defaults differ (``batch_first=True``, ``bidirectional=True``). Each layer is one call of
    :func:`sublocal_kernels.lstm`; ``dropout`` applies to every layer's output but the last
    (training mode only), as in ``nn.LSTM``.

    ``forward(input, lengths=None, hx=None)``:
        - ``input`` a ``PackedSequence``: returns ``(PackedSequence, (h_n, c_n))`` packed like
          the input (same ``batch_sizes`` and ``sorted_indices``), exactly as ``nn.LSTM``.
        - ``input`` a tensor ``(B, T, C)`` (``(T, B, C)`` when ``batch_first=False``;
          ``(T, C)`` unbatched) with ``lengths`` ``(B,)`` int in ``[1, T]`` on any device, or
          None for all ``T``: returns ``(out, (h_n, c_n))``, ``out`` ``(B, T, D * H)`` zero at
          padded positions.
        - ``hx = (h0, c0)``, each ``(num_layers * D, B, H)``, or None (zeros). As in
          ``nn.LSTM``, it may also be given as the second positional argument.
        ``h_n``, ``c_n``: ``(num_layers * D, B, H)``, layer-major, each direction's state after
        the sequence's last valid step.
        - ``return_sequences=False`` (keyword): the last layer computes no output and ``out``
          is None, for a classifier on the final states (see :func:`sublocal_kernels.lstm`);
          ``"mean"``: ``out`` is the last layer's ``(B, D * H)`` mean over each sequence's
          valid steps (a ``PackedSequence`` input too), which without a gradient never holds
          the per-step states.

    Example::

        >>> layer = LSTM(20, 64, num_layers=2, dropout=0.1)
        >>> x, lengths = torch.randn(3, 50, 20), torch.tensor([50, 7, 1])
        >>> out, (h_n, c_n) = layer(x, lengths)
        >>> out.shape, h_n.shape
        (torch.Size([3, 50, 128]), torch.Size([4, 3, 64]))
        >>> ref = torch.nn.LSTM(20, 64, num_layers=2, batch_first=True, bidirectional=True)
        >>> ref.load_state_dict(layer.state_dict())
        <All keys matched successfully>

    Equivalent to: ``torch.nn.LSTM(input_size, hidden_size, num_layers, bias, batch_first,
    dropout, bidirectional)`` on ``pack_padded_sequence(x, lengths, batch_first=True,
    enforce_sorted=False)``.

    ``cell="mlstm"`` makes every layer UniRep's multiplicative LSTM (``m_t = (W_mx x_t) *
    (W_mh h_{t-1})`` feeds ``W_hh`` instead of ``h_{t-1}``; see :func:`sublocal_kernels.lstm`).
    Each layer then also has ``weight_mx_l{k}`` ``(H, input)`` and ``weight_mh_l{k}`` ``(H, H)``
    (and ``_reverse`` twins), registered after the layer's biases; PyTorch has no such module
    to load into. ``LSTM(10, 1900, bidirectional=False, cell="mlstm")`` is UniRep's layer.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = True,
                 device=None, dtype=None, cell: str = "lstm"):
        super().__init__()
        chk = ArgChecker("LSTM")
        if cell not in CELLS:
            chk.fail(f"`cell` must be one of {', '.join(map(repr, CELLS))}, got {cell!r}")
        self.cell = cell
        for name, value, low in (("input_size", input_size, 1), ("hidden_size", hidden_size, 1),
                                 ("num_layers", num_layers, 1)):
            if not isinstance(value, int) or isinstance(value, bool):
                chk.fail(f"`{name}` must be an int, got {type(value).__name__}", TypeError)
            if value < low:
                chk.fail(f"`{name}` must be >= {low}, got {value}")
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            chk.fail(f"`dropout` must be a number in [0, 1], got {dropout!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        D = 2 if bidirectional else 1
        factory = {"device": device, "dtype": dtype}
        # Registration order is nn.LSTM's, so parameters() and state_dict() line up with it.
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * D
            shapes = {"weight_ih": (4 * hidden_size, layer_input), "weight_hh": (4 * hidden_size, hidden_size),
                      "bias_ih": (4 * hidden_size,), "bias_hh": (4 * hidden_size,),
                      "weight_mx": (hidden_size, layer_input), "weight_mh": (hidden_size, hidden_size)}
            for name in weight_names(self.bidirectional, self.bias, layer, self.cell):
                setattr(self, name, nn.Parameter(torch.empty(shapes[name.split("_l")[0]], **factory)))
        self.reset_parameters()

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def reset_parameters(self) -> None:
        """``nn.LSTM``'s initialisation: every weight and bias uniform in ``[-1/sqrt(H), 1/sqrt(H)]``.

        The mLSTM's ``weight_mx`` is uniform in ``[-1/sqrt(input), 1/sqrt(input)]`` instead (as an
        ``nn.Linear`` of that input), so ``W_mx x_t`` is of order one per unit even for a small
        residue embedding (UniRep's is 10 wide, where ``1/sqrt(H)`` would shrink ``m_t`` by
        ``sqrt(10 / 1900)``); ``W_hh`` then reads an ``m_t`` of the size of ``W_mh h_{t-1}``.
        """
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, weight in self.named_parameters():
            b = 1.0 / math.sqrt(weight.shape[1]) if name.startswith("weight_mx") else bound
            nn.init.uniform_(weight, -b, b)

    def layer_weights(self, layer: int) -> list[torch.Tensor]:
        """Layer ``layer``'s tensors in the order :func:`sublocal_kernels.lstm` takes them."""
        return [getattr(self, name) for name in weight_names(self.bidirectional, self.bias, layer, self.cell)]

    @property
    def all_weights(self) -> list[list[torch.Tensor]]:
        """As ``nn.LSTM.all_weights``: per layer and direction, its weights in order."""
        per = cell_weight_count(self.cell, self.bias)
        out = []
        for layer in range(self.num_layers):
            w = self.layer_weights(layer)
            out += [w[d * per:(d + 1) * per] for d in range(self.num_directions)]
        return out

    def flatten_parameters(self) -> None:
        """No-op (``nn.LSTM`` compatibility): the kernels read the parameters where they are."""

    def forward(self, input, lengths=None, hx=None, *, return_sequences: bool = True):
        chk = ArgChecker("LSTM")
        # nn.LSTM's forward(input, hx): a (h0, c0) pair in the second position is hx.
        if hx is None and isinstance(lengths, tuple) and len(lengths) == 2 and all(
                isinstance(t, torch.Tensor) and t.dim() >= 2 for t in lengths):
            lengths, hx = None, lengths
        packed = isinstance(input, PackedSequence)
        unbatched = False
        if packed:
            if lengths is not None:
                chk.fail("`lengths` must be None when `input` is a PackedSequence (it carries its lengths)")
            x, lens = pad_packed_sequence(input, batch_first=True)
            lens = lens.to(x.device, non_blocking=True)
        else:
            if not isinstance(input, torch.Tensor):
                chk.fail(f"`input` must be a torch.Tensor or a PackedSequence, got {type(input).__name__}", TypeError)
            if input.dim() == 2:
                unbatched = True
                x = input.unsqueeze(0)
            elif input.dim() == 3:
                x = input if self.batch_first else input.transpose(0, 1)
            else:
                chk.fail(f"`input` must have 3 dimensions ({'B, T, C' if self.batch_first else 'T, B, C'}) "
                         f"or 2 (T, C) unbatched, got shape {tuple(input.shape)}")
            lens = lengths
        if x.shape[-1] != self.input_size:
            chk.fail(f"`input` must have {self.input_size} features (input_size), got {x.shape[-1]}")
        B = x.shape[0]
        LD = self.num_layers * self.num_directions
        h0 = c0 = None
        if hx is not None:
            if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                chk.fail(f"`hx` must be a pair (h0, c0), got {type(hx).__name__}", TypeError)
            h0, c0 = hx
            if unbatched:
                h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)
            for name, t in (("h0", h0), ("c0", c0)):
                chk.like(f"hx {name}", t, "input", x, shape=(LD, B, self.hidden_size),
                         dims="(num_layers * num_directions, B, H)")
        D = self.num_directions
        out = x
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            sl = slice(layer * D, (layer + 1) * D)
            last = layer == self.num_layers - 1
            out, h, c = lstm(out, lens, self.layer_weights(layer), h0[sl] if h0 is not None else None,
                             c0[sl] if c0 is not None else None, self.bidirectional, self.cell,
                             return_sequences=return_sequences if last else True)
            h_n.append(h)
            c_n.append(c)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                out = F.dropout(out, self.dropout, training=True)
        h_n = torch.cat(h_n, 0)
        c_n = torch.cat(c_n, 0)
        if out is None:  # return_sequences=False: the last layer computed no output
            return None, (h_n.squeeze(1), c_n.squeeze(1)) if unbatched else (h_n, c_n)
        if return_sequences == "mean":  # (B, D H) whatever the input's layout
            return (out.squeeze(0), (h_n.squeeze(1), c_n.squeeze(1))) if unbatched else (out, (h_n, c_n))
        if packed:
            return self._pack_like(out, input), (h_n, c_n)
        if unbatched:
            return out.squeeze(0), (h_n.squeeze(1), c_n.squeeze(1))
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, (h_n, c_n)

    @staticmethod
    def _pack_like(out: torch.Tensor, like: PackedSequence) -> PackedSequence:
        """``out`` (B, T, F) packed with ``like``'s batch_sizes and sorted_indices."""
        batch_sizes = like.batch_sizes
        ranks = torch.arange(int(batch_sizes[0]))
        sorted_lengths = (batch_sizes[None, :] > ranks[:, None]).sum(1)  # (B,) longest first, CPU
        if like.sorted_indices is not None:
            out = out.index_select(0, like.sorted_indices)
        data = pack_padded_sequence(out, sorted_lengths, batch_first=True, enforce_sorted=True).data
        return PackedSequence(data, batch_sizes, like.sorted_indices, like.unsorted_indices)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, bias={self.bias}, "
                f"batch_first={self.batch_first}, dropout={self.dropout}, bidirectional={self.bidirectional}"
                + (f", cell={self.cell!r}" if self.cell != "lstm" else ""))
