"""Packed variable-length (bidirectional) LSTM with nn.LSTM's semantics and a fused backward;
the cell is the standard one or UniRep's multiplicative one (``cell="mlstm"``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..._checks import ArgChecker
from .._common import grad_needed
from . import register as _register  # noqa: F401  (fake, autograd and CUDA kernels)
from .register import mean_over_steps
from .reference import CELLS, cell_weight_count, lstm_ref

__all__ = ["CELLS", "lstm", "lstm_ref", "weight_names"]

def weight_names(bidirectional: bool = True, bias: bool = True, layer: int = 0, cell: str = "lstm") -> list[str]:
    """``nn.LSTM``'s parameter names for one layer, in the order ``weights`` takes them; the
    multiplicative cell adds ``weight_mx`` and ``weight_mh`` after each direction's biases."""
    names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if bias else [])
    if cell == "mlstm":
        names += ["weight_mx", "weight_mh"]
    out = [f"{n}_l{layer}" for n in names]
    if bidirectional:
        out += [f"{n}_l{layer}_reverse" for n in names]
    return out


def _check_weights(chk: ArgChecker, weights, x: torch.Tensor, bidirectional: bool,
                   cell: str = "lstm") -> tuple[list[torch.Tensor], int]:
    if not isinstance(weights, Sequence) or isinstance(weights, (str, bytes)):
        chk.fail(f"`weights` must be a list or tuple of tensors (nn.LSTM's parameters of one layer), "
                 f"got {type(weights).__name__}", TypeError)
    weights = list(weights)
    D = 2 if bidirectional else 1
    n_plain, n_bias = cell_weight_count(cell, False) * D, cell_weight_count(cell, True) * D
    if len(weights) not in (n_plain, n_bias):
        chk.fail(f"`weights` must hold {n_plain} tensors (no bias) or {n_bias} (with bias) for "
                 f"bidirectional={bidirectional}{', cell=mlstm' if cell == 'mlstm' else ''}, got {len(weights)}")
    bias = len(weights) == n_bias
    names = weight_names(bidirectional, bias, cell=cell)
    C = x.shape[2]
    whh = chk.tensor("weights[1]", weights[1], 2, dims=f"({names[1]}: (4H, H))")
    if whh.shape[0] != 4 * whh.shape[1] or whh.shape[1] == 0:
        chk.fail(f"`weights[1]` ({names[1]}) must have shape (4H, H) with H >= 1, got {tuple(whh.shape)}")
    H = whh.shape[1]
    per = len(weights) // D
    shapes = [(4 * H, C), (4 * H, H)] + [(4 * H,), (4 * H,)] * bias + [(H, C), (H, H)] * (cell == "mlstm")
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
    cell: str = "lstm",
    *,
    return_sequences: bool | str = True,
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
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
        cell: ``"lstm"`` (the standard cell) or ``"mlstm"``, UniRep's multiplicative LSTM
            (Krause et al. 2016): per direction ``weights`` then ends with ``weight_mx (H, C)`` and
            ``weight_mh (H, H)`` (after the biases; :func:`weight_names` gives the order), and
            ``m_t = (W_mx x_t) * (W_mh h_{t-1})``, ``[i, f, g, o] = W_ih x_t + b_ih + W_hh m_t + b_hh``,
            ``c_t = f c_{t-1} + i g``, ``h_t = o tanh(c_t)`` (sigmoid i, f, o; tanh g). UniRep's
            single bias ``b`` is ``bias_ih + bias_hh``, its gate order i, f, o, u is ours
            i, f, o, g, and its weight normalisation is a reparametrisation of these weights.
        return_sequences: False when only ``h_n`` and ``c_n`` are wanted (a classifier on the
            final states): ``out`` is then None and never computed, which saves writing (and
            on the CPU, allocating) its ``B T D H`` elements, 262 MB of float32 at ``paper``.
            ``"mean"``: ``out`` is ``(B, D * H)``, each direction's hidden states averaged over
            the sequence's valid steps (UniRep's ``h_avg``). Without a gradient the CPU kernel
            sums the states as they are made, in float64, and never holds the ``(B, T, D H)``
            sequence (a pooled embedding of a 35,000-residue protein keeps no per-step state);
            with one, the sequence is computed and averaged so the gradient flows.

    Returns:
        ``(out, h_n, c_n)``: ``out`` is ``(B, T, D * H)`` in ``x``'s dtype, the hidden states
        of both directions concatenated (forward first), zero at ``t >= lengths[b]``;
        ``h_n`` and ``c_n`` are ``(D, B, H)``, each direction's state after its last valid
        step (as ``nn.LSTM`` returns them for a ``PackedSequence``). ``out`` is None when
        ``return_sequences`` is False.

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
    if cell not in CELLS:
        chk.fail(f"`cell` must be one of {', '.join(map(repr, CELLS))}, got {cell!r}")
    chk.tensor("x", x, 3, dims="(B, T, C)")
    B, T, _ = x.shape
    if not isinstance(bidirectional, bool):
        chk.fail(f"`bidirectional` must be a bool, got {type(bidirectional).__name__}", TypeError)
    if not (isinstance(return_sequences, bool) or return_sequences == "mean"):
        chk.fail(f"`return_sequences` must be a bool or 'mean', got {return_sequences!r}", TypeError)
    D = 2 if bidirectional else 1
    weights, H = _check_weights(chk, weights, x, bidirectional, cell)
    if h0 is not None:
        chk.like("h0", h0, "x", x, shape=(D, B, H), dims="(D, B, H)")
    if c0 is not None:
        chk.like("c0", c0, "x", x, shape=(D, B, H), dims="(D, B, H)")
    lengths = chk.lengths(lengths, "x", x)
    ops = torch.ops.sublocal
    fwd, infer = (ops.mlstm_fwd, ops.mlstm_infer) if cell == "mlstm" else (ops.lstm_fwd, ops.lstm_infer)
    mean = return_sequences == "mean"
    if not grad_needed(x, weights, h0, c0):
        out, h_n, c_n = infer(x, lengths, weights, h0, c0, bidirectional, not mean and return_sequences, mean)
    else:
        out, h_n, c_n, _, _ = fwd(x, lengths, weights, h0, c0, bidirectional, bool(return_sequences))
        if mean:
            out = mean_over_steps(out, lengths)
    return (out if return_sequences is not False else None), h_n, c_n
