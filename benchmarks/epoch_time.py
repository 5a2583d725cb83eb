"""One training epoch as a user runs it: ``sublocal train`` on a protein training set of the
protein length distribution, at full length, one-hot, one epoch, timed by the trainer itself
(the ``time_s`` of its history row: the training pass, without validation or checkpointing).

    python -m benchmarks.epoch_time                          # 4,300 proteins, the paper-size R-LSTM, ours
    python -m benchmarks.epoch_time --layers sublocal,torch  # and the torch.nn build, in the same run
    python -m benchmarks.epoch_time --proteins 200 --model rlstm --hidden-size 8   # smoke

The data: ``--proteins`` training records (plus a tenth as many for validation, which the
timing leaves out) with lengths log-normal around a median of 450 residues (sigma 0.6),
clipped to [20, 5000] (bench_models' `protein` shape), uniform random residues and ten
labels, written as a DeepLoc-style FASTA in a temporary directory. Batches are the trainer's
own (length-bucketed, ``--batch-size`` sequences). Each build runs in this process, one after
the other, with the same seed; prints one JSON line per build, then the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import numpy as np

RESIDUES = "ACDEFGHIKLMNPQRSTVWY"
CLASSES = tuple(f"Class{i}" for i in range(10))


def write_fasta(path: str, n: int, median: float = 450, sigma: float = 0.6, cap: int = 5000, seed: int = 0) -> int:
    """``n`` random proteins, lengths log-normal (median, sigma) clipped to [20, cap], DeepLoc
    headers; returns the number of residues."""
    from benchmarks.common import lognormal_lengths

    rng = np.random.default_rng(seed)
    lengths = lognormal_lengths(n, cap, median, sigma, seed).clamp(min=20).numpy()
    letters = np.frombuffer(RESIDUES.encode(), dtype=np.uint8)
    with open(path, "w") as fh:
        for i, length in enumerate(lengths):
            seq = letters[rng.integers(0, len(letters), length)].tobytes().decode()
            fh.write(f">P{i:06d} {CLASSES[i % len(CLASSES)]}-U\n{seq}\n")
    return int(lengths.sum())


def run_epoch(data: str, out: str, layers: str, model: str, batch_size: int, threads: int, extra: list[str]) -> dict:
    import torch

    from sublocal_kernels.cli import main

    torch.set_num_threads(threads)
    argv = ["train", data, "--out", out, "--model", model, "--layers", layers, "--epochs", "1",
            "--batch-size", str(batch_size), "--val-fraction", "0.0909", "--test-fraction", "0", "--seed", "0",
            "--no-progress", "--device", "cpu", *extra]
    status = main(argv)
    if status != 0:
        raise SystemExit(f"sublocal train ({layers}) exited with status {status}")
    with open(os.path.join(out, "summary.json")) as fh:
        summary = json.load(fh)
    row = summary["history"][0]
    return {"layers": layers, "model": model, "train_sequences": summary["splits"]["train"],
            "batch_size": batch_size, "threads": threads, "epoch_s": round(row["time_s"], 2),
            "seq_per_s": round(row["seq_per_s"], 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proteins", type=int, default=4300, help="training records (validation adds a tenth)")
    ap.add_argument("--model", default="rlstm")
    ap.add_argument("--layers", default="sublocal", help="comma-separated builds: sublocal, torch")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", default=None, help="append the rows to this JSON-lines file")
    args, extra = ap.parse_known_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "proteins.fasta")
        # 4300 training records after a 1/11 validation split: 4300 * 11 / 10 records.
        residues = write_fasta(data, int(round(args.proteins * 1.1)))
        rows = []
        for layers in args.layers.split(","):
            row = run_epoch(data, os.path.join(tmp, f"run-{layers}"), layers, args.model, args.batch_size,
                            args.threads, extra)
            row["residues_in_file"] = residues
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "a") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
    ours = next((r for r in rows if r["layers"] == "sublocal"), None)
    for r in rows:
        if ours is not None and r is not ours:
            print(f"{r['layers']} / sublocal epoch time: {r['epoch_s'] / ours['epoch_s']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
