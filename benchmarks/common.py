"""The shared benchmark harness (method, shapes and floors: docs/benchmarking.md).

Every op's benchmark module (``benchmarks/bench_<op>.py``) builds problems at the named shapes
and hands ``(provider, mode)`` callables to the ``bench`` fixture (benchmarks/conftest.py),
which times them (CPU: pytest-benchmark; GPU: ``triton.testing.do_bench``), records one row per
measurement, and at the end of the session writes the results file and prints the table with
each peer's ratio and the fraction of the hardware floor.

Under ``--benchmark-disable`` (what ``make test`` passes) the same bodies run once each on
scaled-down "smoke" shapes and every provider's results are checked against the op's
reference provider, so benchmarks cannot rot and cannot time the wrong thing.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MODES = ("fwd", "bwd", "fwd+bwd")


@dataclass(frozen=True)
class Shape:
    """A named benchmark shape (docs/benchmarking.md, "Named shapes"). Unused fields are 0."""

    name: str
    B: int
    T: int
    C: int = 0
    widths: tuple[int, ...] = ()
    filters: int = 0
    hidden: int = 0
    attention: int = 0
    D: int = 0
    min_length_frac: float = 0.25  # lengths uniform in [ceil(T * frac), T]

    def scaled(self, **changes) -> "Shape":
        return dataclasses.replace(self, **changes)


PAPER_WIDTHS = (1, 3, 5, 9, 15, 21)

SHAPES: dict[str, Shape] = {
    "paper": Shape("paper", 128, 1000, C=20, widths=PAPER_WIDTHS, filters=10, hidden=256, attention=400),
    "paper80": Shape("paper80", 128, 1000, C=80, widths=PAPER_WIDTHS, filters=10, hidden=256, attention=400),
    "notebook": Shape("notebook", 128, 400, C=20, widths=(3, 5), filters=10, hidden=15),
    "full-length": Shape("full-length", 32, 8000, C=20, widths=PAPER_WIDTHS, filters=10, hidden=256, attention=400),
    "rna": Shape("rna", 8, 30000, C=5, widths=(2,), filters=256, hidden=256, attention=400, D=256),
    "infer1": Shape("infer1", 1, 1000, C=20, widths=PAPER_WIDTHS, filters=10, hidden=256, attention=400,
                    min_length_frac=1.0),
}

# fo-pool's own shapes (docs/benchmarking.md): dense sequences, D channels.
FO_POOL_SHAPES: dict[str, Shape] = {
    "qrnn": Shape("qrnn", 64, 1000, D=512, min_length_frac=1.0),
    "rna": Shape("rna", 8, 30000, D=256, min_length_frac=1.0),
    "long1": Shape("long1", 1, 100000, D=256, min_length_frac=1.0),
    "wide": Shape("wide", 128, 1000, D=2048, min_length_frac=1.0),
}


def smoke(shape: Shape) -> Shape:
    """The same shape scaled down for a once-through check (``--benchmark-disable``)."""
    return shape.scaled(
        B=min(shape.B, 3),
        T=min(shape.T, 67),
        C=min(shape.C, 7) if shape.C else 0,
        filters=min(shape.filters, 4) if shape.filters else 0,
        hidden=min(shape.hidden, 9) if shape.hidden else 0,
        attention=min(shape.attention, 11) if shape.attention else 0,
        D=min(shape.D, 19) if shape.D else 0,
    )


def random_lengths(shape: Shape, device, seed: int = 0) -> torch.Tensor:
    """Seeded lengths uniform in [ceil(T * min_length_frac), T] (int64, on ``device``)."""
    g = torch.Generator().manual_seed(seed)
    low = max(1, math.ceil(shape.T * shape.min_length_frac))
    return torch.randint(low, shape.T + 1, (shape.B,), generator=g).to(device)


def lognormal_lengths(batch: int, cap: int, median: float = 300.0, sigma: float = 0.6, seed: int = 0) -> torch.Tensor:
    """Seeded protein-like lengths (int64, CPU): log-normal with ``median``, clipped to [1, cap].

    UniRef50-like by default: median 300 residues, capped at UniRep's 2000 (sigma 0.6 puts the
    middle 90% of lengths between 110 and 800).
    """
    g = torch.Generator().manual_seed(seed)
    draws = torch.randn(batch, generator=g, dtype=torch.float64) * sigma + math.log(median)
    return draws.exp().round().clamp(1, cap).to(torch.int64)


# ---- modes ------------------------------------------------------------------------------------

def make_modes(forward: Callable[[], Sequence[torch.Tensor]], inputs: Sequence[torch.Tensor],
               seed: int = 1) -> dict[str, Callable[[], tuple[torch.Tensor, ...]]]:
    """The three timed callables for one provider.

    ``forward()`` returns the op's differentiable outputs from ``inputs`` (which require grad).
    ``fwd`` runs the training forward; ``bwd`` runs the backward of one saved forward
    (``retain_graph``), ``fwd+bwd`` both. Gradients are taken with ``torch.autograd.grad`` (no
    accumulation into ``.grad``) against fixed random cotangents. Each returns tensors, so
    providers can be checked against each other.
    """
    inputs = list(inputs)
    g = torch.Generator().manual_seed(seed)
    outs0 = [o for o in forward() if o.requires_grad]
    cotangents = [torch.randn(o.shape, generator=g, dtype=torch.float32).to(o.device, o.dtype) for o in outs0]
    del outs0

    def fwd():
        return tuple(forward())

    saved: dict[str, list] = {}

    def bwd():
        if "outs" not in saved:
            saved["outs"] = [o for o in forward() if o.requires_grad]
        return torch.autograd.grad(saved["outs"], inputs, cotangents, retain_graph=True)

    def fwd_bwd():
        outs = [o for o in forward() if o.requires_grad]
        return torch.autograd.grad(outs, inputs, cotangents)

    return {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd_bwd}


# ---- machine ceilings -------------------------------------------------------------------------

def _ceiling_time(fn: Callable[[], object], device: torch.device, reps: int = 25) -> float:
    """The time of ``fn`` at the machine's ceiling: the fastest of ``reps`` calls on a CPU.

    A floor needs the machine's best rate, not its typical one. On the 2-core CI VM, which
    shares its host, 20 calls of the 1024^3 product took 12.3 to 22.5 ms within one second,
    and the median of 7 put the peak anywhere from 0.097 to 0.155 TFLOP/s from run to run, so
    ops read up to 162% "of floor". The fastest call is what the hardware can do; the op times
    stay medians. On a GPU, do_bench's median (the GPU is not shared).
    """
    if device.type == "cuda":
        import triton.testing

        return triton.testing.do_bench(fn, warmup=50, rep=300, return_mode="median") / 1e3
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_bandwidth(device: torch.device) -> float:
    """Copy bandwidth of ``device`` in bytes (read + written) per second, measured now."""
    n = (1 << 28) // 4 if device.type == "cuda" else (1 << 26)  # 1 GiB on GPU, 256 MiB on CPU
    src = torch.rand(n, device=device)
    dst = torch.empty_like(src)
    copy_s = _ceiling_time(lambda: dst.copy_(src), device)
    return 2 * n * 4 / copy_s


def measure_peak(device: torch.device, dtype: torch.dtype) -> float:
    """Matrix-product rate in ``dtype`` on ``device`` (TFLOP/s), measured now."""
    m = 8192 if device.type == "cuda" else 1024
    a = torch.randn(m, m, device=device).to(dtype)
    b = torch.randn(m, m, device=device).to(dtype)
    return 2 * m ** 3 / _ceiling_time(lambda: a @ b, device) / 1e12


def measure_machine(device: torch.device, dtypes: Sequence[torch.dtype]) -> dict:
    """Copy bandwidth (bytes read + written per second) and matrix-product peak per dtype,
    measured now, on this device, as the floor's denominators (:func:`add_peak` adds a dtype)."""
    info = {"bandwidth_gbs": round(measure_bandwidth(device) / 1e9, 2), "peak_tflops": {},
            "torch": torch.__version__, "python": platform.python_version()}
    for dtype in dtypes:
        add_peak(info, device, dtype)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, cuda=torch.version.cuda, sm_count=props.multi_processor_count)
        try:
            import triton

            info["triton"] = triton.__version__
        except ImportError:
            pass
    else:
        info.update(cpu=_cpu_name(), threads=torch.get_num_threads())
    return info


