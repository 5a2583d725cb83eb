"""mLSTM benchmark: one layer of UniRep's multiplicative LSTM (hidden 1900, one direction) over a
batch of protein-like lengths, the shape of one UniRep training step.

Shape `unirep`: B = 8 sequences, residue embedding C = 10 (UniRep's), lengths log-normal with
median 300 capped at 2000 (benchmarks.common.lognormal_lengths); the batch is padded to its
longest sequence. `unirep-b64`: B = 64, every sequence 300 long (the batch at which the kernel
should reach its FLOP floor); `unirep-b1`: one sequence of 1000 (latency: each step streams the
72 MB of recurrent weights). `smoke` (under --benchmark-disable) is the same scaled down.

Providers (all differentiate with respect to the same x and parameter tensors):
  sublocal   sublocal_kernels.lstm(..., cell="mlstm") (C++ on CPU, Triton on GPU)
  ref-eager  sublocal_kernels.lstm_ref(..., cell="mlstm"): the plain-PyTorch cell loop over the
             padded batch (autograd records every step), the peer the issue names

Cost: FLOPs count the valid steps only (what the op must do). Per valid step forward:
2 (C + 1) 5H for the stacked input projections, 2 H^2 for W_mh h, 2 4H^2 for W_hh m, plus the
cell; backward: dm and dh (2 4H^2 + 2 H^2), the weight gradients of W_hh and W_mh (the same
again), those of [W_ih ; W_mx] and dx (2 5H (2C + 1)), plus the cell's. Bytes: x, the weights
and the outputs once (forward); the incoming gradients, the saved states, x and the gradients
once (backward): compute-bound.
"""

from __future__ import annotations

import torch

import sublocal_kernels as sk
from benchmarks.common import BenchSpec, Shape, cost_of_mode, lognormal_lengths, make_modes

MLSTM_SHAPES = {"unirep": Shape("unirep", 8, 2000, C=10, hidden=1900),
                "unirep-b64": Shape("unirep-b64", 64, 300, C=10, hidden=1900, min_length_frac=1.0),
                "unirep-b1": Shape("unirep-b1", 1, 1000, C=10, hidden=1900, min_length_frac=1.0)}


def shape_lengths(shape: Shape) -> torch.Tensor:
    """The seeded lengths of ``shape``: every sequence ``shape.T`` long when ``min_length_frac``
    is 1, else log-normal, median 300, clipped to ``shape.T``."""
    if shape.min_length_frac >= 1.0:
        return torch.full((shape.B,), shape.T, dtype=torch.int64)
    return lognormal_lengths(shape.B, shape.T, seed=0)


class MlstmBench(BenchSpec):
    op = "mlstm"
    shapes = MLSTM_SHAPES
    all_providers = ("sublocal", "ref-eager")
    reference = "ref-eager"

    def in_profile(self, profile, shape, provider, device):
        return profile != "quick"  # the reference is a Python loop over up to 2000 steps: not in the quick profile

    def make_problem(self, shape: Shape, dtype, device):
        C, H = shape.C, shape.hidden
        layer = sk.nn.LSTM(C, H, bidirectional=False, cell="mlstm").to(device=device, dtype=dtype)
        weights = [w.detach().requires_grad_() for w in layer.layer_weights(0)]
        lengths = shape_lengths(shape)
        x = torch.randn(shape.B, int(lengths.max()), C, device=device).to(dtype).requires_grad_()
        return x, lengths.to(device), weights

    def build(self, problem, provider):
        x, lengths, weights = problem
        if provider == "sublocal":
            forward = lambda: sk.lstm(x, lengths, weights, bidirectional=False, cell="mlstm")  # noqa: E731
        elif provider == "ref-eager":
            forward = lambda: sk.lstm_ref(x, lengths, weights, bidirectional=False, cell="mlstm")  # noqa: E731
        else:
            raise ValueError(provider)
        return make_modes(forward, [x, *weights])

    def cost(self, shape, dtype, mode):
        B, C, H = shape.B, shape.C, shape.hidden
        lengths = shape_lengths(shape)
        steps, T = int(lengths.sum()), int(lengths.max())
        es = torch.empty((), dtype=dtype).element_size()
        fwd_flops = steps * (2 * (C + 1) * 5 * H + 2 * 5 * H * H + 12 * H)
        bwd_flops = steps * (2 * 2 * 5 * H * H + 2 * 5 * H * (2 * C + 1) + 18 * H)
        weights = (5 * H * (C + H) + 8 * H) * es
        fwd_bytes = (B * T * C + B * T * H + 2 * B * H) * es + weights
        bwd_bytes = (2 * B * T * H + 2 * B * T * C + 2 * B * H) * es + 2 * weights
        return cost_of_mode(mode, (fwd_bytes, fwd_flops), (bwd_bytes, bwd_flops))


SPEC = MlstmBench()


def test_bench(bench, bench_case):
    bench.measure(SPEC, bench_case)
