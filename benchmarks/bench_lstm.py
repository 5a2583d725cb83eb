"""LSTM benchmark: one bidirectional layer over variable-length batches (shapes `paper`,
`full-length`, `infer1`; hidden 256 per direction, lengths uniform in [T/4, T] except `infer1`).

Providers (all differentiate with respect to the same x and parameter tensors):
  sublocal        sublocal_kernels.lstm (C++ on CPU, Triton on GPU)
  nn.LSTM-packed  torch.nn.LSTM on pack_padded_sequence(x, lengths, enforce_sorted=False),
                  unpacked with pad_packed_sequence: the same semantics (cuDNN on GPU; on CPU
                  one ATen cell per step, the path the issue measured 25-40x slower than padded)
  nn.LSTM-padded  torch.nn.LSTM on the padded batch: runs every sequence for all T steps (work
                  on padding, and the reverse direction starts in the padding), so its results
                  differ; the smoke check compares shapes only (oneDNN on CPU, cuDNN on GPU)
  ref-eager       sublocal_kernels.lstm_ref, the readable loop over time (GPU by default; on CPU
                  pass --bench-providers, it takes minutes per call at `paper`)
On CPU the default is `paper` with sublocal and both nn.LSTM peers; nn.LSTM-packed takes a few
minutes per forward+backward at `paper` on 2 cores (`--bench-modes fwd+bwd` keeps it short).

Cost: FLOPs count the valid steps only (what the op must do): per direction and valid step
2 * 4H * (C + H) forward and twice that backward, plus the cell. Bytes: x, the weights and the
outputs once (forward); the incoming gradients, x, the saved hidden states and the gradients
written once (backward); compute-bound at these shapes either way.
"""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import sublocal_kernels as sk
from benchmarks.common import SHAPES, BenchSpec, Shape, cost_of_mode, make_modes, random_lengths

LSTM_SHAPES = {name: SHAPES[name] for name in ("paper", "full-length", "infer1")}
# The scaling sweep of the first GPU run: where the recurrent kernel stands against cuDNN as the
# batch and the hidden size grow (T = 1000, lengths uniform in [250, 1000]; B = 1 is one sequence).
SWEEP_SHAPES = {f"sweep-B{B}-H{H}": Shape(f"sweep-B{B}-H{H}", B, 1000, C=20, hidden=H)
                for B in (1, 16, 128) for H in (64, 256, 1024)}


def nn_packed(module, x, lengths_cpu):
    T = x.shape[1]
    packed = pack_padded_sequence(x, lengths_cpu, batch_first=True, enforce_sorted=False)
    out, (h_n, c_n) = module(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
    return out, h_n, c_n


def nn_padded(module, x):
    out, (h_n, c_n) = module(x)
    return out, h_n, c_n


class LstmBench(BenchSpec):
    op = "lstm"
    shapes = {**LSTM_SHAPES, **SWEEP_SHAPES}
    all_providers = ("sublocal", "nn.LSTM-packed", "nn.LSTM-padded", "ref-eager")
    reference = "ref-eager"
    slow_on_cpu = ("nn.LSTM-packed", "ref-eager")
    # The reference loop takes seconds per call at full-length and in the sweep on a GPU.
    quick_skip = frozenset({("*", "ref-eager")})

    def default_shapes(self, device):
        return ["paper"] if device.type == "cpu" else ["paper", "full-length", "infer1", *SWEEP_SHAPES]

    def providers(self, device, smoke):
        if device.type == "cuda" or smoke:
            return list(self.all_providers)
        return ["sublocal", "nn.LSTM-packed", "nn.LSTM-padded"]

    def make_problem(self, shape: Shape, dtype, device):
        B, T, C, H = shape.B, shape.T, shape.C, shape.hidden
        module = torch.nn.LSTM(C, H, batch_first=True, bidirectional=True).to(device=device, dtype=dtype)
        x = torch.randn(B, T, C, device=device).to(dtype).requires_grad_()
        lengths = random_lengths(shape, device)
        return module, x, lengths, lengths.cpu()

    def build(self, problem, provider):
        module, x, lengths, lengths_cpu = problem
        weights = list(module.parameters())
        if provider == "sublocal":
            forward = lambda: sk.lstm(x, lengths, weights)  # noqa: E731
        elif provider == "nn.LSTM-packed":
            forward = lambda: nn_packed(module, x, lengths_cpu)  # noqa: E731
        elif provider == "nn.LSTM-padded":
            forward = lambda: nn_padded(module, x)  # noqa: E731
        elif provider == "ref-eager":
            forward = lambda: sk.lstm_ref(x, lengths, weights)  # noqa: E731
        else:
            raise ValueError(provider)
        return make_modes(forward, [x, *weights])

    def check(self, got, want, case) -> None:
        if case.provider == "nn.LSTM-padded":
            # Different semantics by design (it runs over padding): shapes and finiteness only.
            assert [tuple(g.shape) for g in got] == [tuple(w.shape) for w in want], case
            assert all(torch.isfinite(g).all() for g in got), case
            return
        super().check(got, want, case)

    def cost(self, shape, dtype, mode):
        B, T, C, H, D = shape.B, shape.T, shape.C, shape.hidden, 2
        steps = int(random_lengths(shape, "cpu").sum())  # valid (sequence, step) pairs
        es = torch.empty((), dtype=dtype).element_size()
        fwd_flops = D * steps * (2 * 4 * H * (C + H) + 10 * H)
        bwd_flops = D * steps * (2 * 2 * 4 * H * (C + H) + 2 * 4 * H * C + 15 * H)
        weights = D * (4 * H * (C + H) + 8 * H) * es
        fwd_bytes = (B * T * C + B * T * D * H + 2 * D * B * H) * es + weights
        bwd_bytes = (2 * B * T * D * H + 2 * B * T * C + 2 * D * B * H) * es + 2 * weights
        return cost_of_mode(mode, (fwd_bytes, fwd_flops), (bwd_bytes, bwd_flops))


SPEC = LstmBench()


def test_bench(bench, bench_case):
    bench.measure(SPEC, bench_case)
