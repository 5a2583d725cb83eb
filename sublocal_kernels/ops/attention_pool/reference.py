"""Plain-PyTorch reference for attention pooling: the oracle every kernel is tested against."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..._checks import compute_dtype


def attention_pool_ref(
    h: torch.Tensor,
    lengths: torch.Tensor,
    w_a: torch.Tensor,
    v_a: torch.Tensor,
    b_a: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Additive attention pooling over each sequence's valid steps, as the textbook composition.

    Args:
        h: ``(B, T, D)`` float, the hidden states.
        lengths: ``(B,)`` int in ``[1, T]``; steps at or past a sequence's length are padding.
        w_a: ``(D, A)`` float, the scoring projection.
        v_a: ``(A,)`` float, the scoring vector.
        b_a: ``(A,)`` float or None, the projection's bias.

    Returns:
        ``context``: ``(B, D)``, ``sum_t alpha_t h_t`` over the valid steps.
        ``alpha``: ``(B, T)``, the attention weights: a softmax of the scores
        ``e_t = tanh(h_t W_a + b_a) . v_a`` over the valid steps, exactly 0 at padded positions.

    Computes in float64 for float64 inputs and in float32 otherwise, and casts the results back.

    Equivalent to: ``alpha = F.softmax((torch.tanh(nn.Linear(D, A)(h)) @ v_a).masked_fill(pad,
    -inf), dim=1)``; ``context = torch.bmm(alpha[:, None], h)[:, 0]`` (the attention layer of
    the A-LSTM localization model).

    Example::

        >>> B, T, D, A = 2, 5, 3, 4
        >>> h = torch.randn(B, T, D)
        >>> context, alpha = attention_pool_ref(h, torch.tensor([5, 2]), torch.randn(D, A), torch.randn(A))
        >>> context.shape, bool((alpha[1, 2:] == 0).all()), bool(torch.allclose(alpha.sum(1), torch.ones(B)))
        (torch.Size([2, 3]), True, True)
    """
    dtype = h.dtype
    cd = compute_dtype(dtype)
    B, T, _ = h.shape
    hc = h.to(cd)
    u = hc @ w_a.to(cd)
    if b_a is not None:
        u = u + b_a.to(cd)
    scores = torch.tanh(u) @ v_a.to(cd)  # (B, T)
    padded = torch.arange(T, device=h.device)[None, :] >= lengths.to(h.device)[:, None]
    # softmax subtracts each row's maximum, so large scores cannot overflow; every row has at
    # least one valid step (lengths >= 1), so no row is all -inf.
    alpha = F.softmax(scores.masked_fill(padded, float("-inf")), dim=1)
    context = torch.bmm(alpha[:, None, :], hc)[:, 0]
    return context.to(dtype), alpha.to(dtype)
