"""Multi-width conv1d benchmark: the conv bank of the convolutional LSTM models at `paper`,
`paper80` and `full-length` (lengths uniform in [T/4, T]).

Providers:
  sublocal     sublocal_kernels.multiwidth_conv1d (C++ on CPU, Triton on GPU)
  ref-eager    what a PyTorch model does: mask the padding, one F.conv1d per width on the
               (B, C, T) transpose, torch.cat, ReLU, mask the outputs, transpose back
  ref-compile  the same function under torch.compile (GPU by default; on CPU one compile takes
               about a minute here, ask for it with --bench-providers)
  conv21       one nn.Conv1d of width 21 holding every width's filters zero-padded to 21 taps
               (built from the per-width weights inside the timed region, so gradients reach
               the same parameters)
Bytes: fwd reads x and writes y (every position, padding included); bwd reads dy, y (the ReLU
mask) and x and writes dx. FLOPs: 2 * C * sum(k_i F_i) per valid position for each of the
forward, the input gradient and the weight gradient (expected valid positions: lengths are
uniform in [T/4, T]).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import sublocal_kernels as sk
from benchmarks.common import SHAPES, BenchSpec, Shape, make_modes, random_lengths


def eager_bank(x, weights, biases, mask):
    """The eager peer: six convolutions, a concatenation, a ReLU and the masks."""
    xt = (x * mask[:, :, None]).transpose(1, 2).contiguous()
    y = torch.cat([F.conv1d(xt, w, b, padding=w.shape[2] // 2) for w, b in zip(weights, biases)], 1)
    return (torch.relu(y).transpose(1, 2) * mask[:, :, None],)


def conv21_bank(x, weights, biases, mask):
    """One conv of the widest width over every filter, narrower kernels zero-padded (centred)."""
    k = max(w.shape[2] for w in weights)
    w21 = torch.cat([F.pad(w, ((k - w.shape[2]) // 2, (k - w.shape[2]) // 2)) for w in weights], 0)
    xt = (x * mask[:, :, None]).transpose(1, 2).contiguous()
    y = F.conv1d(xt, w21, torch.cat(biases), padding=k // 2)
    return (torch.relu(y).transpose(1, 2) * mask[:, :, None],)


class MultiwidthConv1dBench(BenchSpec):
    op = "multiwidth_conv1d"
    shapes = {name: SHAPES[name] for name in ("paper", "paper80", "full-length")}
    all_providers = ("sublocal", "ref-eager", "ref-compile", "conv21")
    reference = "ref-eager"

    def __init__(self):
        super().__init__()
        self._compiled = None

    def default_shapes(self, device):
        # The eager peer's backward takes seconds per call at `paper` on the 2-core CPU machine.
        return ["paper"] if device.type == "cpu" else ["paper", "paper80", "full-length"]

    def providers(self, device, smoke):
        providers = ["sublocal", "ref-eager", "conv21"]
        if device.type == "cuda":
            providers.append("ref-compile")
        return providers

    def make_problem(self, shape: Shape, dtype, device):
        B, T, C = shape.B, shape.T, shape.C
        x = torch.randn(B, T, C, device=device).to(dtype).requires_grad_()
        weights = [(torch.randn(shape.filters, C, k, device=device) / math.sqrt(C * k)).to(dtype).requires_grad_()
                   for k in shape.widths]
        biases = [(0.1 * torch.randn(shape.filters, device=device)).to(dtype).requires_grad_() for _ in shape.widths]
        lengths = random_lengths(shape, device)
        mask = (torch.arange(T, device=device)[None, :] < lengths[:, None]).to(dtype)
        return x, weights, biases, lengths, mask

    def build(self, problem, provider):
        x, weights, biases, lengths, mask = problem
        if provider == "sublocal":
            forward = lambda: (sk.multiwidth_conv1d(x, lengths, weights, biases),)  # noqa: E731
        elif provider == "ref-eager":
            forward = lambda: eager_bank(x, weights, biases, mask)  # noqa: E731
        elif provider == "ref-compile":
            if self._compiled is None:
                self._compiled = torch.compile(eager_bank, fullgraph=True)
            forward = lambda: self._compiled(x, weights, biases, mask)  # noqa: E731
        elif provider == "conv21":
            forward = lambda: conv21_bank(x, weights, biases, mask)  # noqa: E731
        else:
            raise ValueError(provider)
        return make_modes(forward, [x, *weights, *biases])

    def cost(self, shape, dtype, mode):
        es = torch.empty((), dtype=dtype).element_size()
        N = shape.filters * len(shape.widths)
        x_elems, y_elems = shape.B * shape.T * shape.C, shape.B * shape.T * N
        low = max(1, math.ceil(shape.T * shape.min_length_frac))
        valid = shape.B * (low + shape.T) / 2
        product = 2 * valid * shape.C * shape.filters * sum(shape.widths)
        fwd_bytes = (x_elems + y_elems) * es
        bwd_bytes = (2 * y_elems + 2 * x_elems) * es
        return {"fwd": (fwd_bytes, product), "bwd": (bwd_bytes, 2 * product),
                "fwd+bwd": (fwd_bytes + bwd_bytes, 3 * product)}[mode]


SPEC = MultiwidthConv1dBench()


def test_bench(bench, bench_case):
    bench.measure(SPEC, bench_case)