def add_peak(info: dict, device: torch.device, dtype: torch.dtype) -> bool:
    """Measures ``dtype``'s matmul peak into ``info`` unless it is there; True when it was added."""
    name = _dtype_name(dtype)
    if name in info["peak_tflops"]:
        return False
    info["peak_tflops"][name] = round(measure_peak(device, dtype), 3)
    return True


def cost_of_mode(mode: str, fwd: tuple[float, float], bwd: tuple[float, float]) -> tuple[float, float]:
    """The (bytes, FLOPs) floor of ``mode`` from the forward's and the backward's (a training step:
    both)."""
    if mode == "fwd+bwd":
        return fwd[0] + bwd[0], fwd[1] + bwd[1]
    return {"fwd": fwd, "bwd": bwd}[mode]


def streamed_bytes(read_bytes: float, write_bytes: float) -> float:
    """The bytes an op must move, in the units of :func:`measure_machine`'s bandwidth, for the
    true floor of a bandwidth-bound op.

    The yardstick copy counts what it reads and writes, 2 bytes per byte copied, while the
    memory bus moves 3: an ordinary store first reads its cache line (write-allocate). An op
    can write with streaming stores and move only its reads and writes, so its floor is
    ``(reads + writes) / (1.5 x bandwidth_gbs)``, returned here as ``(reads + writes) * 2/3``
    yardstick bytes. Measured on the 2-core CI VM (256 MB, float32): fill_ ran at 5.6 GB/s,
    half the 11.2 GB/s the copy moves with its write-allocate reads counted (7.5 GB/s counted
    as reads + writes). Counting reads + writes against the copy's 7.5 GB/s instead put
    fo-pool's forward (3 reads, 1 write) at 108% "of floor".
    """
    return (read_bytes + write_bytes) * 2 / 3


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def write_fasta(path, records) -> None:
    """``(id, sequence)`` pairs as FASTA, 80 letters a line."""
    with open(path, "w") as fh:
        for rid, seq in records:
            fh.write(f">{rid}\n")
            for k in range(0, len(seq), 80):
                fh.write(seq[k:k + 80] + "\n")


