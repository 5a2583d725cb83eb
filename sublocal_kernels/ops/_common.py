"""The autograd convention every op registers through.

Each op's forward returns its real outputs first and then its workspaces (tensors saved for
the backward: LSTM gates and states, fo-pool checkpoints, attention activations). The
convention, written once here:

- Workspaces are not differentiable, and gradients are never materialised: autograd hands
  the backward ``None`` for every output the loss does not use instead of a freshly
  allocated zero tensor. For the LSTM at `paper` those zeros were 1.57 GB (gates
  (2, 128000, 1024) and states (2, 128000, 512) float32) allocated and filled per backward.
- The op's backward receives only the real outputs' gradients, each possibly ``None``, and
  replaces a ``None`` by zeros only where its kernel needs a tensor (see :func:`zeros_if_none`).
- Gradients are computed only for the inputs in ``ctx.needs_input_grad``; when no input
  needs one, the backward kernel does not run (:func:`any_needs_grad`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def register_autograd(op: str, backward: Callable, setup_context: Callable, *, outputs: int) -> None:
    """Registers ``backward`` for ``sublocal::<op>``, whose first ``outputs`` results are real.

    ``setup_context(ctx, inputs, output)`` saves what the backward needs; the results after
    the first ``outputs`` are marked non-differentiable here. ``backward(ctx, *grads)`` gets
    the ``outputs`` real gradients (``None`` where unused) and returns one gradient per input.
    """

    def _setup(ctx, inputs, output):
        output = output if isinstance(output, tuple) else (output,)
        setup_context(ctx, inputs, output if len(output) > 1 else output[0])
        workspaces = output[outputs:]
        if workspaces:
            ctx.mark_non_differentiable(*workspaces)
        ctx.set_materialize_grads(False)

    def _backward(ctx, *grads):
        # Nothing depends on a workspace, so its gradient is None; anything else would mean a
        # full-size zero tensor was made for it.
        if any(g is not None for g in grads[outputs:]):
            raise RuntimeError(f"sublocal::{op}: a workspace output received a gradient")
        return backward(ctx, *grads[:outputs])

    torch.library.register_autograd(f"sublocal::{op}", _backward, setup_context=_setup)


def zeros_if_none(grad: torch.Tensor | None, like: torch.Tensor, shape=None) -> torch.Tensor:
    """``grad``, or zeros shaped like ``like`` (or ``shape``) when the output was unused."""
    if grad is not None:
        return grad
    return like.new_zeros(like.shape if shape is None else shape)


def any_needs_grad(ctx) -> bool:
    """Whether any input needs a gradient (a ``Tensor[]`` input's flag is a list)."""
    return any(any(f) if isinstance(f, (list, tuple)) else bool(f) for f in ctx.needs_input_grad)


def grad_needed(*inputs) -> bool:
    """Whether autograd would record a call on ``inputs`` (tensors, None, or lists of them).

    False under ``torch.no_grad()`` and ``torch.inference_mode()``, or when no input requires a
    gradient: then each public op calls its ``<op>_infer`` variant, which keeps nothing for a
    backward. Traceable by torch.compile (a guard on grad mode and on each ``requires_grad``).
    """
    if not torch.is_grad_enabled():
        return False
    for t in inputs:
        if isinstance(t, (list, tuple)):
            if any(isinstance(u, torch.Tensor) and u.requires_grad for u in t):
                return True
        elif isinstance(t, torch.Tensor) and t.requires_grad:
            return True
    return False


def register_no_backward(op: str, training_op: str) -> None:
    """Registers for ``sublocal::<op>`` (an inference variant) a backward that refuses.

    The public functions call ``op`` only when no gradient is needed; a direct caller who
    differentiates through it gets this error instead of a silent zero or autograd's warning.
    """

    def _setup(ctx, inputs, output):
        pass

    def _backward(ctx, *grads):
        raise RuntimeError(f"sublocal::{op} keeps nothing for a backward; use sublocal::{training_op} "
                           "(the public function does when a gradient is needed)")

    torch.library.register_autograd(f"sublocal::{op}", _backward, setup_context=_setup)


def lengths_second(legacy: Callable) -> Callable:
    """Keeps the pre-0.2 argument order of an op whose ``lengths`` moved to second place.

    Every public op takes ``lengths`` right after its per-step inputs (``lstm(x, lengths,
    weights)``). ``multiwidth_conv1d`` used to take it after ``weights, bias``, with a default
    of None. The wrapped function has the new signature (``lengths`` required, second); a call
    is read in ``legacy``'s signature instead, with a ``DeprecationWarning``, when it can only
    be an old one:

    - its second positional argument is a list or tuple of tensors (the old ``weights``; the
      new ``lengths`` is a tensor, a list of ints or None): ``f(x, weights)``,
      ``f(x, weights, bias, lengths, ...)``, ``f(x, weights, lengths=...)``;
    - its second positional argument is an empty list and nothing else could be ``weights``
      (``f(x, [])``: the old order's empty ``weights``, refused by the op's own check);
    - it names ``weights`` but gives no ``lengths`` at all (``f(x, weights=...)``: the old
      default lengths=None).

    An old call is bound to ``legacy``'s signature with its defaults and forwarded by keyword,
    so it means exactly what it meant before. A call that fits neither order raises a one-line
    ``TypeError`` naming the op. ``legacy`` is only a signature; its body never runs.
    """
    import functools
    import inspect
    import warnings

    old = inspect.signature(legacy)

    def is_old_weights(arg) -> bool:
        return isinstance(arg, (list, tuple)) and len(arg) > 0 \
            and all(isinstance(w, torch.Tensor) and w.dim() > 0 for w in arg)

    def decorate(func: Callable) -> Callable:
        name = func.__name__

        def legacy_call(args, kwargs):
            warnings.warn(
                f"{name}(x, weights, bias, lengths, ...) is deprecated: pass lengths second, "
                f"{name}(x, lengths, weights, bias, ...), as every op takes it (None: every sequence "
                f"has length T)", DeprecationWarning, stacklevel=3)
            try:
                bound = old.bind(*args, **kwargs)
            except TypeError as e:
                raise TypeError(f"{name}: {e} (old order {name}(x, weights, bias, lengths, ...); "
                                f"pass lengths second: {name}(x, lengths, weights, bias, ...))") from None
            bound.apply_defaults()
            bias = bound.arguments.get("bias")
            if isinstance(bias, torch.Tensor) or (
                    isinstance(bias, (list, tuple)) and bias and all(isinstance(v, int) for v in bias)):
                kind = "a tensor" if isinstance(bias, torch.Tensor) else "a list of ints"
                raise TypeError(f"{name}: the third argument of the old order {name}(x, weights, bias, lengths, "
                                f"...) is bias, a list of tensors, got {kind} (lengths?); "
                                f"pass lengths second: {name}(x, lengths, weights, bias, ...)")
            return func(**bound.arguments)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            if len(args) >= 2:
                if is_old_weights(args[1]) or (
                        isinstance(args[1], (list, tuple)) and len(args[1]) == 0 and len(args) == 2
                        and "weights" not in kwargs):
                    return legacy_call(args, kwargs)
            elif "lengths" not in kwargs and "weights" in kwargs:
                return legacy_call(args, kwargs)
            return func(*args, **kwargs)

        return wrapper

    return decorate
