"""FoPool and QRNN modules: each sequence of a padded batch gives what it gives alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import sublocal_kernels as sk
from sublocal_kernels.nn import QRNN, FoPool
from tests.helpers import assert_close


def _direction_alone(x, weight, bias, k, output_gate, init, reverse):
    """One direction of one layer on one unpadded sequence x (T, C): the backward direction is
    the forward computation on the reversed sequence (the paper's definition)."""
    if reverse:
        x = x.flip(0)
    g = F.conv1d(F.pad(x.t()[None], (k - 1, 0)), weight, bias)[0].t()
    H = weight.shape[0] // (3 if output_gate else 2)
    z, f = torch.tanh(g[:, :H]), torch.sigmoid(g[:, H:2 * H])
    o = torch.sigmoid(g[:, 2 * H:]) if output_gate else None
    h, c = sk.fo_pool_ref(f[None], z[None], None if o is None else o[None], None,
                          None if init is None else init[None])
    h = h[0]
    return (h.flip(0) if reverse else h), c[0]


def qrnn_alone(module: QRNN, x, initial=None):
    """The module's function on one sequence x (T, C), layer by layer."""
    finals = []
    out = x
    for layer in range(module.num_layers):
        outs = []
        for d, suffix in enumerate([""] + (["_reverse"] if module.bidirectional else [])):
            w = getattr(module, f"weight_l{layer}{suffix}")
            b = getattr(module, f"bias_l{layer}{suffix}")
            init = None if initial is None else initial[layer * module.num_directions + d]
            h, c = _direction_alone(out, w, b, module.kernel_size, module.output_gate, init, d == 1)
            outs.append(h)
            finals.append(c)
        out = torch.cat(outs, -1)
    return out, torch.stack(finals)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kernel_size", [1, 2, 4])
@pytest.mark.parametrize("output_gate", [True, False], ids=["fo", "f"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_qrnn_batch_equals_each_sequence_alone(bidirectional, kernel_size, output_gate, num_layers):
    B, T, C, H = 4, 23, 5, 7
    m = QRNN(C, H, num_layers=num_layers, kernel_size=kernel_size, bidirectional=bidirectional,
             output_gate=output_gate, dtype=torch.float64)
    x = torch.randn(B, T, C, dtype=torch.float64)
    lengths = torch.tensor([23, 1, 9, 17])
    initial = torch.randn(num_layers * m.num_directions, B, H, dtype=torch.float64)
    out, c_n = m(x, lengths, initial)
    assert out.shape == (B, T, m.num_directions * H) and c_n.shape == (num_layers * m.num_directions, B, H)
    for b in range(B):
        L = int(lengths[b])
        ref_out, ref_c = qrnn_alone(m, x[b, :L], initial[:, b])
        assert_close(out[b, :L], ref_out, name=f"output[{b}]")
        assert (out[b, L:] == 0).all()
        assert_close(c_n[:, b], ref_c, name=f"c_n[{b}]")
    # padding content never leaks in
    x2 = x.clone()
    for b in range(B):
        x2[b, int(lengths[b]):] = 1e3
    out2, c2 = m(x2, lengths, initial)
    assert torch.equal(out, out2) and torch.equal(c_n, c2)


def test_qrnn_gradients_and_gradcheck():
    m = QRNN(3, 4, num_layers=2, kernel_size=2, bidirectional=True, dtype=torch.float64)
    x = torch.randn(2, 8, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([8, 5])
    assert torch.autograd.gradcheck(lambda x_: m(x_, lengths)[0], (x,))
    out, c = m(x, lengths)
    (out.sum() + c.sum()).backward()
    for p in m.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_qrnn_batch_second_dropout_and_repr():
    m = QRNN(4, 6, num_layers=3, dropout=0.5, batch_first=False)
    x = torch.randn(10, 2, 4)
    m.eval()
    a, _ = m(x)
    b, _ = m(x)
    assert torch.equal(a, b) and a.shape == (10, 2, 6)
    m.train()
    c, _ = m(x)
    assert not torch.equal(a, c)
    assert "dropout=0.5" in repr(m) and "num_layers=3" in repr(m)


def test_qrnn_bad_input():
    m = QRNN(4, 6)
    with pytest.raises(ValueError, match=r"QRNN: `x` must have 4 features"):
        m(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match=r"QRNN: `x` must have 3 dimensions"):
        m(torch.randn(5, 4))
    with pytest.raises(ValueError, match=r"QRNN: `lengths\[0\]` = 9 is out of range"):
        m(torch.randn(2, 5, 4), torch.tensor([9, 1]))
    with pytest.raises(ValueError, match=r"QRNN: `initial` must have 3 dimensions"):
        m(torch.randn(2, 5, 4), None, torch.zeros(2, 6))
    with pytest.raises(ValueError, match=r"QRNN: `initial` must have shape \(1, 2, 6\)"):
        m(torch.randn(2, 5, 4), None, torch.zeros(1, 3, 6))
    with pytest.raises(ValueError, match=r"`hidden_size` must be an int >= 1"):
        QRNN(4, 0)
    with pytest.raises(ValueError, match=r"`dropout` must be in \[0, 1\)"):
        QRNN(4, 3, dropout=1.0)


def test_qrnn_compiles_fullgraph():
    m = QRNN(3, 5, kernel_size=2, bidirectional=True)
    x = torch.randn(2, 9, 3)
    lengths = torch.tensor([9, 4])
    compiled = torch.compile(m, fullgraph=True)
    assert_close(compiled(x, lengths)[0], m(x, lengths)[0])


def test_fopool_module():
    pool = FoPool(reverse=True)
    f, z = torch.rand(2, 6, 3, dtype=torch.float64), torch.randn(2, 6, 3, dtype=torch.float64)
    L = torch.tensor([6, 2])
    h, c = pool(f, z, lengths=L)
    hr, cr = sk.fo_pool_ref(f, z, lengths=L, reverse=True)
    assert_close(h, hr)
    assert_close(c, cr)
    assert "reverse=True" in repr(pool)
