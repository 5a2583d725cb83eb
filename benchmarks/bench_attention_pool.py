"""Attention-pooling benchmark: the A-LSTM attention layer at `paper`, `full-length` and `rna`.

Providers:
  sublocal      sublocal_kernels.attention_pool (C++ on CPU, Triton on GPU)
  ref-eager     attention_pool_ref: Linear, tanh, product with v_a, masked softmax, bmm (eager)
  ref-compile   the same function under torch.compile (fullgraph); not run by default on CPU,
                where the first compile takes about half a minute here
Inputs: h (B, T, D) with D = 2 x the LSTM hidden size (the shape's D for `rna`), lengths
uniform in [T/4, T] (seeded), A = the shape's attention size; gradients for h, w_a, v_a, b_a.
Floor: the forward must read the valid rows of h and do the 2 N D A FLOPs of the scores
(N = sum of lengths); the backward must read them again and do 4 N D A FLOPs (dh and dW_a),
and write all of dh. Compute-bound at every shape here.

CPU peak memory is not in the harness's rows (there is no CPU allocator high-water mark);
``python -m benchmarks.bench_attention_pool --memory`` measures it per provider, each in a
fresh process (Linux), as the peak resident size during one forward+backward (VmHWM, reset just
before) minus the resident size just before it (inputs allocated, libraries warmed up on a
small shape): everything the op allocates, i.e. its saved state, workspace, outputs and
gradients, and not the inputs both providers share.
"""

from __future__ import annotations

import torch

import sublocal_kernels as sk
from benchmarks.common import SHAPES, BenchSpec, Shape, make_modes, peak_memory_main, random_lengths

ATTENTION_SHAPES = {name: SHAPES[name] for name in ("paper", "full-length", "rna")}


def _dims(shape: Shape) -> tuple[int, int]:
    return (shape.D or 2 * shape.hidden), shape.attention


class AttentionPoolBench(BenchSpec):
    op = "attention_pool"
    shapes = ATTENTION_SHAPES
    all_providers = ("sublocal", "ref-eager", "ref-compile")
    reference = "ref-eager"

    def __init__(self):
        super().__init__()
        self._compiled = None

    def default_shapes(self, device):
        return ["paper"] if device.type == "cpu" else ["paper", "full-length", "rna"]

    def providers(self, device, smoke):
        return ["sublocal", "ref-eager"] + (["ref-compile"] if device.type == "cuda" else [])

    def make_problem(self, shape: Shape, dtype, device):
        D, A = _dims(shape)
        h = torch.randn(shape.B, shape.T, D, device=device).to(dtype).requires_grad_()
        w = (torch.randn(D, A, device=device) / D ** 0.5).to(dtype).requires_grad_()
        v = (torch.randn(A, device=device) / A ** 0.5).to(dtype).requires_grad_()
        b = (0.1 * torch.randn(A, device=device)).to(dtype).requires_grad_()
        return h, random_lengths(shape, device), w, v, b

    def build(self, problem, provider):
        h, lengths, w, v, b = problem
        if provider == "sublocal":
            fn = sk.attention_pool
        elif provider == "ref-eager":
            fn = sk.attention_pool_ref
        elif provider == "ref-compile":
            if self._compiled is None:
                self._compiled = torch.compile(sk.attention_pool_ref, fullgraph=True)
            fn = self._compiled
        else:
            raise ValueError(provider)
        return make_modes(lambda: fn(h, lengths, w, v, b), [h, w, v, b])

    def cost(self, shape, dtype, mode):
        D, A = _dims(shape)
        n = int(random_lengths(shape, "cpu").sum())  # the same seeded lengths as the problem
        es = torch.empty((), dtype=dtype).element_size()
        params = (D * A + 2 * A) * es
        fwd_bytes = n * D * es + params + (shape.B * D + shape.B * shape.T) * es
        bwd_bytes = n * D * es + 2 * params + shape.B * shape.T * D * es + 3 * (shape.B * D + shape.B * shape.T) * es
        fwd_flops = 2 * n * D * A + 4 * n * A + 2 * n * D
        bwd_flops = 4 * n * D * A + 6 * n * A + 4 * n * D
        return {"fwd": (fwd_bytes, fwd_flops), "bwd": (bwd_bytes, bwd_flops),
                "fwd+bwd": (fwd_bytes + bwd_bytes, fwd_flops + bwd_flops)}[mode]


SPEC = AttentionPoolBench()


def test_bench(bench, bench_case):
    bench.measure(SPEC, bench_case)


# ---- CPU peak memory (python -m benchmarks.bench_attention_pool --memory) ----------------------

if __name__ == "__main__":
    peak_memory_main("benchmarks.bench_attention_pool", AttentionPoolBench(), SHAPES, "fwd+bwd", "paper",
                     ("sublocal", "ref-eager"), "attention-pool CPU peak memory per provider")
