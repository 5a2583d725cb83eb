"""fo-pool: the QRNN recurrence ``c_t = f_t c_{t-1} + (1 - f_t) z_t``, ``h_t = o_t c_t``."""

from __future__ import annotations

import torch

from ..._checks import ArgChecker
from .._common import grad_needed
from . import register as _register  # noqa: F401  (fake, autograd and CUDA kernels)
from .reference import fo_pool_ref

# Steps between the states the forward keeps for the backward (the Triton tile height and the
# CUDA kernel's warp-scan width): 1/32 of a (B, T, D) float32 tensor of extra memory.
CHUNK = 32

__all__ = ["fo_pool", "fo_pool_ref", "CHUNK"]


def fo_pool(
    forget: torch.Tensor,
    z: torch.Tensor,
    output: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
    initial: torch.Tensor | None = None,
    reverse: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """QRNN fo-pooling over variable-length sequences, with a fused backward.

    ``c_t = f_t * c_{t-1} + (1 - f_t) * z_t``; ``h_t = o_t * c_t`` when ``output`` is given,
    else ``h_t = c_t``.

    Args:
        forget: ``(B, T, D)`` float16/bfloat16/float32/float64, the forget gate ``f``.
        z: ``(B, T, D)``, same dtype and device, the candidate values.
        output: ``(B, T, D)`` or None, the output gate ``o``.
        lengths: ``(B,)`` int32/int64 (any device) or a list of ints, each in ``[1, T]``, or
            None (all ``T``): the contract every op shares (README, "Variable-length
            sequences"). Positions at or past a sequence's length produce ``h = 0`` and do not
            change its state.
        initial: ``(B, D)`` or None (zeros), the state before the first step.
        reverse: run each sequence from its own last valid step back to step 0 (the backward
            direction of a bidirectional QRNN; nothing starts in the padding).

    Returns:
        ``(h, c_last)``: ``h`` is ``(B, T, D)`` in the input dtype, zero at padded positions;
        ``c_last`` is ``(B, D)``, the state after each sequence's last valid step.

    The state is carried and accumulated in float32 for float16/bfloat16 inputs (float64 for
    float64). Gradients flow to ``forget``, ``z``, ``output`` and ``initial``. When no gradient
    is needed (``torch.no_grad()``, ``torch.inference_mode()``, or no input requiring one) the
    forward keeps no checkpoints for a backward.

    Equivalent to: :func:`fo_pool_ref` (a loop over time).

    Example::

        >>> import torch, sublocal_kernels as sk
        >>> B, T, D = 3, 7, 4
        >>> f = torch.rand(B, T, D, requires_grad=True)
        >>> z = torch.randn(B, T, D, requires_grad=True)
        >>> h, c_last = sk.fo_pool(f, z, lengths=torch.tensor([7, 3, 1]))
        >>> h.shape, c_last.shape
        (torch.Size([3, 7, 4]), torch.Size([3, 4]))
        >>> (h.sum() + c_last.sum()).backward()
    """
    chk = ArgChecker("fo_pool")
    chk.tensor("forget", forget, 3, dims="(B, T, D)")
    B, T, D = forget.shape
    chk.like("z", z, "forget", forget, dims="(B, T, D)")
    if output is not None:
        chk.like("output", output, "forget", forget, dims="(B, T, D)")
    if initial is not None:
        chk.like("initial", initial, "forget", forget, shape=(B, D), dims="(B, D)")
    if not isinstance(reverse, bool):
        chk.fail(f"`reverse` must be a bool, got {type(reverse).__name__}", TypeError)
    lengths = chk.lengths(lengths, "forget", forget)
    if not grad_needed(forget, z, output, initial):
        return torch.ops.sublocal.fo_pool_infer(forget, z, output, lengths, initial, reverse, CHUNK)
    h, c_last, _ = torch.ops.sublocal.fo_pool_fwd(forget, z, output, lengths, initial, reverse, CHUNK)
    return h, c_last
