"""Attention pooling: ``alpha = softmax_t(tanh(h_t W_a + b_a) . v_a)`` over valid steps, ``context = sum_t alpha_t h_t``."""

from __future__ import annotations

import torch

from ..._checks import ArgChecker
from .._common import grad_needed
from . import register as _register  # noqa: F401  (fake, autograd and CUDA kernels)
from .reference import attention_pool_ref

__all__ = ["attention_pool", "attention_pool_ref"]


def attention_pool(
    h: torch.Tensor,
    lengths: torch.Tensor | list[int] | None,
    w_a: torch.Tensor,
    v_a: torch.Tensor,
    b_a: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Additive attention pooling over variable-length sequences, fused, with a fused backward.

    Scores ``e_t = tanh(h_t W_a + b_a) . v_a``; weights ``alpha = softmax(e)`` over each
    sequence's valid steps only; ``context = sum_t alpha_t h_t``. The hidden states are read
    once per pass: no ``(B, T, A)`` tensor is materialised, and nothing is computed or kept for
    padded steps.

    Args:
        h: ``(B, T, D)`` float16/bfloat16/float32/float64, the hidden states.
        lengths: ``(B,)`` int32/int64 tensor (any device) or a list of ints, each in ``[1, T]``;
            steps at or past a sequence's length are padding and never scored. None means every
            sequence has length ``T``.
        w_a: ``(D, A)``, same dtype and device as ``h``, the scoring projection.
        v_a: ``(A,)``, the scoring vector.
        b_a: ``(A,)`` or None, the projection's bias.

    Returns:
        ``(context, alpha)``: ``context`` is ``(B, D)``; ``alpha`` is ``(B, T)``, summing to 1
        over each sequence's valid steps and exactly 0 at padded positions. Both in ``h``'s dtype.

    The softmax subtracts each sequence's maximum score (merged across blocks of steps with the
    usual ``exp(m_i - m)`` rescaling), so long sequences, length 1 and large score magnitudes
    give no overflow and no NaN. Products accumulate in float32 for float16/bfloat16 inputs
    (float64 for float64). Gradients flow to ``h``, ``w_a``, ``v_a`` and ``b_a``, from both
    outputs. When no gradient is needed (``torch.no_grad()``, ``torch.inference_mode()``, or no
    input requiring one) the CPU forward keeps no ``tanh`` activations for a backward.

    Equivalent to: :func:`attention_pool_ref`, i.e. ``nn.Linear(D, A)``, ``torch.tanh``, a
    product with ``v_a``, ``F.softmax`` with padded steps set to ``-inf``, and ``torch.bmm``.

    Example::

        >>> import torch, sublocal_kernels as sk
        >>> B, T, D, A = 3, 7, 4, 5
        >>> h = torch.randn(B, T, D, requires_grad=True)
        >>> w_a, v_a, b_a = torch.randn(D, A), torch.randn(A), torch.zeros(A)
        >>> context, alpha = sk.attention_pool(h, torch.tensor([7, 3, 1]), w_a, v_a, b_a)
        >>> context.shape, alpha.shape, alpha[2].tolist()
        (torch.Size([3, 4]), torch.Size([3, 7]), [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
        >>> context.sum().backward()
    """
    chk = ArgChecker("attention_pool")
    chk.tensor("h", h, 3, dims="(B, T, D)")
    D = h.shape[2]
    chk.tensor("w_a", w_a, 2, dims="(D, A)")
    A = w_a.shape[1]
    chk.like("w_a", w_a, "h", h, shape=(D, A), dims="(D, A)")
    chk.like("v_a", v_a, "h", h, shape=(A,), dims="(A,)")
    if b_a is not None:
        chk.like("b_a", b_a, "h", h, shape=(A,), dims="(A,)")
    lengths = chk.lengths(lengths, "h", h)
    if not grad_needed(h, w_a, v_a, b_a):
        return torch.ops.sublocal.attention_pool_infer(h, lengths, w_a, v_a, b_a)
    context, alpha, _ = torch.ops.sublocal.attention_pool_fwd(h, lengths, w_a, v_a, b_a)
    return context, alpha
