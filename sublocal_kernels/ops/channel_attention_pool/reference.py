"""Plain-PyTorch reference for channel-wise attention pooling: the oracle every kernel is tested against."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..._checks import compute_dtype


def channel_attention_pool_ref(
    values: torch.Tensor,
    logits: torch.Tensor,
    lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Channel-wise attention pooling and max-pooling over each sequence's valid steps.

    Args:
        values: ``(B, T, D)`` float, the pooled features.
        logits: ``(B, T, D)`` float, one attention logit per step and channel.
        lengths: ``(B,)`` int in ``[1, T]``, or None (every sequence has length ``T``); steps at
            or past a sequence's length are padding.

    Returns:
        ``context``: ``(B, D)``, ``sum_t alpha[b, t, d] values[b, t, d]`` over the valid steps.
        ``maxpool``: ``(B, D)``, ``max_t values[b, t, d]`` over the valid steps (its gradient
        goes to the step ``torch.max`` returns).
        ``alpha``: ``(B, T, D)``, a softmax of ``logits`` over the valid steps taken separately
        for every channel, exactly 0 at padded positions.

    Computes in float64 for float64 inputs and in float32 otherwise, and casts the results back.

    Equivalent to: ``alpha = F.softmax(logits.masked_fill(pad, -inf), dim=1)``; ``context =
    (alpha * values).sum(1)``; ``maxpool = values.masked_fill(pad, -inf).max(1).values`` (the
    pooling of the Light Attention localization model).

    Example::

        >>> B, T, D = 2, 5, 3
        >>> v, e = torch.randn(B, T, D), torch.randn(B, T, D)
        >>> context, maxpool, alpha = channel_attention_pool_ref(v, e, torch.tensor([5, 2]))
        >>> context.shape, bool((alpha[1, 2:] == 0).all()), bool(torch.allclose(alpha.sum(1), torch.ones(B, D)))
        (torch.Size([2, 3]), True, True)
    """
    dtype = values.dtype
    cd = compute_dtype(dtype)
    B, T, _ = values.shape
    vc, lc = values.to(cd), logits.to(cd)
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.int64)
    padded = (torch.arange(T, device=values.device)[None, :] >= lengths.to(values.device)[:, None])[:, :, None]
    # softmax subtracts each column's maximum, so large logits cannot overflow; every sequence
    # has at least one valid step (lengths >= 1), so no column is all -inf.
    alpha = F.softmax(lc.masked_fill(padded, float("-inf")), dim=1)
    context = (alpha * vc).sum(1)
    maxpool = vc.masked_fill(padded, float("-inf")).max(1).values
    return context.to(dtype), maxpool.to(dtype), alpha.to(dtype)