def machine_slug(info: dict) -> str:
    name = info.get("gpu") or "cpu"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def git_commit() -> str:
    """``SUBLOCAL_COMMIT`` when set (a copy of the tree without .git, e.g. on the GPU machine), else git's HEAD."""
    if os.environ.get("SUBLOCAL_COMMIT"):
        return os.environ["SUBLOCAL_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ---- CPU peak memory (each provider in a fresh process) ---------------------------------------

def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_rss_above(fn: Callable[[], object]) -> tuple[float, float]:
    """(resident MB before, peak resident MB above it) over one call of ``fn`` in this process."""
    # Linux: writing 5 to clear_refs resets the peak resident size (VmHWM) to the current one.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_mb("VmRSS")
    out = fn()
    peak = _status_mb("VmHWM")
    del out
    return round(before, 1), round(peak - before, 1)


def peak_memory_child(spec: "BenchSpec", shape: Shape, provider: str, mode: str, threads: int) -> dict:
    """One ``mode`` call of ``provider`` at ``shape`` on the CPU, after a warm-up at a small size
    (imports, first-call set-up), and its peak resident memory above what was resident before.
    Run it in a fresh process per provider (:func:`peak_memory_in_subprocesses`)."""
    torch.set_num_threads(threads)
    cpu = torch.device("cpu")
    spec.build(spec.make_problem(shape.scaled(B=min(shape.B, 2), T=min(shape.T, 64)), torch.float32, cpu),
               provider)[mode]()
    fn = spec.build(spec.make_problem(shape, torch.float32, cpu), provider)[mode]
    before, above = peak_rss_above(fn)
    return {"shape": shape.name, "provider": provider, "mode": mode, "threads": threads,
            "output_cache_mb": output_cache_mb(), "rss_before_mb": before, "peak_above_before_mb": above}


def peak_memory_in_subprocesses(module: str, jobs: Sequence[Sequence[str]]) -> list[dict]:
    """Runs ``python -m <module> --memory-child ...`` once per job (its arguments), each in a fresh
    process, and returns the JSON line each prints last."""
    out = []
    for args in jobs:
        res = subprocess.run([sys.executable, "-m", module, "--memory-child", *args],
                             capture_output=True, text=True, check=True)
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def peak_memory_main(module: str, spec: "BenchSpec", shapes: dict, mode: str, default_shape: str,
                     default_providers: Sequence[str], description: str) -> None:
    """The ``python -m <module> --memory`` command line of a benchmark: each provider's CPU peak
    memory over one ``mode`` call, each in a fresh process (``--memory-child`` is that process)."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--memory", action="store_true", help="measure each provider's peak memory")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--shape", default=default_shape, choices=sorted(shapes))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--providers", default=",".join(default_providers), help="comma-separated providers to measure")
    args = ap.parse_args()
    if args.memory_child:
        print(json.dumps(peak_memory_child(spec, shapes[args.shape], args.memory_child, mode, args.threads)))
    elif args.memory:
        jobs = [[p, "--shape", args.shape, "--threads", str(args.threads)] for p in args.providers.split(",")]
        rows = peak_memory_in_subprocesses(module, jobs)
        for r in rows:
            print(json.dumps(r))
        ours = next(r for r in rows if r["provider"] == "sublocal")["peak_above_before_mb"]
        for r in rows:
            if r["provider"] != "sublocal":
                print(f"sublocal / {r['provider']} peak memory: {ours / r['peak_above_before_mb']:.2f}")
    else:
        ap.print_help()


def output_cache_mb() -> int:
    """The CPU output cache's cap in this process (SUBLOCAL_CPU_CACHE_MB; 0, the default, is off)."""
    return int(os.environ.get("SUBLOCAL_CPU_CACHE_MB", "0"))


# ---- results ----------------------------------------------------------------------------------

@dataclass
class Row:
    op: str
    shape: str
    dtype: str
    mode: str
    provider: str
    ms_p50: float
    ms_p20: float
    ms_p80: float
    bytes: int
    flops: int
    peak_mem_mb: float | None = None
    timed_once: bool = False  # one call was timed (a peer taking seconds per call), not a median
    floor_ms: float | None = None
    frac_of_floor: float | None = None
    vs: dict = field(default_factory=dict)
    vs_timed_once: list = field(default_factory=list)  # the peers in ``vs`` that were timed once

    def key(self):
        return (self.op, self.shape, self.dtype, self.mode, self.provider)


def finish_rows(rows: list[Row], machine: dict) -> list[Row]:
    """Fills in the floor, the fraction of it, and each peer's ratio (peer / sublocal, same run)."""
    bw = machine["bandwidth_gbs"] * 1e9
    for r in rows:
        peak = machine["peak_tflops"].get(r.dtype)
        if peak is None:
            raise KeyError(f"no matmul peak measured for {r.dtype} (machine: {machine['peak_tflops']})")
        floor_s = max(r.bytes / bw, r.flops / (peak * 1e12) if peak else 0.0)
        r.floor_ms = floor_s * 1e3
        r.frac_of_floor = r.floor_ms / r.ms_p50 if r.ms_p50 > 0 and r.floor_ms > 0 else None
    by_case: dict[tuple, dict[str, Row]] = {}
    for r in rows:
        by_case.setdefault((r.op, r.shape, r.dtype, r.mode), {})[r.provider] = r
    for case in by_case.values():
        ours = case.get("sublocal")
        if ours is None:
            continue
        ours.vs = {p: round(r.ms_p50 / ours.ms_p50, 3) for p, r in case.items() if p != "sublocal"}
        ours.vs_timed_once = sorted(p for p, r in case.items() if p != "sublocal" and r.timed_once)
    return rows


def write_results(rows: list[Row], machine: dict, path: Path | None = None) -> Path:
    """Writes (merging with a same-day file of the same machine) ``results/<machine>-<date>.json``;
    ``path`` may be a file or a directory to put ``<machine>-<date>.json`` in."""
    date = _dt.date.today().isoformat()
    if path is None or path.is_dir():
        path = (path or RESULTS_DIR) / f"{machine_slug(machine)}-{date}.json"
    old_rows = []
    if path.exists():
        old = json.loads(path.read_text())
        new_keys = {r.key() for r in rows}
        old_rows = [r for r in old.get("rows", [])
                    if (r["op"], r["shape"], r["dtype"], r["mode"], r["provider"]) not in new_keys]
    doc = {"machine": machine, "commit": git_commit(), "date": date,
           "rows": old_rows + [dataclasses.asdict(r) for r in rows]}
    write_doc(path, doc)
    return path


def replace_section(body: str, start: str, end: str, text: str, where: str = "README") -> str:
    """``body`` with what lies between the marker lines ``start`` and ``end`` replaced by ``text``
    (the README's generated tables; ``where`` names the file in the error)."""
    if start not in body or end not in body:
        raise SystemExit(f"{where}: markers {start} / {end} not found")
    head, rest = body.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{text}\n{end}{tail}"


def sha256(path: Path) -> str:
    """The SHA-256 of a data file (read a MiB at a time), as results files record it."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_doc(path: Path, doc: dict) -> None:
    """Writes a results document atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


class JsonlLog:
    """Appends each finished case to a JSON-lines file at once (flushed and fsynced), so a run
    cut off by a time limit or a signal keeps everything it measured. Lines: ``{"machine": ...}``
    whenever the machine facts change (a dtype's peak is added), and ``{"row": ...}`` per case;
    :func:`rows_from_jsonl` reads them back."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, **record) -> None:
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def rows_from_jsonl(path: Path) -> tuple[list[Row], dict | None, str | None]:
    """The rows and the last machine line of a :class:`JsonlLog` file; a torn last line (the
    process was killed while writing it) is ignored."""
    rows, machine, commit = {}, None, None
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "machine" in rec:
            machine, commit = rec["machine"], rec.get("commit", commit)
        elif "row" in rec:
            fields = {f.name for f in dataclasses.fields(Row)}
            row = Row(**{k: v for k, v in rec["row"].items() if k in fields})
            rows[row.key()] = row  # a case measured twice: the later one
    return list(rows.values()), machine, commit


def results_from_jsonl(jsonl: Path, out: Path | None = None) -> Path | None:
    """Turns a JSON-lines log into the usual results file (``out``: file or directory; default
    beside the log). None when the log holds no finished case."""
    rows, machine, commit = rows_from_jsonl(jsonl)
    if not rows or machine is None:
        return None
    if commit:
        os.environ.setdefault("SUBLOCAL_COMMIT", commit)
    return write_results(finish_rows(rows, machine), machine, out or Path(jsonl).parent)


def measured_keys(path: Path) -> set[tuple]:
    """(op, shape, dtype, mode, provider) of every case in a results file or JSON-lines log."""
    path = Path(path)
    if not path.exists():
        return set()
    if path.suffix == ".jsonl":
        return {r.key() for r in rows_from_jsonl(path)[0]}
    rows = json.loads(path.read_text()).get("rows", [])
    return {(r["op"], r["shape"], r["dtype"], r["mode"], r["provider"]) for r in rows}


def _mode_order(mode: str) -> int:
    return MODES.index(mode) if mode in MODES else len(MODES)


def format_table(rows: list[dict | Row], machine: dict | None = None, markdown: bool = False) -> str:
    """One line per (op, shape, dtype, mode): our time, the fraction of the floor, each peer's ratio."""
    rows = [dataclasses.asdict(r) if isinstance(r, Row) else r for r in rows]
    ours = [r for r in rows if r["provider"] == "sublocal"]
    peers = sorted({p for r in ours for p in r.get("vs", {})})
    head = ["op", "shape", "dtype", "mode", "sublocal ms", "of floor"] + [f"vs {p}" for p in peers]
    lines = []
    for r in sorted(ours, key=lambda r: (r["op"], r["shape"], r["dtype"], _mode_order(r["mode"]))):
        frac = r.get("frac_of_floor")
        cells = [r["op"], r["shape"], r["dtype"], r["mode"], f"{r['ms_p50']:.3f}",
                 f"{100 * frac:.0f}%" if frac is not None else "-"]
        once = r.get("vs_timed_once", [])
        cells += [f"{r['vs'][p]:.2f}x" + ("*" if p in once else "") if p in r.get("vs", {}) else "-" for p in peers]
        lines.append(cells)
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(c) + " |" for c in lines]
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)] if lines else [len(h) for h in head]
        fmt = "  ".join("{:<%d}" % w for w in widths)
        out = [fmt.format(*head)] + [fmt.format(*c) for c in lines]
    if machine:
        desc = machine.get("gpu") or f"{machine.get('cpu', 'cpu')}, {machine.get('threads')} threads"
        peaks = ", ".join(f"{v:g} {k}" for k, v in machine["peak_tflops"].items())
        if any(r.get("vs_timed_once") for r in ours):
            out.append("(* the peer was timed once: one call takes seconds)")
        out.insert(0, f"{desc}; torch {machine.get('torch')}; copy bandwidth {machine['bandwidth_gbs']} GB/s; "
                      f"matmul peak {peaks} TFLOP/s (vs: peer time / sublocal time, >1 = faster)")
    return "\n".join(out)


