"""Packed variable-length (bidirectional) LSTM with nn.LSTM's semantics and a fused backward."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..._checks import ArgChecker
from .._common import grad_needed
from . import register as _register  # noqa: F401  (fake, autograd and CUDA kernels)
from .reference import lstm_ref

__all__ = ["lstm", "lstm_ref", "weight_names"]


def weight_names(bidirectional: bool = True, bias: bool = True, layer: int = 0) -> list[str]:
    """``nn.LSTM``'s parameter names for one layer, in the order ``weights`` takes them."""
    names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if bias else [])
    out = [f"{n}_l{layer}" for n in names]
    if bidirectional:
        out += [f"{n}_l{layer}_reverse" for n in names]
    return out


def _check_weights(chk: ArgChecker, weights, x: torch.Tensor, bidirectional: bool) -> tuple[list[torch.Tensor], int]:
    if not isinstance(weights, Sequence) or isinstance(weights, (str, bytes)):
        chk.fail(f"`weights` must be a list or tuple of tensors (nn.LSTM's parameters of one layer), "
                 f"got {type(weights).__name__}", TypeError)
    weights = list(weights)
    D = 2 if bidirectional else 1
    if len(weights) not in (2 * D, 4 * D):
        chk.fail(f"`weights` must hold {2 * D} tensors (no bias) or {4 * D} (with bias) for "
                 f"bidirectional={bidirectional}, got {len(weights)}")
    bias = len(weights) == 4 * D
    names = weight_names(bidirectional, bias)
    C = x.shape[2]
    whh = chk.tensor("weights[1]", weights[1], 2, dims=f"({names[1]}: (4H, H))")
    if whh.shape[0] != 4 * whh.shape[1] or whh.shape[1] == 0:
        chk.fail(f"`weights[1]` ({names[1]}) must have shape (4H, H) with H >= 1, got {tuple(whh.shape)}")
    H = whh.shape[1]
    per = len(weights) // D
    shapes = [(4 * H, C), (4 * H, H), (4 * H,), (4 * H,)]
    for k, w in enumerate(weights):
        chk.like(f"weights[{k}]", w, "x", x, shape=shapes[k % per], dims=f"({names[k]})")
    return weights, H


def lstm(
    x: torch.Tensor,
    lengths: torch.Tensor | Sequence[int] | None,
    weights: Sequence[torch.Tensor],
    h0: torch.Tensor | None = None,
    c0: torch.Tensor | None = None,
    bidirectional: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One LSTM layer over a batch of variable-length sequences, with no work on padding.

    Both directions run over each sequence's own valid steps: the forward direction reads
    ``t = 0 .. len-1``, the reverse direction ``t = len-1 .. 0``. The result equals
    ``nn.LSTM`` on a ``PackedSequence`` (parameters move between the two without conversion).

    Args:
        x: ``(B, T, C)`` float16/bfloat16/float32/float64 (batch first).
        lengths: ``(B,)`` int32/int64 (any device, any order: nothing needs sorting) with
            values in ``[1, T]``, a list of ints, or None (all ``T``). On the GPU nothing waits
            for device-resident lengths.
        weights: the tensors of one ``nn.LSTM`` layer in its parameter order, e.g.
            ``list(nn.LSTM(C, H, batch_first=True, bidirectional=True).parameters())``:
            ``weight_ih (4H, C)``, ``weight_hh (4H, H)``, ``bias_ih (4H)``, ``bias_hh (4H)``
            (the biases may be left out together), then the ``_reverse`` set when
            ``bidirectional``. Gate order i, f, g, o. Same dtype and device as ``x``.
        h0, c0: ``(D, B, H)`` initial states or None (zeros); ``D = 2`` when bidirectional.
        bidirectional: run the reverse direction too.

    Returns:
        ``(out, h_n, c_n)``: ``out`` is ``(B, T, D * H)`` in ``x``'s dtype, the hidden states
        of both directions concatenated (forward first), zero at ``t >= lengths[b]``;
        ``h_n`` and ``c_n`` are ``(D, B, H)``, each direction's state after its last valid
        step (as ``nn.LSTM`` returns them for a ``PackedSequence``).

    The cell state and every accumulation are float32 for float16/bfloat16 inputs (float64
    for float64). Gradients flow to ``x``, every weight and bias, ``h0`` and ``c0``; the
    backward runs only the recurrence step by step and computes the input and weight
    gradients as single matrix products over all valid steps. When no gradient is needed
    (under ``torch.no_grad()`` or ``torch.inference_mode()``, or when no input requires one)
    the forward keeps nothing for a backward (``sublocal::lstm_infer``): same outputs, none
    of the training forward's gates and states workspace.

    Equivalent to::

        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, (h_n, c_n) = nn.LSTM(C, H, batch_first=True, bidirectional=True)(packed, (h0, c0))
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)

    Example::

        >>> import torch, sublocal_kernels as sk
        >>> B, T, C, H = 3, 7, 20, 16
        >>> layer = torch.nn.LSTM(C, H, batch_first=True, bidirectional=True)
        >>> x = torch.randn(B, T, C, requires_grad=True)
        >>> out, h_n, c_n = sk.lstm(x, torch.tensor([7, 2, 5]), list(layer.parameters()))
        >>> out.shape, h_n.shape, bool((out[1, 2:] == 0).all())
        (torch.Size([3, 7, 32]), torch.Size([2, 3, 16]), True)
        >>> out.sum().backward()
    """
    chk = ArgChecker("lstm")
    chk.tensor("x", x, 3, dims="(B, T, C)")
    B, T, _ = x.shape
    if not isinstance(bidirectional, bool):
        chk.fail(f"`bidirectional` must be a bool, got {type(bidirectional).__name__}", TypeError)
    D = 2 if bidirectional else 1
    weights, H = _check_weights(chk, weights, x, bidirectional)
    if h0 is not None:
        chk.like("h0", h0, "x", x, shape=(D, B, H), dims="(D, B, H)")
    if c0 is not None:
        chk.like("c0", c0, "x", x, shape=(D, B, H), dims="(D, B, H)")
    lengths = chk.lengths(lengths, "x", x)
    if not grad_needed(x, weights, h0, c0):
        return torch.ops.sublocal.lstm_infer(x, lengths, weights, h0, c0, bidirectional)
    out, h_n, c_n, _, _ = torch.ops.sublocal.lstm_fwd(x, lengths, weights, h0, c0, bidirectional)
    return out, h_n, c_n
