"""Channel-wise attention pooling: a softmax over valid steps for every channel, its weighted sum, and a max-pool."""

from __future__ import annotations

import torch

from ..._checks import ArgChecker
from . import register as _register  # noqa: F401  (fake, autograd and CUDA kernels)
from .reference import channel_attention_pool_ref

__all__ = ["channel_attention_pool", "channel_attention_pool_ref"]


def channel_attention_pool(
    values: torch.Tensor,
    logits: torch.Tensor,
    lengths: torch.Tensor | list[int] | None = None,
    return_alpha: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Channel-wise attention pooling with a max-pool, fused, with a fused backward.

    ``alpha[b, :, d]`` is a softmax of ``logits[b, :, d]`` over the sequence's valid steps,
    separately for every channel ``d``; ``context[b, d] = sum_t alpha[b, t, d] values[b, t, d]``;
    ``maxpool[b, d] = max_t values[b, t, d]`` over the valid steps. ``values`` and ``logits``
    are read once in the forward (an online softmax: a running maximum and a rescaled sum per
    channel), and only ``(B, D)`` statistics (the log-sum-exp and the arg-max step) are kept for
    the backward, which recomputes ``alpha`` from the logits. ``alpha``, as large as the inputs,
    is only written when ``return_alpha`` is set.

    Args:
        values: ``(B, T, D)`` float16/bfloat16/float32/float64, the pooled features.
        logits: ``(B, T, D)``, same dtype and device as ``values``, the attention logits.
        lengths: ``(B,)`` int32/int64 tensor (any device) or a list of ints, each in ``[1, T]``;
            steps at or past a sequence's length are padding and never read. None means every
            sequence has length ``T``.
        return_alpha: also return the ``(B, T, D)`` attention weights.

    Returns:
        ``(context, maxpool, alpha)``: ``context`` and ``maxpool`` are ``(B, D)``; ``alpha`` is
        ``(B, T, D)`` (summing to 1 over each sequence's valid steps, exactly 0 at padded
        positions) when ``return_alpha``, else None. All in ``values``' dtype.

    Accumulates in float32 for float16/bfloat16/float32 inputs (float64 for float64). Gradients
    flow to ``values`` and ``logits`` from every output; the max-pool's gradient goes to the
    arg-max step (the first one, on ties).

    Equivalent to: :func:`channel_attention_pool_ref`, i.e. ``F.softmax`` over ``dim=1`` with
    padded steps set to ``-inf``, ``(alpha * values).sum(1)`` and a masked ``max(1)``.

    Example::

        >>> import torch, sublocal_kernels as sk
        >>> B, T, D = 3, 7, 4
        >>> values = torch.randn(B, T, D, requires_grad=True)
        >>> logits = torch.randn(B, T, D, requires_grad=True)
        >>> context, maxpool, alpha = sk.channel_attention_pool(values, logits, torch.tensor([7, 3, 1]))
        >>> context.shape, maxpool.shape, alpha is None
        (torch.Size([3, 4]), torch.Size([3, 4]), True)
        >>> bool(torch.equal(context[2], values[2, 0])), bool(torch.equal(maxpool[2], values[2, 0]))
        (True, True)
        >>> (context.sum() + maxpool.sum()).backward()
    """
    chk = ArgChecker("channel_attention_pool")
    chk.tensor("values", values, 3, dims="(B, T, D)")
    chk.like("logits", logits, "values", values, dims="(B, T, D)")
    if not isinstance(return_alpha, bool):
        chk.fail(f"`return_alpha` must be a bool, got {type(return_alpha).__name__}", TypeError)
    lengths = chk.lengths(lengths, "values", values)
    context, maxpool, alpha, _, _ = torch.ops.sublocal.channel_attention_pool_fwd(values, logits, lengths, return_alpha)
    return context, maxpool, alpha if return_alpha else None
