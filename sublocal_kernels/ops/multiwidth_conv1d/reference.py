"""Plain-PyTorch reference for multi-width conv1d: the oracle every kernel is tested against."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..._checks import compute_dtype
from .._common import lengths_second


def window(kernel_size: int, causal: bool, reverse: bool = False) -> tuple[int, int]:
    """Taps before and after the output position for a width: ``(left, right)``, in taps.

    'same': ``(k // 2, (k - 1) // 2)``, so an even width leans left; causal: ``(k - 1, 0)``.
    ``reverse`` (the sequence read backwards) swaps the two. Multiply by the dilation for
    positions.
    """
    left, right = (kernel_size - 1, 0) if causal else (kernel_size // 2, (kernel_size - 1) // 2)
    return (right, left) if reverse else (left, right)


def _legacy_order(x, weights, bias=None, lengths=None, activation="relu", causal=False, dilation=1,
                  reverse=False):
    """The argument order before ``lengths`` moved to second place (signature only)."""


@lengths_second(_legacy_order)
def multiwidth_conv1d_ref(
    x: torch.Tensor,
    lengths: torch.Tensor | Sequence[int] | None,
    weights: Sequence[torch.Tensor],
    bias: Sequence[torch.Tensor] | None = None,
    activation: str | None = "relu",
    causal: bool = False,
    dilation: int = 1,
    reverse: bool = False,
) -> torch.Tensor:
    """A bank of 1D convolutions of several widths over variable-length sequences, one
    ``F.conv1d`` per width.

    Args:
        x: ``(B, T, C)`` float, batch first, channels last.
        lengths: ``(B,)`` int in ``[1, T]`` (a tensor or a list of ints), or None (all ``T``).
            Inputs at or past a sequence's length count as zero, exactly as if the sequence
            were convolved alone.
        weights: one ``(F_i, C, k_i)`` tensor per width (``nn.Conv1d.weight`` layout).
        bias: one ``(F_i,)`` tensor per width, or None.
        activation: ``"relu"``, ``"tanh"``, ``"sigmoid"`` or None.
        causal: output position ``t`` sees inputs ``t - (k_i - 1) * dilation ... t``;
            otherwise ('same') ``t - (k_i // 2) * dilation ... t + ((k_i - 1) // 2) * dilation``.
        dilation: spacing of the taps, ``>= 1``.
        reverse: read every sequence backwards: the result is that of flipping each sequence
            within its length, convolving and flipping back (the backward direction of a
            bidirectional QRNN). Windows mirror (causal sees ``t ... t + (k_i - 1) * dilation``)
            and tap ``j`` of a kernel reads ``t + (left_i - j) * dilation``.

    Returns:
        ``(B, T, sum F_i)`` in the input dtype: the widths' outputs concatenated in order, zero
        at positions at or past each sequence's length.

    Computes in float64 for float64 inputs and in float32 otherwise, and casts back.

    Equivalent to (all lengths ``T``, odd widths, no dilation)::

        torch.relu(torch.cat([nn.Conv1d(C, F_i, k_i, padding=k_i // 2)(x.transpose(1, 2))
                              for F_i, k_i in zip(filters, widths)], 1)).transpose(1, 2)

    Example::

        >>> x = torch.randn(2, 6, 4)
        >>> w = [torch.randn(3, 4, 1), torch.randn(5, 4, 3)]
        >>> y = multiwidth_conv1d_ref(x, torch.tensor([6, 2]), w)
        >>> y.shape, bool((y[1, 2:] == 0).all())
        (torch.Size([2, 6, 8]), True)
    """
    dtype = x.dtype
    cd = compute_dtype(dtype)
    B, T, _ = x.shape
    valid = torch.ones(B, T, dtype=torch.bool, device=x.device)
    if lengths is not None:
        lengths = torch.as_tensor(lengths)
        valid = torch.arange(T, device=x.device)[None, :] < lengths.to(x.device)[:, None]
    xt = (x.to(cd) * valid[:, :, None]).transpose(1, 2)  # (B, C, T), zero past each length
    outs = []
    for i, w in enumerate(weights):
        left, right = window(w.shape[2], causal, reverse)
        padded = F.pad(xt, (left * dilation, right * dilation))
        b = bias[i].to(cd) if bias is not None else None
        # Read backwards, tap j sits where tap k - 1 - j sits forwards.
        outs.append(F.conv1d(padded, (w.flip(-1) if reverse else w).to(cd), b, dilation=dilation))
    y = torch.cat(outs, 1).transpose(1, 2)
    if activation is not None:
        y = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[activation](y)
    return (y * valid[:, :, None]).to(dtype)
