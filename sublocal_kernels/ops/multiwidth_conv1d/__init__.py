"""Multi-width conv1d: a bank of 1D convolutions of several widths in one fused pass."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..._checks import ArgChecker
from .._common import lengths_second
from . import register as _register  # noqa: F401  (fake, autograd and CUDA kernels)
from .reference import _legacy_order, multiwidth_conv1d_ref, window

__all__ = ["multiwidth_conv1d", "multiwidth_conv1d_ref", "window"]

ACTIVATIONS = ("relu", "tanh", "sigmoid", None)


@lengths_second(_legacy_order)
def multiwidth_conv1d(
    x: torch.Tensor,
    lengths: torch.Tensor | Sequence[int] | None,
    weights: Sequence[torch.Tensor],
    bias: Sequence[torch.Tensor] | None = None,
    activation: str | None = "relu",
    causal: bool = False,
    dilation: int = 1,
    reverse: bool = False,
) -> torch.Tensor:
    """Every width of a bank of 1D convolutions over variable-length sequences, in one pass.

    ``y[b, t, col_i + f] = act(bias[i][f] + sum_{c, j} weights[i][f, c, j] * x[b, t + (j - left_i) * dilation, c])``
    for every width ``i``, where ``col_i = F_0 + ... + F_{i-1}`` and ``x`` reads as zero before
    position 0 and at or past the sequence's length.

    Args:
        x: ``(B, T, C)`` float16/bfloat16/float32/float64, batch first, channels last.
        lengths: ``(B,)`` int32/int64 (any device, or a list of ints) with values in
            ``[1, T]``, or None (all ``T``). Each sequence is convolved as if it ended at its
            own length: inputs at or past ``lengths[b]`` count as zero (exactly like
            ``nn.Conv1d`` run on that sequence alone) and outputs there are zero.
        weights: a list of ``(F_i, C, k_i)`` tensors (``nn.Conv1d.weight`` layout), same dtype
            and device as ``x``; any number of widths, any ``k_i >= 1``, odd or even.
        bias: a list of ``(F_i,)`` tensors, one per width, or None.
        activation: ``"relu"``, ``"tanh"``, ``"sigmoid"`` (fused; the QRNN's gates) or None.
        causal: position ``t`` sees ``t - (k_i - 1) * dilation ... t`` (QRNN, dilated TCN);
            otherwise ('same') ``t - (k_i // 2) * dilation ... t + ((k_i - 1) // 2) * dilation``
            (an even width has one more tap on the left than on the right).
        dilation: spacing of the taps, an int ``>= 1``.
        reverse: read every sequence backwards, as ``fo_pool``'s ``reverse`` does: the result
            is that of flipping each sequence within its length, convolving and flipping back
            (the backward direction of a bidirectional QRNN). A causal window then sees
            ``t ... t + (k_i - 1) * dilation`` (never past the length), with tap ``j`` at
            ``t + (k_i - 1 - j) * dilation``.

    Returns:
        ``y``: ``(B, T, sum F_i)`` in the input dtype, the widths' outputs concatenated in
        order, zero at positions at or past each sequence's length.

    Accumulates in float32 for float16/bfloat16 inputs (float64 for float64). Gradients flow
    to ``x``, every weight and every bias; the backward recomputes the ReLU mask from ``y``.

    ``lengths`` comes second, as in every op; the old order ``(x, weights, bias, lengths, ...)``
    still works and warns (``DeprecationWarning``).

    Equivalent to: :func:`multiwidth_conv1d_ref`; with all lengths ``T`` and odd widths,
    ``relu(cat([nn.Conv1d(C, F_i, k_i, padding=k_i // 2)(x.transpose(1, 2)) ...], 1)).transpose(1, 2)``.

    Example::

        >>> import torch, sublocal_kernels as sk
        >>> x = torch.randn(3, 50, 20)                  # 3 sequences, padded to 50, 20 channels
        >>> weights = [torch.randn(10, 20, k, requires_grad=True) for k in (1, 3, 5, 9, 15, 21)]
        >>> y = sk.multiwidth_conv1d(x, torch.tensor([50, 17, 1]), weights)
        >>> y.shape, bool((y[1, 17:] == 0).all())
        (torch.Size([3, 50, 60]), True)
        >>> y.sum().backward()
    """
    chk = ArgChecker("multiwidth_conv1d")
    chk.tensor("x", x, 3, dims="(B, T, C)")
    B, T, C = x.shape
    if not isinstance(weights, (list, tuple)):
        chk.fail(f"`weights` must be a list or tuple of (F_i, C, k_i) tensors, got {type(weights).__name__}",
                 TypeError)
    if len(weights) == 0:
        chk.fail("`weights` must hold at least one (F_i, C, k_i) tensor, got an empty list")
    for i, w in enumerate(weights):
        chk.tensor(f"weights[{i}]", w, 3, dims="(F_i, C, k_i)")
        chk.like(f"weights[{i}]", w, "x", x, shape=(w.shape[0], C, w.shape[2]), dims="(F_i, C, k_i)")
        if w.shape[2] < 1:
            chk.fail(f"`weights[{i}]` must have a kernel width k_i >= 1, got shape {tuple(w.shape)}")
    if bias is not None:
        if not isinstance(bias, (list, tuple)):
            chk.fail(f"`bias` must be None or a list or tuple of (F_i,) tensors, got {type(bias).__name__}",
                     TypeError)
        if len(bias) != len(weights):
            chk.fail(f"`bias` must hold one (F_i,) tensor per width: expected {len(weights)}, got {len(bias)}")
        for i, (b, w) in enumerate(zip(bias, weights)):
            chk.like(f"bias[{i}]", b, "x", x, shape=(w.shape[0],), dims="(F_i,)")
    if activation not in ACTIVATIONS:
        exc = ValueError if isinstance(activation, str) else TypeError
        chk.fail(f"`activation` must be \"relu\", \"tanh\", \"sigmoid\" or None, got {activation!r}", exc)
    if not isinstance(causal, bool):
        chk.fail(f"`causal` must be a bool, got {type(causal).__name__}", TypeError)
    if not isinstance(reverse, bool):
        chk.fail(f"`reverse` must be a bool, got {type(reverse).__name__}", TypeError)
    if isinstance(dilation, bool) or not isinstance(dilation, int):
        chk.fail(f"`dilation` must be an int, got {type(dilation).__name__}", TypeError)
    if dilation < 1:
        chk.fail(f"`dilation` must be >= 1, got {dilation}")
    lengths = chk.lengths(lengths, "x", x)
    bias_cat = torch.cat(list(bias)) if bias is not None else None
    return torch.ops.sublocal.multiwidth_conv1d_fwd(
        x, lengths, list(weights), bias_cat, activation or "none", causal, reverse, dilation
    )
