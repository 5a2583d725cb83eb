"""Plain-PyTorch reference for fo-pool: the oracle every kernel is tested against."""

from __future__ import annotations

import torch

from ..._checks import compute_dtype


def fo_pool_ref(
    forget: torch.Tensor,
    z: torch.Tensor,
    output: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
    initial: torch.Tensor | None = None,
    reverse: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """QRNN fo-pooling as a readable loop over time.

    Args:
        forget: ``(B, T, D)`` float, the forget gate ``f`` (usually a sigmoid output).
        z: ``(B, T, D)`` float, the candidate ``z`` (usually a tanh output).
        output: ``(B, T, D)`` float or None, the output gate ``o``.
        lengths: ``(B,)`` int in ``[0, T]`` or None (all ``T``).
        initial: ``(B, D)`` float or None (zeros), the state before the first step.
        reverse: run each sequence from its own last valid step back to step 0.

    Returns:
        ``h``: ``(B, T, D)``, ``h_t = o_t * c_t`` (``c_t`` without ``output``), zero at
        positions at or past a sequence's length. ``c_last``: ``(B, D)``, the state after each
        sequence's last valid step (``initial`` for length 0).

    The recurrence is ``c_t = f_t * c_{t-1} + (1 - f_t) * z_t``. Computes in float64 for
    float64 inputs and in float32 otherwise, and casts the results back.

    Equivalent to: no ``torch.nn`` module; the ``ForgetMult`` of the QRNN paper.

    Example::

        >>> B, T, D = 2, 5, 3
        >>> f, z = torch.rand(B, T, D), torch.randn(B, T, D)
        >>> h, c_last = fo_pool_ref(f, z, lengths=torch.tensor([5, 2]))
        >>> bool((h[1, 2:] == 0).all())
        True
    """
    dtype = forget.dtype
    cd = compute_dtype(dtype)
    B, T, D = forget.shape
    f, zz = forget.to(cd), z.to(cd)
    o = output.to(cd) if output is not None else None
    lens = [T] * B if lengths is None else [int(n) for n in lengths.tolist()]
    h = torch.zeros(B, T, D, dtype=cd, device=forget.device)
    c_last = torch.zeros(B, D, dtype=cd, device=forget.device)
    for b in range(B):
        c = initial[b].to(cd) if initial is not None else torch.zeros(D, dtype=cd, device=forget.device)
        steps = range(lens[b] - 1, -1, -1) if reverse else range(lens[b])
        for t in steps:
            c = f[b, t] * c + (1 - f[b, t]) * zz[b, t]
            h[b, t] = c if o is None else o[b, t] * c
        c_last[b] = c
    return h.to(dtype), c_last.to(dtype)
