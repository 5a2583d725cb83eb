"""``ChannelAttentionPool``: Light Attention's pooling over the fused op."""

from __future__ import annotations

import torch
from torch import nn

from ..ops.channel_attention_pool import channel_attention_pool


class ChannelAttentionPool(nn.Module):
    """Channel-wise attention pooling joined with a max-pool (the Light Attention pooling).

    ``alpha[b, :, d]`` is a softmax of ``logits[b, :, d]`` over each sequence's valid steps,
    separately per channel; ``context = sum_t alpha values``; ``maxpool = max_t values`` over the
    valid steps. Calls :func:`sublocal_kernels.channel_attention_pool`; it has no parameters
    (the logits come from the layer before it).

    Shapes: ``forward(values, logits, lengths=None, return_alpha=False)`` with ``values`` and
    ``logits`` ``(B, T, D)`` and ``lengths`` ``(B,)`` in ``[1, T]`` (or None for all ``T``)
    returns ``(context, maxpool, alpha)``: ``(B, D)``, ``(B, D)`` and ``(B, T, D)`` (zero at
    padded steps) when ``return_alpha``, else None.

    Example::

        >>> pool = ChannelAttentionPool()
        >>> context, maxpool, alpha = pool(torch.randn(2, 4, 6), torch.randn(2, 4, 6), torch.tensor([4, 2]))
        >>> context.shape, maxpool.shape, alpha
        (torch.Size([2, 6]), torch.Size([2, 6]), None)
    """

    def forward(self, values: torch.Tensor, logits: torch.Tensor, lengths: torch.Tensor | None = None,
                return_alpha: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        return channel_attention_pool(values, logits, lengths, return_alpha)
