"""lstm (the standard cell): the kernels and the reference against torch.nn.LSTM on a
PackedSequence. The tests the LSTM shares with the mLSTM (reference, gradients, registration,
bad input, the Triton kernels under the interpreter, CUDA) are in test_recurrent.py."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import sublocal_kernels as sk
from sublocal_kernels.ops.lstm import lstm_ref, weight_names
from tests.helpers import assert_close
from tests.ops.test_recurrent import TORCH_CASES, leaf, pattern_lengths, run, states

# float32 against torch.nn.LSTM (also float32, MKL/oneDNN with its own summation order): the
# suite's float32 tolerance scaled by 10. Measured worst cases at these sizes: 1e-6 relative on
# outputs, 2e-5 on weight gradients summed over ~300 (sequence, step) pairs at H=300.
F32_VS_TORCH_SCALE = 10.0


def make_lstm(C, H, bidirectional=True, bias=True, dtype=torch.float64, device="cpu"):
    return torch.nn.LSTM(C, H, bias=bias, batch_first=True, bidirectional=bidirectional).to(dtype=dtype, device=device)


def nn_packed(module, x, lengths, h0=None, c0=None):
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, (h_n, c_n) = module(packed, (h0, c0)) if h0 is not None else module(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out, h_n, c_n


def compare_with_torch(B, T, C, H, pattern, bidirectional, dtype, scale=1.0, bias=True, with_state=True):
    D = 2 if bidirectional else 1
    module = make_lstm(C, H, bidirectional, bias, dtype)
    x = torch.randn(B, T, C, dtype=dtype, requires_grad=True)
    L = pattern_lengths(B, T, pattern)
    h0, c0 = (leaf(t) for t in states(D, B, H, dtype)) if with_state else (None, None)
    params = list(module.parameters())
    leaves = [x] + ([h0, c0] if with_state else []) + params
    cot = [torch.randn(B, T, D * H, dtype=dtype), torch.randn(D, B, H, dtype=dtype), torch.randn(D, B, H, dtype=dtype)]
    got, g_got = run(lambda: sk.lstm(x, L, params, h0, c0, bidirectional), leaves, cot)
    want, g_want = run(lambda: nn_packed(module, x, L, h0, c0), leaves, cot)
    names = ["x"] + (["h0", "c0"] if with_state else []) + weight_names(bidirectional, bias)
    for name, a, e in zip(["out", "h_n", "c_n"], got, want):
        assert_close(a, e, scale=scale, name=name)
    for name, a, e in zip(names, g_got, g_want):
        assert_close(a, e, scale=scale, name=f"grad {name}")
    for b in range(B):  # padded positions: exactly zero output, no gradient into x
        assert (got[0][b, int(L[b]):] == 0).all()
        assert (g_got[0][b, int(L[b]):] == 0).all()


# TORCH_CASES (hidden sizes 1 to 300, input sizes 1 to 80, three length patterns) live in
# test_recurrent.py, which runs them on the GPU too.
@pytest.mark.parametrize("B,T,C,H,pattern,bidirectional", TORCH_CASES)
def test_matches_torch_packed_float64(B, T, C, H, pattern, bidirectional, poisoned):
    compare_with_torch(B, T, C, H, pattern, bidirectional, torch.float64)


@pytest.mark.parametrize("B,T,C,H,pattern,bidirectional", TORCH_CASES)
def test_matches_torch_packed_float32(B, T, C, H, pattern, bidirectional):
    compare_with_torch(B, T, C, H, pattern, bidirectional, torch.float32, scale=F32_VS_TORCH_SCALE)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("with_state", [True, False], ids=["h0c0", "zero-state"])
def test_matches_torch_bias_and_state(bias, with_state):
    compare_with_torch(5, 13, 7, 9, "random", True, torch.float64, bias=bias, with_state=with_state)


def test_reference_matches_torch_packed():
    """The oracle itself follows nn.LSTM's packed semantics."""
    module = make_lstm(4, 5)
    x = torch.randn(4, 9, 4, dtype=torch.float64)
    L = torch.tensor([9, 1, 6, 9])
    h0, c0 = states(2, 4, 5)
    for a, e in zip(lstm_ref(x, L, list(module.parameters()), h0, c0), nn_packed(module, x, L, h0, c0)):
        assert_close(a, e)
