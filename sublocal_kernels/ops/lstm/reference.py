"""Plain-PyTorch reference for the packed LSTM (standard and multiplicative cell): the oracle
every kernel is tested against, and the mLSTM benchmark's peer."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..._checks import compute_dtype


def _reverse_valid(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``x[b, :len_b]`` reversed in time, padding left in place (its own inverse)."""
    B, T = x.shape[:2]
    s = torch.arange(T, device=x.device).expand(B, T)
    L = lengths.to(x.device)[:, None]
    index = torch.where(s < L, L - 1 - s, s)
    return torch.gather(x, 1, index[:, :, None].expand_as(x))


CELLS = ("lstm", "mlstm")


def cell_weight_count(cell: str, bias: bool) -> int:
    """How many tensors one direction of a layer has: weight_ih, weight_hh[, bias_ih, bias_hh]
    [, weight_mx, weight_mh]."""
    return (4 if bias else 2) + (2 if cell == "mlstm" else 0)


def _run_direction(x, lengths, w_ih, w_hh, b_ih, b_hh, h, c, w_mx=None, w_mh=None):
    """One direction forward in time; a sequence's state stops changing after its last step.

    With ``w_mx`` and ``w_mh`` (the multiplicative cell), ``W_hh`` reads
    ``m_t = (x_t W_mx^T) * (h_{t-1} W_mh^T)`` instead of ``h_{t-1}``.
    """
    T = x.shape[1]
    running_at = torch.arange(T, device=x.device)[None, :] < lengths.to(x.device)[:, None]  # (B, T)
    outputs = []
    for t in range(T):
        recurrent = h if w_mx is None else (x[:, t] @ w_mx.T) * (h @ w_mh.T)
        gates = x[:, t] @ w_ih.T + recurrent @ w_hh.T
        if b_ih is not None:
            gates = gates + b_ih + b_hh
        i, f, g, o = gates.chunk(4, dim=1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c_new = f * c + i * g
        h_new = o * torch.tanh(c_new)
        running = running_at[:, t, None]
        h = torch.where(running, h_new, h)
        c = torch.where(running, c_new, c)
        outputs.append(torch.where(running, h_new, torch.zeros_like(h_new)))
    return torch.stack(outputs, dim=1), h, c


def lstm_ref(
    x: torch.Tensor,
    lengths: torch.Tensor | None,
    weights: Sequence[torch.Tensor],
    h0: torch.Tensor | None = None,
    c0: torch.Tensor | None = None,
    bidirectional: bool = True,
    cell: str = "lstm",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One LSTM layer over variable-length sequences, as a readable loop over time.

    Args:
        x: ``(B, T, C)`` float.
        lengths: ``(B,)`` int in ``[1, T]``, or None (all ``T``).
        weights: one ``nn.LSTM`` layer's tensors in its parameter order: ``weight_ih (4H, C)``,
            ``weight_hh (4H, H)``, ``bias_ih (4H)``, ``bias_hh (4H)`` (biases optional), then the
            same for the reverse direction when ``bidirectional``. Gate order i, f, g, o.
        h0, c0: ``(D, B, H)`` or None (zeros); ``D = 2`` when bidirectional.
        bidirectional: also run each sequence's valid part in reverse.
        cell: ``"lstm"`` or ``"mlstm"``, the multiplicative LSTM of UniRep (Krause et al. 2016):
            each direction's tensors are then ``weight_ih (4H, C)``, ``weight_hh (4H, H)``,
            ``bias_ih``, ``bias_hh`` (optional), ``weight_mx (H, C)``, ``weight_mh (H, H)``, and
            ``m_t = (W_mx x_t) * (W_mh h_{t-1})``,
            ``[i, f, g, o] = W_ih x_t + b_ih + W_hh m_t + b_hh``, the cell as the LSTM's.

    Returns:
        ``out``: ``(B, T, D * H)``, both directions' hidden states concatenated, zero at
        ``t >= lengths[b]``. ``h_n``, ``c_n``: ``(D, B, H)``, each direction's state after its
        last valid step (time ``len - 1`` forward, time 0 in reverse).

    Computes in float64 for float64 inputs and in float32 otherwise, and casts the results back.

    Equivalent to: ``torch.nn.LSTM(C, H, batch_first=True, bidirectional=...)`` applied to
    ``pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)``, with ``out``
    unpacked by ``pad_packed_sequence(..., total_length=T)`` (``cell="lstm"``; PyTorch has no
    multiplicative LSTM).

    Example::

        >>> B, T, C, H = 3, 6, 4, 5
        >>> lstm = torch.nn.LSTM(C, H, batch_first=True, bidirectional=True)
        >>> out, h_n, c_n = lstm_ref(torch.randn(B, T, C), torch.tensor([6, 1, 3]), list(lstm.parameters()))
        >>> out.shape, h_n.shape, bool((out[1, 1:] == 0).all())
        (torch.Size([3, 6, 10]), torch.Size([2, 3, 5]), True)
    """
    dtype = x.dtype
    cd = compute_dtype(dtype)
    B, T, _ = x.shape
    D = 2 if bidirectional else 1
    per = len(weights) // D
    bias = per == cell_weight_count(cell, True)
    H = weights[1].shape[1]
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.int64)
    lengths = lengths.to(device=x.device, dtype=torch.int64)
    xc = x.to(cd)
    outs, hs, cs = [], [], []
    for d in range(D):
        w = [t.to(cd) for t in weights[d * per:(d + 1) * per]]
        w_ih, w_hh = w[0], w[1]
        b_ih, b_hh = (w[2], w[3]) if bias else (None, None)
        w_mx, w_mh = (w[-2], w[-1]) if cell == "mlstm" else (None, None)
        h = h0[d].to(cd) if h0 is not None else xc.new_zeros(B, H)
        c = c0[d].to(cd) if c0 is not None else xc.new_zeros(B, H)
        inp = xc if d == 0 else _reverse_valid(xc, lengths)
        out, h, c = _run_direction(inp, lengths, w_ih, w_hh, b_ih, b_hh, h, c, w_mx, w_mh)
        outs.append(out if d == 0 else _reverse_valid(out, lengths))
        hs.append(h)
        cs.append(c)
    return torch.cat(outs, dim=2).to(dtype), torch.stack(hs).to(dtype), torch.stack(cs).to(dtype)
