"""fo-pool benchmark: the QRNN recurrence at the fo-pool shapes (dense sequences).

Providers:
  sublocal          sublocal_kernels.fo_pool (C++ on CPU; Triton, or CUDA C++ with
                    SUBLOCAL_FO_POOL_BACKEND=cuda, on GPU)
  ref-eager         a plain PyTorch loop over time (unbind, autograd for the backward)
  ref-compile       the same recurrence as torch's `scan` higher-order op under torch.compile
                    (compiling the Python loop itself would unroll T steps); not run by default
                    on CPU, where one compile takes about a minute here
  accelerated-scan  the accelerated-scan package's Triton scan (GPU, where installed), on
                    transposed (B, D, T) copies with T padded to a power of two
Bytes: fwd reads f, z, o and writes h; bwd reads dh, f, z, o and writes df, dz, do (the
checkpoints, 1/32 of a state tensor, are left out), counted as streamed reads and writes
against the copy yardstick's bus traffic (common.streamed_bytes: the yardstick's stores also
read their lines, which streaming stores need not).
"""

from __future__ import annotations

import importlib.util

import torch

import sublocal_kernels as sk
from benchmarks.common import FO_POOL_SHAPES, BenchSpec, Shape, make_modes, streamed_bytes


def loop_fo_pool(f, z, o):
    """The plain eager peer: one step per time index, batched over (B, D)."""
    c = torch.zeros_like(f[:, 0])
    hs = []
    for ft, zt, ot in zip(f.unbind(1), z.unbind(1), o.unbind(1)):
        c = ft * c + (1 - ft) * zt
        hs.append(ot * c)
    return torch.stack(hs, 1), c


def _scan_step(c, xs):
    ft, zt, ot = xs
    c = ft * c + (1 - ft) * zt
    return c.clone(), ot * c


def scan_fo_pool(f, z, o):
    from torch._higher_order_ops.scan import scan

    c_last, h = scan(_scan_step, torch.zeros_like(f[:, 0]), (f, z, o), dim=1)
    return h, c_last


def accelerated_scan_fo_pool(f, z, o):
    from accelerated_scan.triton import scan

    B, T, D = f.shape
    T2 = max(32, 1 << (T - 1).bit_length())
    gates = torch.ones(B, D, T2, device=f.device, dtype=f.dtype)
    tokens = torch.zeros(B, D, T2, device=f.device, dtype=f.dtype)
    gates = gates.index_put((slice(None), slice(None), torch.arange(T, device=f.device)), f.transpose(1, 2))
    tokens = tokens.index_put((slice(None), slice(None), torch.arange(T, device=f.device)),
                              ((1 - f) * z).transpose(1, 2))
    c = scan(gates, tokens)[..., :T].transpose(1, 2)
    return o * c, c[:, -1]


class FoPoolBench(BenchSpec):
    op = "fo_pool"
    shapes = FO_POOL_SHAPES
    all_providers = ("sublocal", "ref-eager", "ref-compile", "accelerated-scan")
    reference = "ref-eager"
    # 100,000 steps of the eager loop: tens of seconds per forward+backward on a GPU.
    quick_skip = frozenset({("long1", "ref-eager")})

    def __init__(self):
        super().__init__()
        self._compiled = None

    def default_shapes(self, device):
        return ["rna"] if device.type == "cpu" else ["qrnn", "rna", "long1", "wide"]

    def providers(self, device, smoke):
        providers = ["sublocal", "ref-eager"]
        if device.type == "cuda":
            providers.append("ref-compile")
            if importlib.util.find_spec("accelerated_scan") is not None:
                providers.append("accelerated-scan")
        return providers

    def make_problem(self, shape: Shape, dtype, device):
        B, T, D = shape.B, shape.T, shape.D
        f = torch.rand(B, T, D, device=device).to(dtype).requires_grad_()
        z = torch.randn(B, T, D, device=device).to(dtype).requires_grad_()
        o = torch.rand(B, T, D, device=device).to(dtype).requires_grad_()
        return f, z, o

    def build(self, problem, provider):
        f, z, o = problem
        if provider == "sublocal":
            forward = lambda: sk.fo_pool(f, z, o)  # noqa: E731
        elif provider == "ref-eager":
            forward = lambda: loop_fo_pool(f, z, o)  # noqa: E731
        elif provider == "ref-compile":
            if self._compiled is None:
                self._compiled = torch.compile(scan_fo_pool, fullgraph=True)
            forward = lambda: self._compiled(f, z, o)  # noqa: E731
        elif provider == "accelerated-scan":
            forward = lambda: accelerated_scan_fo_pool(f, z, o)  # noqa: E731
        else:
            raise ValueError(provider)
        return make_modes(forward, [f, z, o])

    def cost(self, shape, dtype, mode):
        n = shape.B * shape.T * shape.D
        es = torch.empty((), dtype=dtype).element_size()
        reads, writes = {"fwd": (3, 1), "bwd": (4, 3), "fwd+bwd": (7, 4)}[mode]
        flops = {"fwd": 5, "bwd": 10, "fwd+bwd": 15}[mode] * n
        return int(streamed_bytes(reads * n * es, writes * n * es)), flops


SPEC = FoPoolBench()


def test_bench(bench, bench_case):
    bench.measure(SPEC, bench_case)
