"""The multiplicative LSTM cell (``cell="mlstm"``): what only it has. The LSTM as its special
case, the units schedule (each thread owns a slice of the hidden units), the inference lanes.
The tests it shares with the LSTM (reference, gradients, registration, the inference path, the
mean pool, bad input, the Triton kernels under the interpreter, CUDA) are in test_recurrent.py."""

from __future__ import annotations

import pytest
import torch

import sublocal_kernels as sk
from sublocal_kernels.ops.lstm import lstm_ref
from tests.helpers import assert_close, random_lengths
from tests.ops.test_inference import MODES, _infer
from tests.ops.test_recurrent import (
    MLSTM,
    compare_with_reference,
    masked_mean,
    states,
    with_threads,
)

mlstm_params = MLSTM.params


def test_reduces_to_the_lstm_formula():
    # With W_mx x = 1 (a constant input column and W_mx reading only it), m_t = W_mh h_{t-1}: the
    # mLSTM is then an LSTM whose recurrent weight is W_hh W_mh.
    B, T, C, H = 3, 8, 4, 5
    p = mlstm_params(C, H, bidirectional=False)
    x = torch.randn(B, T, C, dtype=torch.float64)
    x[..., 0] = 1.0
    w_mx = torch.zeros(H, C, dtype=torch.float64)
    w_mx[:, 0] = 1.0
    L = torch.tensor([8, 3, 6])
    got = sk.lstm(x, L, p[:4] + [w_mx, p[5]], bidirectional=False, cell="mlstm")
    want = sk.lstm_ref(x, L, [p[0], p[1] @ p[5], p[2], p[3]], bidirectional=False)
    for a, e in zip(got, want):
        assert_close(a, e)


# ---- the units schedule (large H: each thread owns a slice of the hidden units) ------------------

@pytest.mark.parametrize("threads", [1, 2, 3], ids=["t1", "t2", "t3"])
@pytest.mark.parametrize("B,T,C,H,pattern,bidirectional", [
    pytest.param(5, 13, 3, 33, "random", True, id="B5-T13-C3-H33-bi"),   # 3 groups of 16 units: uneven slices
    pytest.param(4, 9, 6, 7, "one-short", False, id="B4-T9-C6-H7-uni"),  # one group: some threads own no units
    pytest.param(41, 64, 2, 17, "random", False, id="B41-T64-C2-H17-uni"),  # > 1024 rows: chunk flushes mid-loop
])
def test_units_schedule_matches_reference(monkeypatch, threads, B, T, C, H, pattern, bidirectional):
    monkeypatch.setenv("SUBLOCAL_LSTM_SCHEDULE", "units")
    with_threads(threads, lambda: compare_with_reference(MLSTM, B, T, C, H, pattern, bidirectional))


@pytest.mark.parametrize("schedule", ["tiles", "units"])
@pytest.mark.parametrize("mode", MODES)
def test_inference_schedules_match_reference(monkeypatch, schedule, mode):
    monkeypatch.setenv("SUBLOCAL_LSTM_SCHEDULE", schedule)
    B, T, C, H = 6, 17, 4, 37
    params = mlstm_params(C, H)
    x = torch.randn(B, T, C, dtype=torch.float64, requires_grad=True)
    L = random_lengths(B, T)
    h0, c0 = states(2, B, H)
    got = with_threads(3, lambda: _infer(mode, lambda x, *p: sk.lstm(x, L, list(p), h0, c0, cell="mlstm"),
                                          x, *params))
    want = lstm_ref(x.detach(), L, params, h0, c0, cell="mlstm")
    for name, a, e in zip(["out", "h_n", "c_n"], got, want):
        assert a.grad_fn is None
        assert_close(a, e, name=name)


def test_units_schedule_is_the_default_at_unirep_size(monkeypatch):
    # Only the choice is checked here (H = 1900 would be slow): with the variable unset, a layer
    # whose recurrent weights outgrow L2 takes the units schedule, and it agrees with tiles.
    monkeypatch.delenv("SUBLOCAL_LSTM_SCHEDULE", raising=False)
    B, T, C, H = 3, 4, 10, 330  # 5 H^2 float32 = 2.2 MB
    layer = sk.nn.LSTM(C, H, bidirectional=False, cell="mlstm")
    w = [p.detach() for p in layer.layer_weights(0)]
    x = torch.randn(B, T, C)
    L = torch.tensor([4, 1, 3])
    with torch.inference_mode():
        auto = with_threads(2, lambda: sk.lstm(x, L, w, bidirectional=False, cell="mlstm"))
        monkeypatch.setenv("SUBLOCAL_LSTM_SCHEDULE", "tiles")
        tiles = with_threads(2, lambda: sk.lstm(x, L, w, bidirectional=False, cell="mlstm"))
    for a, e in zip(auto, tiles):
        assert_close(a, e, torch.float32)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_inference_lanes_run_several_sequences_each(monkeypatch, bidirectional):
    # More sequences than lanes (at least 96, here 130 sequences of very different lengths): lanes
    # run sequences one after another, each from its own initial state; every output must still
    # be the reference's.
    monkeypatch.setenv("SUBLOCAL_LSTM_SCHEDULE", "units")
    B, T, C, H = 130, 40, 3, 17
    D = 2 if bidirectional else 1
    params = mlstm_params(C, H, bidirectional)
    x = torch.randn(B, T, C, dtype=torch.float64)
    L = torch.randint(1, 9, (B,))
    L[:3] = torch.tensor([40, 37, 31])  # a few long ones: ceil(total / longest) < 96 lanes
    h0, c0 = states(D, B, H)
    want = lstm_ref(x, L, params, h0, c0, bidirectional, cell="mlstm")
    with torch.inference_mode():
        got = sk.lstm(x, L, params, h0, c0, bidirectional, cell="mlstm")
        mean, h_n, c_n = sk.lstm(x, L, params, h0, c0, bidirectional, cell="mlstm", return_sequences="mean")
    for name, a, e in zip(["out", "h_n", "c_n"], got, want):
        assert_close(a, e, name=name)
    assert_close(mean, masked_mean(want[0], L), name="mean")
    assert_close(h_n, want[1], name="h_n (mean)")
