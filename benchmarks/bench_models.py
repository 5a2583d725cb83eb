"""Whole-model benchmark: one training step and one inference batch of each classifier
(R-LSTM, A-LSTM, CNN-LSTM, QRNN, TCN), ours against the same model built from ``torch.nn``.

Case names are ``<model>-<shape>``:
  paper     B=128, lengths uniform in [250, 1000] (docs/benchmarking.md `paper`), one-hot protein
  protein   B=64, lengths log-normal with median 450 (sigma 0.6), full length up to 5000, padded
            to the batch's longest: the length distribution of a protein training set
  rna       B=8, lengths uniform in [7500, 30000], one-hot nucleotides (QRNN and TCN only)
  decay     R-LSTM, B=32, T=1000 (all full length), forget-gate bias -4 at initialisation: a gradient
            that enters the recurrence only at the final states and decays about tenfold per
            step, so its tail is subnormal. The smoke run checks that the torch.nn build's LSTM
            input gradient holds subnormals and ours holds none.
The sizes are each model's defaults (the papers'; the shape's hidden and attention sizes for
R-LSTM and A-LSTM, which are the same), dropout 0 (the two builds then compute the same
function, checked once per case in the smoke run), float32.

Modes:
  train     forward, cross-entropy, backward, Adam step (model.train())
  infer     forward under torch.inference_mode() (model.eval())
Providers:
  sublocal    layers="sublocal", called with PyTorch's default floating-point mode (our
              kernels flush subnormals themselves; Linear and Adam do not)
  torch       layers="torch", PyTorch's defaults (IEEE subnormals)
  torch-ftz   layers="torch" under torch.set_flush_denormal(True), which sets flush-to-zero on
              the calling thread (the intra-op pool's threads keep theirs), what a user can set
Each provider trains its own copy of the same initial weights.

Floor: the matrix products the model cannot avoid, on valid positions only (``model_flops``).
Every weight matrix (a parameter of two or more dimensions: conv filters, LSTM and QRNN gate
weights, attention's W_a, the dense layers) costs 2 FLOPs per element each time it is applied:
once per valid (sequence, step) position, or once per sequence for the dense head. A training
step adds its weight gradient and its input gradient at the same cost each, less the input
gradient of the layer that reads the one-hot input (nothing needs it). The cell and attention
elementwise work, the softmax, dropout and Adam are left out, so the floor is a lower bound:
``floor_ms`` is those FLOPs at the run's measured matmul peak, and a peer's time over it bounds
the ratio any build could reach against that peer. Rows carry 0 bytes (the floor is the FLOPs').

Peak memory: ``python -m benchmarks.bench_models --memory`` runs one training step per
(model, shape, provider) in a fresh process (Linux) and reports the peak resident size during
the step (VmHWM, reset just before) above the resident size just before it (model, optimizer
and batch allocated, libraries warmed up on a small batch), with the output cache setting
(SUBLOCAL_CPU_CACHE_MB, default 2048: freed kernel outputs kept for reuse) stated.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass

import torch

from benchmarks.common import BenchSpec, Shape, peak_memory_child, peak_memory_in_subprocesses
from sublocal_kernels.data.alphabets import get_alphabet
from sublocal_kernels.models import build_model, convert_state_dict
from sublocal_kernels.training.fp_mode import flush_denormal

TINY = torch.finfo(torch.float32).tiny
NUM_CLASSES = 10


@dataclass(frozen=True)
class ModelShape(Shape):
    model: str = "rlstm"
    lengths: str = "uniform"  # or "lognormal": median `median`, sigma 0.6, clipped to [20, T]
    median: int = 450
    alphabet: str = "protein"
    forget_bias: float = 0.0
    smoke_min_T: int = 0  # the shortest T a scaled-down (smoke) copy keeps

    def scaled(self, **changes) -> "ModelShape":
        if "T" in changes:
            changes["T"] = max(changes["T"], min(self.T, self.smoke_min_T))
        return dataclasses.replace(self, **changes)


def _shapes() -> dict[str, ModelShape]:
    paper = dict(B=128, T=1000, widths=(1, 3, 5, 9, 15, 21), filters=10, hidden=256, attention=400)
    protein = dict(paper, B=64, T=5000, lengths="lognormal")
    rna = dict(B=8, T=30000, filters=256, hidden=256, attention=400, alphabet="nucleotide")
    out = {}
    for model in ("rlstm", "alstm", "cnnlstm", "qrnn", "tcn"):
        out[f"{model}-paper"] = ModelShape(f"{model}-paper", model=model, **paper)
        out[f"{model}-protein"] = ModelShape(f"{model}-protein", model=model, **protein)
    for model in ("qrnn", "tcn"):
        out[f"{model}-rna"] = ModelShape(f"{model}-rna", model=model, **rna)
    # Full lengths, and 240 steps in the smoke run: the gradient of the middle steps, about 120
    # steps from either end, decays through the whole subnormal range.
    out["rlstm-decay"] = ModelShape("rlstm-decay", model="rlstm", **dict(paper, B=32), min_length_frac=1.0,
                                    forget_bias=-4.0, smoke_min_T=240)
    return out


def model_config(shape: ModelShape) -> dict:
    cfg = dict(num_classes=NUM_CLASSES, alphabet=shape.alphabet, dropout=0.0)
    if shape.model in ("rlstm", "alstm"):
        cfg.update(widths=shape.widths, filters_per_width=shape.filters, hidden_size=shape.hidden,
                   forget_bias=shape.forget_bias)
    if shape.model == "alstm":
        cfg.update(attention_size=shape.attention)
    if shape.model == "qrnn":
        cfg.update(hidden_size=shape.hidden, attention_size=shape.attention)
    return cfg


def make_lengths(shape: ModelShape, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if shape.lengths == "lognormal":
        z = torch.randn(shape.B, generator=g, dtype=torch.float64)
        return (math.log(shape.median) + 0.6 * z).exp().round().clamp(min(20, shape.T), shape.T).long()
    low = max(1, math.ceil(shape.T * shape.min_length_frac))
    return torch.randint(low, shape.T + 1, (shape.B,), generator=g)


def make_batch(shape: ModelShape, seed: int = 0):
    lengths = make_lengths(shape, seed)
    T = int(lengths.max())
    letters = len(get_alphabet(shape.alphabet).letters)
    g = torch.Generator().manual_seed(seed + 1)
    tokens = torch.randint(1, letters + 1, (shape.B, T), generator=g)
    tokens[torch.arange(T)[None, :] >= lengths[:, None]] = 0
    labels = torch.randint(0, NUM_CLASSES, (shape.B,), generator=g)
    return tokens, lengths, labels


def subnormal_count(t: torch.Tensor) -> int:
    return int(((t != 0) & (t.abs() < TINY)).sum())


class ModelsBench(BenchSpec):
    op = "models"
    shapes = _shapes()
    all_providers = ("sublocal", "torch", "torch-ftz")
    reference = "torch"
    modes = ("train", "infer")
    # One case per model in the smoke run, every shape kind among them (the rest share the code).
    smoke_shapes = ("rlstm-paper", "rlstm-decay", "alstm-protein", "cnnlstm-paper", "qrnn-rna", "tcn-paper")

    def default_shapes(self, device):
        return list(self.shapes) if device.type == "cpu" else []

    def providers(self, device, smoke):
        # The smoke run leaves out torch-ftz: the same torch.nn build, under flush_denormal
        # (tested with the trainer).
        return ["sublocal", "torch"] if smoke else list(self.all_providers)

    def supports(self, provider, mode, device, smoke):
        # CPU only for now (the GPU builds need the fused layers' Triton paths timed with CUDA
        # events).
        return device.type == "cpu" and mode in self.modes

    def in_profile(self, profile, shape, provider, device):
        # Whole models take minutes per case on a CPU: not in the quick profile (make demo).
        return profile != "quick"

    def make_problem(self, shape: ModelShape, dtype, device):
        cfg = model_config(shape)
        template = build_model(shape.model, layers="sublocal", **cfg).to(dtype)
        return shape, cfg, template, make_batch(shape)

    def build(self, problem, provider):
        shape, cfg, template, (tokens, lengths, labels) = problem
        layers = "sublocal" if provider == "sublocal" else "torch"
        model = build_model(shape.model, layers=layers, **cfg).to(next(template.parameters()).dtype)
        state = template.state_dict()
        model.load_state_dict(state if layers == "sublocal" else convert_state_dict(state, model, to="torch"))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        captured = {}
        if shape.name.endswith("-decay"):
            # The gradient reaching the LSTM's input: where the decayed gradient leaves the recurrence.
            def hook(module, args):
                if args[0].requires_grad:
                    args[0].retain_grad()
                    captured["x"] = args[0]
            model.lstm.register_forward_pre_hook(hook)

        def train():
            model.train()
            opt.zero_grad(set_to_none=False)
            loss = torch.nn.functional.cross_entropy(model(tokens, lengths), labels)
            loss.backward()
            opt.step()
            grads = {k: p.grad for k, p in model.named_parameters()}
            if layers == "torch":
                grads = convert_state_dict(grads, template, to="sublocal")
            flat = torch.cat([grads[k].reshape(-1) for k, _ in template.named_parameters()])
            extra = (captured.pop("x").grad,) if "x" in captured else ()
            return (loss.detach(), flat) + extra

        def infer():
            model.eval()
            with torch.inference_mode():
                return (model(tokens, lengths),)

        fns = {"train": train, "infer": infer}
        if provider == "torch-ftz":
            fns = {mode: _flushed(fn) for mode, fn in fns.items()}
        return fns

    def check(self, got, want, case) -> None:
        if case.shape.name.endswith("-decay") and case.mode == "train":
            n_ref = subnormal_count(want[2])
            assert n_ref > 0, f"{case}: the torch.nn build's LSTM input gradient holds no subnormals"
            if case.provider == "sublocal":
                assert subnormal_count(got[2]) == 0, f"{case}: our LSTM input gradient holds subnormals"
            got, want = got[:2], want[:2]
        super().check(got, want, case)

    def cost(self, shape, dtype, mode):
        return 0, model_flops(shape, mode)


def _reads_the_input(model, name: str) -> bool:
    """Whether parameter ``name`` belongs to the layer applied to the encoded (one-hot) input,
    whose input gradient no one needs."""
    first = model.first_conv() if hasattr(model, "first_conv") else None
    if first is not None:
        prefix = next((n + "." for n, m in model.named_modules() if m is first), None)
        if prefix is not None and name.startswith(prefix):
            return True
    return name.startswith(("qrnn.weight_l0", "skips.0."))


def model_flops(shape: ModelShape, mode: str) -> int:
    """The whole model's matrix-product FLOPs on valid positions (see the module docstring)."""
    model = build_model(shape.model, layers="sublocal", **model_config(shape))
    positions = int(make_lengths(shape).sum())
    total = 0
    for name, p in model.named_parameters():
        if p.dim() < 2:
            continue
        rows = shape.B if name.startswith("head.") else positions
        fwd = 2 * p.numel() * rows
        total += fwd if mode == "infer" else fwd * (2 if _reads_the_input(model, name) else 3)
    return total


