"""Language-model benchmark: one ProteinLM training step (forward, next-residue cross-entropy,
backward, Adam) over a batch of protein-like lengths, in residues per second.

Cases (``lm-h<H>x<layers>``): a residue embedding of 10 (UniRep's), unidirectional LSTM layers
of H units, a linear head over 27 tokens, dropout 0, float32; B = 32 sequences whose lengths
are log-normal with median 300 and sigma 0.7, clipped to [20, 2000] (UniRef50-like), generated
from a seed. ``lm-h512x2`` and ``lm-h1024x1`` are the issue's configurations.

Providers (each trains its own copy of the same initial weights on the same tokens):
  sublocal        ProteinLM(layers="sublocal"): the packed kernel, the batch as drawn (unsorted)
  nn.LSTM-packed  ProteinLM(layers="torch"): torch.nn.LSTM on a PackedSequence (cuDNN on GPU;
                  one ATen cell per step on CPU)
  nn.LSTM-padded  the competent torch.nn peer: the batch sorted by length and cut into 4 padded
                  sub-batches of 8 (so little padding is computed), torch.nn.LSTM on each
                  padded tensor (oneDNN on CPU), gradients accumulated, one Adam step. The
                  loss reads valid positions only and the LSTM is unidirectional, so its loss
                  and gradients equal the others' (the smoke run checks it).
Rows give ms per step; residues per second = the case's valid residues (printed by
``python -m benchmarks.bench_language_model``) / time.

Floor: FLOPs of the valid steps only, per layer and residue 2 * 4H * (C + H) forward (C the
layer's input width) and twice that backward, plus the head (2 * 27H, times 3); bytes: the
parameters read, their gradients written, Adam's two moments read and written and the
parameters written back (float32). Compute-bound either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from benchmarks.common import BenchSpec, Shape
from sublocal_kernels.models import ProteinLM
from sublocal_kernels.models.language_model import VOCAB_SIZE

EMBEDDING = 10
SUB_BATCHES = 4


@dataclass(frozen=True)
class LMShape(Shape):
    layers: int = 1
    median: int = 300
    sigma: float = 0.7


SHAPES = {
    "lm-h512x2": LMShape("lm-h512x2", B=32, T=2000, C=EMBEDDING, hidden=512, layers=2),
    "lm-h1024x1": LMShape("lm-h1024x1", B=32, T=2000, C=EMBEDDING, hidden=1024, layers=1),
}


def make_lengths(shape: LMShape, seed: int = 0) -> torch.Tensor:
    """Log-normal lengths (median ``shape.median``), clipped to [min(20, T), T]."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(shape.B, generator=g, dtype=torch.float64)
    return (math.log(shape.median) + shape.sigma * z).exp().round().clamp(min(20, shape.T), shape.T).long()


def make_batch(shape: LMShape, seed: int = 0):
    lengths = make_lengths(shape, seed)
    T = int(lengths.max())
    g = torch.Generator().manual_seed(seed + 1)
    tokens = torch.randint(1, 21, (shape.B, T), generator=g)
    tokens[torch.arange(T)[None, :] >= lengths[:, None]] = 0
    return tokens, lengths


def residues(shape: LMShape) -> int:
    return int(make_lengths(shape).sum())


class LanguageModelBench(BenchSpec):
    op = "language_model"
    shapes = SHAPES
    all_providers = ("sublocal", "nn.LSTM-packed", "nn.LSTM-padded")
    reference = "nn.LSTM-packed"
    modes = ("train",)
    slow_on_cpu = ("nn.LSTM-packed",)
    smoke_shapes = ("lm-h512x2",)

    def default_shapes(self, device):
        return list(self.shapes)

    def supports(self, provider, mode, device, smoke):
        return mode in self.modes

    def in_profile(self, profile, shape, provider, device):
        return profile != "quick"  # seconds per training step on a CPU: not in the demo or the first GPU call

    def make_problem(self, shape: LMShape, dtype, device):
        torch.manual_seed(0)
        template = ProteinLM(hidden_size=shape.hidden, num_layers=shape.layers, embedding_dim=shape.C or 1)
        tokens, lengths = make_batch(shape)
        return shape, template.to(dtype), tokens.to(device), lengths.to(device), device

    def build(self, problem, provider):
        shape, template, tokens, lengths, device = problem
        layers = "sublocal" if provider == "sublocal" else "torch"
        model = ProteinLM(**dict(template.config, layers=layers)).to(device, next(template.parameters()).dtype)
        model.load_state_dict(template.state_dict())
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        total = int(lengths.sum()) + len(lengths)  # targets: the residues and one END each
        if provider == "nn.LSTM-padded":
            order = torch.argsort(lengths.cpu(), descending=True)
            parts = [p for p in order.chunk(SUB_BATCHES) if len(p)]

        def loss_of(tok, lens, padded: bool):
            if not padded:
                return model.score(tok, lens)[0]
            T = int(lens.max())
            tok = tok[:, :T]
            inp, _ = ProteinLM.inputs(tok, lens)
            out, _ = model.lstm(model.embedding(inp))  # every row run for all T + 1 steps
            return ProteinLM.score_logits(model.head(out), tok, lens)[0]

        def train():
            model.train()
            opt.zero_grad(set_to_none=False)
            if provider == "nn.LSTM-padded":
                loss = 0.0
                for p in parts:
                    p = p.to(device)
                    part = loss_of(tokens[p], lengths[p], True) / total
                    part.backward()
                    loss = loss + part.detach()
            else:
                loss = loss_of(tokens, lengths, False) / total
                loss.backward()
                loss = loss.detach()
            opt.step()
            flat = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
            return loss.reshape(1), flat

        return {"train": train}

    def cost(self, shape: LMShape, dtype, mode):
        n = residues(shape) + shape.B  # the LSTM's steps: START and every residue
        H, flops = shape.hidden, 0
        for layer in range(shape.layers):
            C = shape.C if layer == 0 else H
            flops += 3 * 2 * 4 * H * (C + H) * n
        flops += 3 * 2 * H * VOCAB_SIZE * n
        params = sum(4 * H * ((shape.C if k == 0 else H) + H + 2) for k in range(shape.layers))
        params += (H + 1) * VOCAB_SIZE + VOCAB_SIZE * (shape.C or 1)
        itemsize = torch.empty((), dtype=dtype).element_size()
        return 7 * params * itemsize, flops


SPEC = LanguageModelBench()


def test_bench(bench, bench_case):
    bench.measure(SPEC, bench_case)


if __name__ == "__main__":
    for name, shape in SHAPES.items():
        print(f"{name}: B={shape.B}, {residues(shape)} residues, longest {int(make_lengths(shape).max())}")
