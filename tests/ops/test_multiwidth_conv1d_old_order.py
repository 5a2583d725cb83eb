"""multiwidth_conv1d's deprecation shim: every call form of the old order
``(x, weights, bias=None, lengths=None, activation="relu", causal=False, dilation=1,
reverse=False)`` gives the new form's result with a ``DeprecationWarning``; new-order calls
warn about nothing; calls that fit neither order fail with one line naming the op."""

from __future__ import annotations

import warnings

import pytest
import torch

import sublocal_kernels as sk

B, T, C = 3, 9, 4
FUNCTIONS = [pytest.param(sk.multiwidth_conv1d, id="op"), pytest.param(sk.multiwidth_conv1d_ref, id="ref")]


@pytest.fixture
def data():
    torch.manual_seed(0)
    x = torch.randn(B, T, C, dtype=torch.float64)
    ws = [torch.randn(2 + i, C, k, dtype=torch.float64) for i, k in enumerate((1, 2, 3))]
    bs = [torch.randn(w.shape[0], dtype=torch.float64) for w in ws]
    return x, ws, bs, torch.tensor([9, 4, 1])


# (old call, the same call in the new order); `f` is the function, `d` = (x, ws, bs, L).
OLD_FORMS = {
    # positional
    "x-w": (lambda f, x, ws, bs, L: f(x, ws),
            lambda f, x, ws, bs, L: f(x, None, ws)),
    "x-w-tuple": (lambda f, x, ws, bs, L: f(x, tuple(ws)),
                  lambda f, x, ws, bs, L: f(x, None, ws)),
    "x-w-b": (lambda f, x, ws, bs, L: f(x, ws, bs),
              lambda f, x, ws, bs, L: f(x, None, ws, bs)),
    "x-w-b-L": (lambda f, x, ws, bs, L: f(x, ws, bs, L),
                lambda f, x, ws, bs, L: f(x, L, ws, bs)),
    "x-w-None-L": (lambda f, x, ws, bs, L: f(x, ws, None, L),
                   lambda f, x, ws, bs, L: f(x, L, ws)),
    "x-w-b-Llist": (lambda f, x, ws, bs, L: f(x, ws, bs, L.tolist()),
                    lambda f, x, ws, bs, L: f(x, L, ws, bs)),
    "x-w-b-L-act": (lambda f, x, ws, bs, L: f(x, ws, bs, L, "tanh"),
                    lambda f, x, ws, bs, L: f(x, L, ws, bs, "tanh")),
    "x-w-b-L-act-causal": (lambda f, x, ws, bs, L: f(x, ws, bs, L, None, True),
                           lambda f, x, ws, bs, L: f(x, L, ws, bs, None, True)),
    "x-w-b-L-act-causal-dil": (lambda f, x, ws, bs, L: f(x, ws, bs, L, "sigmoid", True, 2),
                               lambda f, x, ws, bs, L: f(x, L, ws, bs, "sigmoid", True, 2)),
    "all-positional": (lambda f, x, ws, bs, L: f(x, ws, bs, L, "relu", True, 2, True),
                       lambda f, x, ws, bs, L: f(x, L, ws, bs, "relu", True, 2, True)),
    # positional weights, the rest by keyword
    "x-w-kwL": (lambda f, x, ws, bs, L: f(x, ws, lengths=L),
                lambda f, x, ws, bs, L: f(x, L, ws)),
    "x-w-kwb": (lambda f, x, ws, bs, L: f(x, ws, bias=bs),
                lambda f, x, ws, bs, L: f(x, None, ws, bs)),
    "x-w-kwact": (lambda f, x, ws, bs, L: f(x, ws, activation=None, causal=True),
                  lambda f, x, ws, bs, L: f(x, None, ws, None, None, True)),
    "x-w-b-kwL-kwrest": (lambda f, x, ws, bs, L: f(x, ws, bs, lengths=L, activation=None, causal=True,
                                                   dilation=3, reverse=True),
                         lambda f, x, ws, bs, L: f(x, L, ws, bs, None, True, 3, True)),
    "x-w-b-L-kwreverse": (lambda f, x, ws, bs, L: f(x, ws, bs, L, reverse=True),
                          lambda f, x, ws, bs, L: f(x, L, ws, bs, reverse=True)),
    # weights by keyword and no lengths (the old default, None)
    "kw-w": (lambda f, x, ws, bs, L: f(x, weights=ws),
             lambda f, x, ws, bs, L: f(x, None, ws)),
    "kw-x-w-b-act": (lambda f, x, ws, bs, L: f(x=x, weights=ws, bias=bs, activation=None),
                     lambda f, x, ws, bs, L: f(x, None, ws, bs, None)),
    "kw-w-rest": (lambda f, x, ws, bs, L: f(x, weights=ws, causal=True, dilation=2, reverse=True),
                  lambda f, x, ws, bs, L: f(x, None, ws, None, "relu", True, 2, True)),
}