# ---- one op's benchmark -------------------------------------------------------------------

class BenchSpec:
    """What an op's benchmark module defines; the harness does the rest.

    Subclasses set ``op``, ``shapes``, ``all_providers``, ``reference`` and implement
    ``make_problem``, ``build`` and ``cost``; they may override ``default_shapes``,
    ``providers`` and ``supports``.
    """

    op: str = ""
    shapes: dict[str, Shape] = {}
    all_providers: tuple[str, ...] = ()
    reference: str = "ref-eager"
    # The modes a case can have (a whole-model benchmark has its own: "train", "infer").
    modes: tuple[str, ...] = MODES
    # The shapes a smoke run (--benchmark-disable) checks; None: every selected shape.
    smoke_shapes: tuple[str, ...] | None = None
    # Providers that take minutes per call on a CPU; the quick profile (the demo) leaves them out there.
    slow_on_cpu: tuple[str, ...] = ()
    # Peers that compile per shape and dtype (torch.compile): the quick profile leaves them out.
    compile_peers: tuple[str, ...] = ("ref-compile",)
    # (shape name or "*", provider) the quick profile leaves out: peers that take many seconds per
    # call there (the full profile keeps them).
    quick_skip: frozenset = frozenset()
    # norm-relative error allowed between a provider and the reference in smoke checks
    tolerance = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 3e-2}

    def __init__(self):
        self._problem_key = None
        self._problem = None
        self._ref_cache: dict = {}

    def default_shapes(self, device: torch.device) -> list[str]:
        return list(self.shapes)

    def providers(self, device: torch.device, smoke: bool) -> list[str]:
        return list(self.all_providers)

    def supports(self, provider: str, mode: str, device: torch.device, smoke: bool) -> bool:
        return True

    def in_profile(self, profile: str, shape: str, provider: str, device: torch.device) -> bool:
        """Whether the profile (``default``, ``quick`` or ``full``) times ``provider`` at ``shape``."""
        if profile != "quick":
            return True
        if provider in self.compile_peers or (device.type == "cpu" and provider in self.slow_on_cpu):
            return False
        return (shape, provider) not in self.quick_skip and ("*", provider) not in self.quick_skip

    def make_problem(self, shape: Shape, dtype: torch.dtype, device: torch.device):
        raise NotImplementedError

    def build(self, problem, provider: str) -> dict[str, Callable[[], tuple]]:
        raise NotImplementedError

    def cost(self, shape: Shape, dtype: torch.dtype, mode: str) -> tuple[int, int]:
        """(bytes, flops) the op must move and compute in ``mode`` (docs/benchmarking.md, "Floors")."""
        raise NotImplementedError

    def problem(self, shape: Shape, dtype: torch.dtype, device: torch.device):
        """The inputs for (shape, dtype, device), built once and kept while cases reuse them."""
        key = (shape, dtype, str(device))
        if key != self._problem_key:
            self._problem, self._problem_key, self._ref_cache = None, None, {}
            torch.manual_seed(0)
            self._problem = self.make_problem(shape, dtype, device)
            self._problem_key = key
        return self._problem

    def reference_result(self, problem, mode: str):
        if mode not in self._ref_cache:
            self._ref_cache[mode] = self.build(problem, self.reference)[mode]()
        return self._ref_cache[mode]

    def check(self, got, want, case) -> None:
        assert len(got) == len(want), f"{case}: {len(got)} results, reference gave {len(want)}"
        tol = self.tolerance[case.dtype]
        for i, (g, w) in enumerate(zip(got, want)):
            assert g.shape == w.shape, f"{case}: result {i} has shape {tuple(g.shape)}, reference {tuple(w.shape)}"
            g, w = g.detach().double(), w.detach().double()
            assert torch.isfinite(g).all(), f"{case}: result {i} has non-finite values"
            err = (g - w).norm() / w.norm().clamp_min(1e-30)
            assert err <= tol, f"{case}: result {i} differs from {self.reference} by {err:.2e} (norm-relative) > {tol:.0e}"
