"""Channel-wise attention pooling benchmark: Light Attention's pooling at its training shape.

Shape ``light-attention``: B=32, T=1000, lengths uniform in [250, 1000] (seeded), D=1024 channels
(ProtT5's width). Providers:
  sublocal      sublocal_kernels.channel_attention_pool (C++ on CPU, Triton on GPU), no alpha
  ref-eager     channel_attention_pool_ref: masked softmax over steps, weighted sum, masked max
  ref-compile   the same under torch.compile (fullgraph); GPU only by default
Outputs compared and differentiated: context and maxpool (B, D); inputs values and logits.

Floor (bandwidth-bound at every dtype: about 5 FLOPs per element read): the forward must read
the valid rows of values and logits once (2 N D elements, N = sum of lengths) and write the two
(B, D) outputs; the backward must read them again with the two (B, D) output gradients and
write both (B, T, D) input gradients in full (padding included: they are zero there). Bytes are
counted as streamed (``common.streamed_bytes``): reads plus writes, against the copy's
bandwidth measured in the same run.

Measured (2026-12-03, the 2-core AMD EPYC VM, 2 threads, float32, copy bandwidth 31.7 GB/s;
three runs): forward 8.7-12.9 ms (27-35% of the floor, 27-33x the eager reference), backward
42-64 ms (15-19%), forward+backward 47-75 ms (17-24%, 14-18x). Before the kernel's exp was the
vectorised polynomial (std::exp, a scalar call per element): 61.7 / 144.6 / 250.1 ms in the run
of benchmarks/results/cpu-2026-12-03.json. The forward is now bound by its arithmetic, about
3 G elements/s on 2 cores in cache, against the ~6 G elements/s that reading two float32 arrays
at this machine's ~49 GB/s read bandwidth would allow; the backward by the first touch of its
two fresh (B, T, D) gradients (the output cache, SUBLOCAL_CPU_CACHE_MB, removes that).
"""

from __future__ import annotations

import torch

import sublocal_kernels as sk
from benchmarks.common import BenchSpec, Shape, make_modes, random_lengths, streamed_bytes

LA_SHAPES = {"light-attention": Shape("light-attention", 32, 1000, D=1024)}


class ChannelAttentionPoolBench(BenchSpec):
    op = "channel_attention_pool"
    shapes = LA_SHAPES
    all_providers = ("sublocal", "ref-eager", "ref-compile")
    reference = "ref-eager"

    def __init__(self):
        super().__init__()
        self._compiled = None

    def providers(self, device, smoke):
        return ["sublocal", "ref-eager"] + (["ref-compile"] if device.type == "cuda" else [])

    def make_problem(self, shape: Shape, dtype, device):
        values = torch.randn(shape.B, shape.T, shape.D, device=device).to(dtype).requires_grad_()
        logits = torch.randn(shape.B, shape.T, shape.D, device=device).to(dtype).requires_grad_()
        return values, logits, random_lengths(shape, device)

    def build(self, problem, provider):
        values, logits, lengths = problem
        if provider == "sublocal":
            fn = sk.channel_attention_pool
        elif provider == "ref-eager":
            fn = sk.channel_attention_pool_ref
        elif provider == "ref-compile":
            if self._compiled is None:
                self._compiled = torch.compile(sk.channel_attention_pool_ref, fullgraph=True)
            fn = self._compiled
        else:
            raise ValueError(provider)
        return make_modes(lambda: fn(values, logits, lengths)[:2], [values, logits])

    def cost(self, shape, dtype, mode):
        n = int(random_lengths(shape, "cpu").sum())  # the same seeded lengths as the problem
        es = torch.empty((), dtype=dtype).element_size()
        out = 2 * shape.B * shape.D * es
        fwd = streamed_bytes(2 * n * shape.D * es, out)
        bwd = streamed_bytes(2 * n * shape.D * es + out, 2 * shape.B * shape.T * shape.D * es)
        # exp, running max and rescaled sums (forward); exp again, two products and sums (backward)
        fwd_flops, bwd_flops = 6 * n * shape.D, 8 * n * shape.D
        return {"fwd": (int(fwd), fwd_flops), "bwd": (int(bwd), bwd_flops),
                "fwd+bwd": (int(fwd + bwd), fwd_flops + bwd_flops)}[mode]


SPEC = ChannelAttentionPoolBench()


def test_bench(bench, bench_case):
    bench.measure(SPEC, bench_case)