def _new_result(f, new, d):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new order warns about nothing
        return new(f, *d)


@pytest.mark.parametrize("f", FUNCTIONS)
@pytest.mark.parametrize("form", list(OLD_FORMS))
def test_old_form_gives_the_new_result_with_a_warning(f, form, data):
    old, new = OLD_FORMS[form]
    expected = _new_result(f, new, data)
    with pytest.warns(DeprecationWarning, match=r"pass lengths second") as record:
        got = old(f, *data)
    assert torch.equal(got, expected), form
    assert all(w.filename == __file__ for w in record), [w.filename for w in record]  # points at the caller


def test_old_form_gradients_match(data):
    x, ws, bs, L = data
    leaves = [x.requires_grad_(), *[w.requires_grad_() for w in ws], *[b.requires_grad_() for b in bs]]
    grads_new = torch.autograd.grad(sk.multiwidth_conv1d(x, L, ws, bs).sum(), leaves)
    with pytest.warns(DeprecationWarning):
        grads_old = torch.autograd.grad(sk.multiwidth_conv1d(x, ws, bs, L).sum(), leaves)
    for a, b in zip(grads_new, grads_old):
        assert torch.equal(a, b)


NEW_FORMS = {
    "x-L-w": lambda f, x, ws, bs, L: f(x, L, ws),
    "x-None-w": lambda f, x, ws, bs, L: f(x, None, ws),
    "x-Llist-w-b": lambda f, x, ws, bs, L: f(x, L.tolist(), ws, bs),
    "x-L-kww": lambda f, x, ws, bs, L: f(x, L, weights=ws, bias=bs),
    "kw-L-w": lambda f, x, ws, bs, L: f(x, lengths=L, weights=ws),
    "kw-w-b-L": lambda f, x, ws, bs, L: f(x, weights=ws, bias=bs, lengths=L),  # means the same in both orders
}


@pytest.mark.parametrize("f", FUNCTIONS)
@pytest.mark.parametrize("form", list(NEW_FORMS))
def test_new_forms_do_not_warn(f, form, data):
    x, ws, bs, L = data
    got = _new_result(f, NEW_FORMS[form], data)
    bias = None if form in ("x-L-w", "x-None-w", "kw-L-w") else bs
    lengths = None if form == "x-None-w" else L
    assert torch.equal(got, f(x, lengths, ws, bias)), form


BAD_CALLS = {
    # old order
    "lengths-twice": (lambda f, x, ws, bs, L: f(x, ws, bs, L, lengths=L), TypeError,
                      r"^multiwidth_conv1d(_ref)?: multiple values for argument 'lengths'.*pass lengths second"),
    "weights-twice": (lambda f, x, ws, bs, L: f(x, ws, weights=ws), TypeError,
                      r"^multiwidth_conv1d(_ref)?: multiple values for argument 'weights'"),
    "too-many": (lambda f, x, ws, bs, L: f(x, ws, bs, L, "relu", False, 1, False, 7), TypeError,
                 r"^multiwidth_conv1d(_ref)?: too many positional arguments"),
    "unknown-keyword": (lambda f, x, ws, bs, L: f(x, ws, kernel=3), TypeError,
                        r"^multiwidth_conv1d(_ref)?: got an unexpected keyword argument 'kernel'"),
    "lengths-third": (lambda f, x, ws, bs, L: f(x, ws, L), TypeError,
                      r"^multiwidth_conv1d(_ref)?: the third argument of the old order .* is bias, a list of "
                      r"tensors, got a tensor \(lengths\?\); pass lengths second"),
    "int-lengths-third": (lambda f, x, ws, bs, L: f(x, ws, [9, 4, 1]), TypeError,
                          r"is bias, a list of tensors, got a list of ints \(lengths\?\)"),
    # new order
    "new-lengths-twice": (lambda f, x, ws, bs, L: f(x, L, ws, lengths=L), TypeError,
                          r"multiple values for argument 'lengths'"),
    "new-no-weights": (lambda f, x, ws, bs, L: f(x, lengths=L), TypeError, r"missing 1 required .*'weights'"),
}


@pytest.mark.parametrize("f", FUNCTIONS)
@pytest.mark.parametrize("form", list(BAD_CALLS))
def test_bad_call_fails_in_one_line(f, form, data):
    call, exc, pattern = BAD_CALLS[form]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(exc, match=pattern) as info:
            call(f, *data)
    assert "\n" not in str(info.value)


def test_empty_old_weights_fails_like_the_op():
    x = torch.randn(B, T, C)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match=r"^multiwidth_conv1d: `weights` must "
                                                                           r"hold at least one"):
        sk.multiwidth_conv1d(x, [])
