"""``AttentionPool``: the A-LSTM attention layer over the fused op."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from ..ops.attention_pool import attention_pool


class AttentionPool(nn.Module):
    """Additive attention pooling over variable-length sequences (the A-LSTM attention layer).

    ``e_t = tanh(h_t W_a + b_a) . v_a``; ``alpha = softmax(e)`` over each sequence's valid steps;
    ``context = sum_t alpha_t h_t``. Calls :func:`sublocal_kernels.attention_pool`.

    Args:
        input_size: ``D``, the size of each hidden state (512 for a bidirectional LSTM with 256
            units per direction).
        attention_size: ``A``, the attention hidden size (400 in the paper).
        bias: learn ``b_a``.

    Parameters are initialised as the equivalent ``nn.Linear(D, A)`` (``w_a``, stored as its
    ``(D, A)`` transpose, and ``b_a``) followed by ``nn.Linear(A, 1, bias=False)`` (``v_a``):
    uniform in ``+-1/sqrt(fan_in)``.

    Shapes: ``forward(h, lengths)`` with ``h`` ``(B, T, D)`` and ``lengths`` ``(B,)`` in
    ``[1, T]`` (or None for all ``T``) returns ``(context, alpha)``: ``(B, D)`` and ``(B, T)``,
    ``alpha`` zero at padded steps. ``h`` may also be a ``PackedSequence`` (what ``nn.LSTM``
    returns for packed input), with ``lengths`` None: it is padded batch-first, in the
    original batch order.

    Example::

        >>> pool = AttentionPool(6, attention_size=5)
        >>> context, alpha = pool(torch.randn(2, 4, 6), torch.tensor([4, 2]))
        >>> context.shape, alpha.shape
        (torch.Size([2, 6]), torch.Size([2, 4]))
    """

    def __init__(self, input_size: int, attention_size: int = 400, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        for name, value in (("input_size", input_size), ("attention_size", attention_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"AttentionPool: `{name}` must be a positive int, got {value!r}")
        factory = {"device": device, "dtype": dtype}
        self.input_size = input_size
        self.attention_size = attention_size
        self.w_a = nn.Parameter(torch.empty(input_size, attention_size, **factory))
        self.v_a = nn.Parameter(torch.empty(attention_size, **factory))
        if bias:
            self.b_a = nn.Parameter(torch.empty(attention_size, **factory))
        else:
            self.register_parameter("b_a", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.input_size)
        nn.init.uniform_(self.w_a, -bound, bound)
        if self.b_a is not None:
            nn.init.uniform_(self.b_a, -bound, bound)
        nn.init.uniform_(self.v_a, -1.0 / math.sqrt(self.attention_size), 1.0 / math.sqrt(self.attention_size))

    def forward(self, h: torch.Tensor | PackedSequence, lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(h, PackedSequence):
            if lengths is not None:
                raise ValueError("AttentionPool: `lengths` must be None when `h` is a PackedSequence "
                                 "(the lengths come from the PackedSequence)")
            h, lengths = pad_packed_sequence(h, batch_first=True)
        return attention_pool(h, lengths, self.w_a, self.v_a, self.b_a)

    def extra_repr(self) -> str:
        return f"{self.input_size}, attention_size={self.attention_size}, bias={self.b_a is not None}"
