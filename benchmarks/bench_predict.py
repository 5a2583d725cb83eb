"""Proteome-scale prediction: sequences per second and peak memory of ``sublocal predict`` on a
synthetic proteome, against the same model built from ``torch.nn``.

Data (generated here, seeded): ``B`` sequences with the human proteome's length distribution,
log-normal with median 415 and mean 560 (sigma 0.774), clipped to [20, 35000], with three
records set to 10,500, 12,000 and 15,000 residues and one to 35,000 (titin), at fixed positions.
Random residues; one-hot protein encoding; 10 classes; dropout 0; float32.

Cases ``<model>-proteome`` (R-LSTM, A-LSTM at the paper's sizes: widths 1..21 x 10 filters,
hidden 256, attention 400), ``B`` = 20,000 sequences (``--count`` in the measurement run).

Providers (one call predicts every sequence; the result is the ``(B, classes)`` probabilities in
input order):
  sublocal        ``sublocal_kernels.inference.predict`` end to end: FASTA file to TSV file
                  (streamed in windows of 1024 records, token-budget batches of 32768 padded
                  residues, under inference_mode), the probabilities read back from the TSV
  sublocal-train  our model's training-path forward (grad mode on, parameters requiring grad,
                  model.eval()) over the same batches, tokens already in memory
  torch           the model built with ``layers="torch"`` (nn.Conv1d, nn.LSTM on a
                  PackedSequence, ...) under ``torch.inference_mode()`` over the same length-sorted
                  token-budget batches, tokens already in memory: what a competent user writes
The peers start from tokens in memory, ours from the FASTA file: the comparison favours them.

Measurement run (fresh process per provider; time and peak resident memory of one call):
    python -m benchmarks.bench_predict --measure --count 2000 --models alstm --threads 2
prints one JSON line per (model, provider) with seconds, sequences/s, the resident size before
the call and the peak above it (VmHWM, reset just before), and the ratios to the torch build.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.common import BenchSpec, Shape, peak_memory_in_subprocesses, peak_rss_above, smoke
from sublocal_kernels.data import SequenceDataset, collate
from sublocal_kernels.data.alphabets import get_alphabet
from sublocal_kernels.data.readers import Record
from sublocal_kernels.inference import PredictorSpec, predict, token_batches
from sublocal_kernels.models import build_model, convert_state_dict
from sublocal_kernels.training import save_checkpoint

NUM_CLASSES = 10
CLASSES = [f"class{i}" for i in range(NUM_CLASSES)]
MEDIAN, SIGMA = 415, 0.774  # mean = median * exp(sigma^2 / 2) = 560
LONG = (10_500, 12_000, 15_000)
WINDOW, MAX_TOKENS, MAX_RECORDS = 1024, 32768, 256


@dataclass(frozen=True)
class ProteomeShape(Shape):
    model: str = "alstm"


def _shapes() -> dict[str, ProteomeShape]:
    paper = dict(B=20_000, T=35_000, widths=(1, 3, 5, 9, 15, 21), filters=10, hidden=256, attention=400)
    return {f"{m}-proteome": ProteomeShape(f"{m}-proteome", model=m, **paper) for m in ("rlstm", "alstm")}


def proteome_lengths(n: int, longest: int, seed: int = 0) -> np.ndarray:
    """``n`` lengths: log-normal (median 415, mean 560) in [20, longest], the planted long records
    scaled to ``longest`` (35,000 at full size) where ``n`` has room for them."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.round(np.exp(math.log(MEDIAN) + SIGMA * rng.standard_normal(n))), min(20, longest), longest)
    lengths = lengths.astype(np.int64)
    planted = [max(1, round(longest * x / 35_000)) for x in LONG] + [longest]
    if n < 2 * len(planted):  # a smoke-sized set: only the longest
        planted = planted[-1:]
    for k, value in enumerate(planted):
        lengths[(k + 1) * n // (len(planted) + 1)] = value
    return lengths


def proteome_records(n: int, longest: int, seed: int = 0) -> list[Record]:
    letters = get_alphabet("protein").letters
    rng = np.random.default_rng(seed + 1)
    table = np.frombuffer(letters.encode(), dtype=np.uint8)
    return [Record(f"SYN{i:06d}", table[rng.integers(0, len(table), int(n_res))].tobytes().decode())
            for i, n_res in enumerate(proteome_lengths(n, longest, seed))]


def model_config(shape: ProteomeShape) -> dict:
    cfg = dict(num_classes=NUM_CLASSES, dropout=0.0, widths=shape.widths, filters_per_width=shape.filters,
               hidden_size=shape.hidden)
    if shape.model == "alstm":
        cfg["attention_size"] = shape.attention
    return cfg


class PredictBench(BenchSpec):
    op = "predict"
    shapes = _shapes()
    all_providers = ("sublocal", "sublocal-train", "torch")
    reference = "torch"
    modes = ("infer",)

    def default_shapes(self, device):
        return list(self.shapes) if device.type == "cpu" else []

    def supports(self, provider, mode, device, smoke):
        return device.type == "cpu" and mode == "infer"

    def in_profile(self, profile, shape, provider, device):
        return profile != "quick"  # minutes per call on a CPU: not in the demo

    def make_problem(self, shape: ProteomeShape, dtype, device):
        records = proteome_records(shape.B, shape.T)
        work = tempfile.mkdtemp(prefix="sublocal-bench-predict-")
        atexit.register(shutil.rmtree, work, True)
        fasta = os.path.join(work, "proteome.fasta")
        with open(fasta, "w") as fh:
            for r in records:
                fh.write(f">{r.id}\n")
                fh.writelines(r.sequence[k:k + 60] + "\n" for k in range(0, len(r.sequence), 60))
        cfg = model_config(shape)
        torch.manual_seed(0)
        template = build_model(shape.model, layers="sublocal", **cfg).eval()
        meta = {"classes": CLASSES, "alphabet": "protein", "max_length": None, "encoding": "onehot", "num_features": 0}
        checkpoint = save_checkpoint(work, "model", template, meta)
        ds = SequenceDataset(records, CLASSES, "protein")
        batches = token_batches(ds.lengths, MAX_TOKENS, MAX_RECORDS)
        return shape, cfg, template, fasta, checkpoint, ds, batches, work

    def build(self, problem, provider):
        shape, cfg, template, fasta, checkpoint, ds, batches, work = problem
        if provider == "sublocal":
            def run():
                out = os.path.join(work, "out.tsv")
                predict(PredictorSpec([checkpoint], max_tokens=MAX_TOKENS, max_records=MAX_RECORDS), fasta, out,
                        window=WINDOW, overwrite=True)
                table = np.loadtxt(out, delimiter="\t", skiprows=1, usecols=range(2, 2 + NUM_CLASSES), ndmin=2)
                return (torch.from_numpy(table).float(),)
            return {"infer": run}
        layers = "torch" if provider == "torch" else "sublocal"
        model = build_model(shape.model, layers=layers, **cfg).eval()
        state = template.state_dict()
        model.load_state_dict(state if layers == "sublocal" else convert_state_dict(state, model, to="torch"))

        def forward_all():
            probs = torch.empty(len(ds), NUM_CLASSES)
            for idx in batches:
                b = collate(ds, idx)
                probs[torch.as_tensor(idx)] = torch.softmax(model(b.tokens, b.lengths).float(), -1).detach()
            return (probs,)

        if provider == "torch":
            def run():
                with torch.inference_mode():
                    return forward_all()
        else:
            def run():  # the training path: a graph and the kernels' saved workspaces, no backward
                with torch.enable_grad():
                    return forward_all()
        return {"infer": run}

    def cost(self, shape, dtype, mode):
        return 0, 0


SPEC = PredictBench()


def test_bench(bench, bench_case):
    bench.measure(SPEC, bench_case)


# ---- the measurement run: each provider in a fresh process -------------------------------------

def _child(provider: str, shape_name: str, count: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    shape = SPEC.shapes[shape_name].scaled(B=count)
    SPEC.build(SPEC.make_problem(smoke(shape).scaled(B=8), torch.float32, torch.device("cpu")), provider)["infer"]()
    fn = SPEC.build(SPEC.make_problem(shape, torch.float32, torch.device("cpu")), provider)["infer"]
    seconds = []

    def timed():
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        seconds.append((time.perf_counter() - t0, time.process_time() - c0))
        return out

    before, above = peak_rss_above(timed)
    wall, cpu = seconds[0]
    # CPU seconds (all threads of the process) beside wall seconds: on a machine shared with other
    # jobs the wall time of runs made one after the other varies with their load; CPU time much less.
    return {"shape": shape_name, "provider": provider, "sequences": count, "threads": threads,
            "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "seq_per_s": round(count / wall, 2),
            "seq_per_cpu_s": round(count / cpu, 3), "rss_before_mb": before, "peak_above_before_mb": above,
            "peak_rss_mb": round(before + above, 1)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="sublocal predict: sequences/s and peak memory per provider")
    ap.add_argument("--measure", action="store_true")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--shape", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=20_000, help="sequences (default: 20000)")
    ap.add_argument("--models", default="alstm,rlstm")
    ap.add_argument("--providers", default="sublocal,torch")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.memory_child:
        print(json.dumps(_child(args.memory_child, args.shape, args.count, args.threads)))
        sys.exit(0)
    if not args.measure:
        ap.print_help()
        sys.exit(0)
    jobs = [[p, "--shape", f"{m}-proteome", "--count", str(args.count), "--threads", str(args.threads)]
            for m in args.models.split(",") for p in args.providers.split(",")]
    rows = []
    for job in jobs:  # one at a time, printed as each finishes
        rows.extend(peak_memory_in_subprocesses("benchmarks.bench_predict", [job]))
        print(json.dumps(rows[-1]), flush=True)
    for m in args.models.split(","):
        got = {r["provider"]: r for r in rows if r["shape"] == f"{m}-proteome"}
        ours = got.get("sublocal")
        for name, peer in got.items():
            if ours is None or name == "sublocal":
                continue
            print(f"{m}: sublocal / {name}: throughput {ours['seq_per_s'] / peer['seq_per_s']:.2f}x (wall), "
                  f"{ours['seq_per_cpu_s'] / peer['seq_per_cpu_s']:.2f}x (CPU time); peak above before "
                  f"{ours['peak_above_before_mb'] / max(peer['peak_above_before_mb'], 1e-9):.2f}x", flush=True)
        if ours is not None:
            print(f"{m}: at {ours['seq_per_s']} seq/s, 20,000 sequences take {20_000 / ours['seq_per_s'] / 60:.1f} min "
                  f"and Swiss-Prot (570,000) {570_000 / ours['seq_per_s'] / 3600:.1f} h", flush=True)