def _flushed(fn):
    def run():
        with flush_denormal():
            return fn()
    return run


SPEC = ModelsBench()


def test_bench(bench, bench_case):
    bench.measure(SPEC, bench_case)


# ---- CPU peak memory (python -m benchmarks.bench_models --memory) ------------------------------

def _peak_memory_child(provider: str, shape_name: str, threads: int) -> dict:
    spec = ModelsBench()
    shape = spec.shapes[shape_name]
    return {"model": shape.model, **peak_memory_child(spec, shape, provider, "train", threads)}


def measure_peak_memory(shape_names, threads: int = 2, providers=("sublocal", "torch")) -> list[dict]:
    """Each (shape, provider)'s CPU peak memory over one training step, each in a fresh process."""
    return peak_memory_in_subprocesses("benchmarks.bench_models", [[p, "--shapes", name, "--threads", str(threads)]
                                                                   for name in shape_names for p in providers])


def record_peak_memory(results, rows: list[dict]) -> int:
    """Writes each measured peak (MB above the resident size before the step) into the matching
    training-step row of the results file ``results`` (``peak_mem_mb``), with the settings under
    ``models_peak_memory``; returns the number of rows updated."""
    from pathlib import Path

    from benchmarks.common import write_doc

    path = Path(results)
    doc = json.loads(path.read_text())
    peaks = {(r["shape"], r["provider"]): r for r in rows}
    updated = 0
    for row in doc["rows"]:
        hit = peaks.get((row["shape"], row["provider"])) if row["op"] == "models" and row["mode"] == "train" else None
        if hit is not None:
            row["peak_mem_mb"] = round(hit["peak_above_before_mb"], 1)
            updated += 1
    doc["models_peak_memory"] = {
        "measure": "peak RSS (VmHWM) during one training step above the RSS just before it, fresh process each",
        "threads": sorted({r["threads"] for r in rows}), "output_cache_mb": sorted({r["output_cache_mb"] for r in rows})}
    write_doc(path, doc)
    return updated


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="whole-model CPU peak memory per provider (one training step)")
    ap.add_argument("--memory", action="store_true", help="measure each provider's peak memory")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--shapes", default="rlstm-paper,alstm-paper", help="comma-separated case names")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--providers", default="sublocal,torch", help="comma-separated providers to measure")
    ap.add_argument("--results", default=None, help="also write the peaks into this results file's training rows")
    args = ap.parse_args()
    if args.memory_child:
        print(json.dumps(_peak_memory_child(args.memory_child, args.shapes, args.threads)))
    elif args.memory:
        rows = measure_peak_memory(args.shapes.split(","), args.threads, args.providers.split(","))
        for r in rows:
            print(json.dumps(r))
        for name in args.shapes.split(","):
            ours = next(r for r in rows if r["shape"] == name and r["provider"] == "sublocal")
            for r in rows:
                if r["shape"] == name and r["provider"] != "sublocal":
                    ratio = ours["peak_above_before_mb"] / r["peak_above_before_mb"]
                    print(f"{name}: sublocal / {r['provider']} peak memory: {ratio:.2f}")
        if args.results:
            print(f"{args.results}: {record_peak_memory(args.results, rows)} training rows given their peak memory")
    else:
        ap.print_help()
