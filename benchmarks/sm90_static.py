"""Static sm_90 resource check: every GPU kernel compiled as it is really launched, no GPU needed.

    python -m benchmarks.sm90_static                  # print the table; exit 1 if a kernel is over a limit
    python -m benchmarks.sm90_static --json FILE      # also write the table (make static-report)

Triton kernels: each op's launchers (``lstm_fwd_triton`` ...) run on small CPU tensors with their
``@triton.jit`` kernels swapped for recorders, over problems chosen so that every tile size,
``num_warps`` and ``num_stages`` the launcher can pick is reached, for float32 (tf32x3, and plain
TF32 as chosen when torch allows TF32), bfloat16, float16 and float64, with every optional input present
(initial states, lengths, bias, output gate: the largest variant). The problems are each op's
``sm90_launches`` in sublocal_kernels/ops/registry.py; they must launch every kernel the op
declares there, and every ``*_kernel`` of a Triton module must be declared by an op. Each recorded launch is then
specialised exactly as Triton's runtime specialises it (its own binder: pointer alignment and
integers divisible by 16 or equal to 1) and compiled by Triton's real compiler for sm_90. Its
shared memory comes from the compiled kernel's metadata, registers and spills from ptxas's own
report. A compile on a machine without a GPU never checks shared memory; a kernel over sm_90's
232,448 bytes per block would compile here and fail at launch with ``OutOfResources``.

CUDA C++ kernels (csrc/cuda/*.cu): nvcc for sm_90 with ``-Xptxas -v`` gives registers, spills
and static shared memory per kernel instantiation.

``main`` removes ``TRITON_INTERPRET`` from its own process before Triton loads the kernels.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from sublocal_kernels.ops import registry

ROOT = Path(__file__).resolve().parent.parent
SMEM_LIMIT = 232_448  # bytes of shared memory one block may use on sm_90 (opt-in maximum)
REG_LIMIT = 255  # registers per thread
DTYPES = ("float32", "bfloat16", "float16", "float64")


# ---- recording the launches ------------------------------------------------------------------

class _Recorder:
    """Stands in for a ``@triton.jit`` function: ``kernel[grid](*args, **kw)`` records the call."""

    def __init__(self, fn, sink: list, context: dict):
        self.fn, self.sink, self.context = fn, sink, context

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.sink.append((self.fn, args, dict(kwargs), dict(self.context)))
        return launch


@contextlib.contextmanager
def recording(modules, sink: list, context: dict):
    """Swap every module-level ``*_kernel`` JIT function of ``modules`` for a recorder."""
    from triton.runtime.jit import JITFunction

    saved = []
    for mod in modules:
        for name, obj in list(vars(mod).items()):
            if isinstance(obj, JITFunction) and name.endswith("_kernel"):
                saved.append((mod, name, obj))
                setattr(mod, name, _Recorder(obj, sink, context))
    try:
        yield
    finally:
        for mod, name, obj in saved:
            setattr(mod, name, obj)


# Every op: its Triton module, kernels and launch cases (importing the registry imports no Triton).
OPS = {spec.name: spec for spec in registry.OPS}


def kernel_mismatches(sink: list, ops) -> list[str]:
    """What the registry's ``kernels`` and the recorded launches disagree on: a ``*_kernel`` of an
    op's Triton module that no op declares (the static check would not know it), or a declared
    kernel that ``ops``' launch cases never reach (it would never be compiled here)."""
    import importlib

    from triton.runtime.jit import JITFunction

    out = []
    for module in sorted({OPS[op].triton_module for op in ops}):
        mod = importlib.import_module(module)
        present = {name for name, obj in vars(mod).items() if isinstance(obj, JITFunction) and name.endswith("_kernel")}
        declared = {k for spec in OPS.values() if spec.triton_module == module for k in spec.kernels}
        out += [f"{module}.{name} is declared by no op in sublocal_kernels/ops/registry.py"
                for name in sorted(present - declared)]
        out += [f"{module}.{name} is declared in sublocal_kernels/ops/registry.py but does not exist"
                for name in sorted(declared - present)]
    for op in ops:
        reached = {fn.__name__ for fn, _, _, ctx in sink if ctx["op"] == op}
        out += [f"{op}: its launch cases never reach {name}" for name in sorted(set(OPS[op].kernels) - reached)]
        out += [f"{op}: its launch cases reach {name}, which it does not declare"
                for name in sorted(reached - set(OPS[op].kernels))]
    return out


def record_launches(ops=None, dtypes=DTYPES) -> list:
    """Every distinct (kernel, specialisation, options) the launchers of ``ops`` ask for."""
    import torch

    sink: list = []
    for op in ops or OPS:
        spec = OPS[op]
        mod = spec.triton()
        for dt in dtypes:
            # float32 products are tf32x3 by default and plain TF32 when torch allows TF32
            # (sublocal_kernels.ops._triton_utils.dot_precision): both are launcher choices.
            for tf32 in ((False, True) if dt == "float32" else (False,)):
                context: dict = {}
                old = torch.backends.cuda.matmul.allow_tf32
                torch.backends.cuda.matmul.allow_tf32 = tf32
                try:
                    with recording([mod], sink, context):
                        for ctx, call in spec.sm90_launches(getattr(torch, dt)):
                            context.clear()
                            context.update(ctx, dtype=dt)
                            if tf32:
                                context["case"] += " allow_tf32"
                            call()
                finally:
                    torch.backends.cuda.matmul.allow_tf32 = old
    bad = kernel_mismatches(sink, list(ops or OPS))
    if bad:
        raise RuntimeError("the registry's Triton kernels and the launches disagree:\n  " + "\n  ".join(bad))
    return sink


# ---- compiling -------------------------------------------------------------------------------

_PTXAS_RE = re.compile(r"Used (\d+) registers")
_SPILL_RE = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


def _specialise(fn, args, kwargs, backend):
    from triton import knobs
    from triton.runtime.jit import create_function_from_signature

    kwargs = dict(kwargs)
    kwargs["debug"] = kwargs.get("debug", fn.debug) or knobs.runtime.debug
    kwargs["instrumentation_mode"] = knobs.compilation.instrumentation_mode
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound_args, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound_args, specialization, options)
    return options, signature, constexprs, attrs


def compile_triton(launches, distinct: str = "specialisation") -> list[dict]:
    """Compile each distinct launch for sm_90; one row per compiled kernel.

    ``distinct="specialisation"`` compiles every specialisation the runtime would (integers
    divisible by 16 or not are separate kernels); ``"config"`` one per (kernel, dtype,
    constexprs, num_warps, num_stages), the first launch's specialisation: the tile sizes and
    stages that decide shared memory, in about half the compile time (the test suite).
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend

    target = GPUTarget("cuda", 90, 32)
    backend = make_backend(target)
    rows, seen = [], {}
    for fn, args, kwargs, ctx in launches:
        options, signature, constexprs, attrs = _specialise(fn, args, kwargs, backend)
        key = (fn.__name__, str(sorted(signature.items())), str(sorted(constexprs.items())),
               str(sorted(attrs.items())) if distinct == "specialisation" else "",
               options.num_warps, options.num_stages)
        if key in seen:
            seen[key]["cases"].append(ctx["case"])
            continue
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            kernel = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target,
                                    options=options.__dict__)
        regs = _PTXAS_RE.findall(log.getvalue())
        spills = _SPILL_RE.findall(log.getvalue())
        consts = {k[0] if isinstance(k, tuple) and len(k) == 1 else str(k): v for k, v in constexprs.items()}
        names = [p.name for p in fn.params]
        consts = {names[k] if isinstance(k, int) else k: v for k, v in consts.items()}
        row = {
            "kind": "triton", "op": ctx["op"], "kernel": fn.__name__, "dtype": ctx["dtype"],
            "config": {k: v for k, v in consts.items() if isinstance(k, str) and k.isupper()},
            "num_warps": options.num_warps, "num_stages": options.num_stages,
            "shared_bytes": int(kernel.metadata.shared),
            "registers": int(regs[-1]) if regs else None,
            "spill_store_bytes": int(spills[-1][0]) if spills else None,
            "spill_load_bytes": int(spills[-1][1]) if spills else None,
            "cases": [ctx["case"]],
            "divisible_by_16": sorted(names[k[0]] for k, v in attrs.items() if "tt.divisibility" in str(v)),
            "ptx": _ptx_features(kernel.asm["ptx"]),
        }
        seen[key] = row
        rows.append(row)
    return rows


def _ptx_features(ptx: str) -> dict:
    """What the products compile to: Hopper's asynchronous tensor-core MMA, its operand types."""
    return {"wgmma": ptx.count("wgmma.mma_async"), "mma_sync": ptx.count("mma.sync"),
            "tf32": ".tf32" in ptx, "bf16": ".bf16" in ptx, "f16": ".f16.f16" in ptx,
            "f64_mma": ".f64.f64.f64.f64" in ptx, "f64_fma": "fma.rn.f64" in ptx}


# ---- CUDA C++ --------------------------------------------------------------------------------

_ENTRY_RE = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+a?)'")
_FUNC_PROPS_RE = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED_RE = re.compile(r"Used (\d+) registers(?:.*?, (\d+) bytes smem)?")


def _demangle(names: list[str]) -> list[str]:
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True).stdout
        return out.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return names


def compile_cuda(nvcc: str = "nvcc") -> list[dict]:
    """``nvcc -Xptxas -v`` on every csrc/cuda/*.cu for sm_90; one row per kernel instantiation."""
    from torch.utils.cpp_extension import include_paths

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        shim = Path(tmp) / "shim" / "c10" / "cuda" / "impl"
        shim.mkdir(parents=True)
        # The CPU wheel of torch lacks this generated header (docs/building.md; CMakeLists.txt does too).
        (shim / "cuda_cmake_macros.h").write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
        incs = [f"-I{ROOT / 'csrc'}", f"-I{Path(tmp) / 'shim'}"] + [f"-I{p}" for p in include_paths()]
        import sysconfig

        incs.append(f"-I{sysconfig.get_paths()['include']}")
        for src in sorted((ROOT / "csrc" / "cuda").glob("*.cu")):
            cmd = [nvcc, "-c", str(src), "-o", str(Path(tmp) / (src.stem + ".o")), "-arch=sm_90", "-std=c++20",
                   "--expt-relaxed-constexpr", "-O3", "-Xptxas", "-v", "-DSUBLOCAL_WITH_CUDA=1",
                   "-Xcudafe", "--diag_suppress=20012", *incs]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"nvcc failed on {src.name}:\n{done.stderr[-3000:]}")
            current = None
            entries = []
            for line in done.stderr.splitlines():
                if m := _ENTRY_RE.search(line):
                    current = {"kind": "cuda", "op": src.stem, "kernel": m.group(1), "arch": m.group(2),
                               "shared_bytes": 0, "registers": None, "spill_store_bytes": 0,
                               "spill_load_bytes": 0, "stack_bytes": 0}
                    entries.append(current)
                elif current is not None and (m := _FUNC_PROPS_RE.search(line)):
                    current["stack_bytes"], current["spill_store_bytes"], current["spill_load_bytes"] = (
                        int(m.group(1)), int(m.group(2)), int(m.group(3)))
                elif current is not None and (m := _USED_RE.search(line)):
                    current["registers"] = int(m.group(1))
                    current["shared_bytes"] = int(m.group(2) or 0)
            for row, name in zip(entries, _demangle([e["kernel"] for e in entries])):
                row["kernel"] = name
            rows += entries
    return rows


# ---- report ----------------------------------------------------------------------------------

def problems(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        where = f"{r['kind']} {r['kernel']} ({r.get('dtype', r.get('arch'))}, {r.get('config', '')})"
        if r["shared_bytes"] > SMEM_LIMIT:
            out.append(f"{where}: {r['shared_bytes']} bytes of shared memory > sm_90's {SMEM_LIMIT}")
        if r["registers"] is not None and r["registers"] > REG_LIMIT:
            out.append(f"{where}: {r['registers']} registers > {REG_LIMIT}")
    return out


def format_rows(rows: list[dict]) -> str:
    head = ["kind", "op", "kernel", "dtype", "config", "warps", "stages", "smem B", "regs", "spill B"]
    lines = []
    for r in rows:
        cfg = " ".join(f"{k}={v}" for k, v in r.get("config", {}).items() if k.startswith(("BLOCK", "PRECISION",
                                                                                        "NUM_DIRS", "TILE")))
        lines.append([r["kind"], r["op"], r["kernel"][:60], r.get("dtype", r.get("arch", "")), cfg,
                      str(r.get("num_warps", "")), str(r.get("num_stages", "")), str(r["shared_bytes"]),
                      str(r["registers"]), str(r["spill_store_bytes"])])
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    return "\n".join([fmt.format(*head)] + [fmt.format(*line) for line in lines])


def _compile_all(ops: list[str], cuda: bool, jobs: int, distinct: str) -> list[dict]:
    if jobs == 1:
        with tempfile.TemporaryDirectory(prefix="sublocal-sm90-") as cache:
            os.environ["TRITON_CACHE_DIR"] = cache  # fresh: ptxas runs (and reports) for every kernel
            rows = compile_triton(record_launches(ops), distinct)
        return rows + (compile_cuda(os.environ.get("NVCC", "nvcc")) if cuda else [])
    # One process per group of ops (and one for nvcc), `jobs` at a time.
    groups = [ops[i::jobs] for i in range(jobs) if ops[i::jobs]] + ([["cuda"]] if cuda else [])
    with tempfile.TemporaryDirectory(prefix="sublocal-sm90-") as tmp:
        procs, rows = [], []
        for i, group in enumerate(groups):
            out = Path(tmp) / f"{i}.json"
            cmd = [sys.executable, "-m", "benchmarks.sm90_static", "--quiet", "--json", str(out), "--distinct", distinct]
            cmd += ["--cuda-only"] if group == ["cuda"] else ["--no-cuda", "--ops", ",".join(group)]
            procs.append((subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
                          out))
            while sum(p.poll() is None for p, _ in procs) >= jobs:
                procs[[p.poll() is None for p, _ in procs].index(True)][0].wait()
        for p, out in procs:
            stdout, stderr = p.communicate()
            if not out.exists():
                raise RuntimeError(f"sm90_static worker failed:\n{stdout[-2000:]}{stderr[-3000:]}")
            rows += json.loads(out.read_text())["rows"]
    return rows


def summary_markdown(rows: list[dict]) -> str:
    """Per op and dtype: kernels compiled, the largest shared memory, registers and spills."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["kind"], r["op"], r.get("dtype", r.get("arch", ""))), []).append(r)
    out = ["| kind | op | dtype | kernels | max shared memory (B) | max registers | max spill stores (B) |",
           "|---|---|---|---|---|---|---|"]
    for (kind, op, dt), rs in sorted(groups.items()):
        top = max(rs, key=lambda r: r["shared_bytes"])
        regs = max((r["registers"] or 0) for r in rs)
        spill = max(rs, key=lambda r: r["spill_store_bytes"] or 0)
        out.append(f"| {kind} | {op} | {dt} | {len(rs)} | {top['shared_bytes']} ({top['kernel'][:40]}) | {regs} | "
                   f"{spill['spill_store_bytes'] or 0}" + (f" ({spill['kernel'][:40]})" if spill['spill_store_bytes'] else "")
                   + " |")
    return "\n".join(out) + "\n"


SUMMARY_START, SUMMARY_END = "<!-- sm90-static:start -->", "<!-- sm90-static:end -->"


def write_summary(path: Path, rows: list[dict]) -> None:
    """The summary table between the markers of ``path`` (the whole file when it has none)."""
    table = f"{SUMMARY_START}\n{summary_markdown(rows)}{SUMMARY_END}"
    body = path.read_text() if path.exists() else ""
    if SUMMARY_START in body and SUMMARY_END in body:
        head, rest = body.split(SUMMARY_START, 1)
        body = head + table + rest.split(SUMMARY_END, 1)[1]
    else:
        body = table + "\n"
    path.write_text(body)


def main(argv=None) -> int:
    # Set here, not at import (a test process imports this module and must keep its interpreter):
    # before any @triton.jit is created, Triton's real compiler instead of the interpreter, and
    # ptxas -v output printed by Triton after each compile.
    os.environ.pop("TRITON_INTERPRET", None)
    os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", default=None, help=f"comma-separated of {', '.join(OPS)} (default: all)")
    ap.add_argument("--json", default=None, help="write the table to this JSON file")
    ap.add_argument("--no-cuda", action="store_true", help="leave out the CUDA C++ kernels (nvcc)")
    ap.add_argument("--cuda-only", action="store_true", help="only the CUDA C++ kernels")
    ap.add_argument("--quiet", action="store_true", help="print only problems and a summary")
    ap.add_argument("--jobs", type=int, default=1, help="compile the ops in this many processes")
    ap.add_argument("--distinct", choices=("specialisation", "config"), default="specialisation",
                    help="one kernel per runtime specialisation (default) or per tile/stage configuration")
    ap.add_argument("--summary", default=None, help="write a markdown summary per op and dtype to this file")
    args = ap.parse_args(argv)
    ops = [o.strip() for o in args.ops.split(",")] if args.ops else list(OPS)
    unknown = set(ops) - set(OPS)
    if unknown:
        ap.error(f"unknown ops {sorted(unknown)}; have {list(OPS)}")
    if args.cuda_only:
        rows = compile_cuda(os.environ.get("NVCC", "nvcc"))
    else:
        rows = _compile_all(ops, not args.no_cuda, max(1, args.jobs), args.distinct)
    bad = problems(rows)
    if not args.quiet:
        print(format_rows(rows))
    worst = max(rows, key=lambda r: r["shared_bytes"])
    print(f"sm90-static: {len(rows)} kernels compiled for sm_90; largest shared memory {worst['shared_bytes']} B "
          f"({worst['kernel']}, {worst.get('dtype', '')}) of {SMEM_LIMIT}; {len(bad)} over a limit")
    for p in bad:
        print("OVER LIMIT:", p)
    if args.summary:
        write_summary(Path(args.summary), rows)
        print(f"wrote {args.summary}")
    if args.json:
        import torch
        import triton

        doc = {"target": "sm_90", "smem_limit_bytes": SMEM_LIMIT, "date": _dt.date.today().isoformat(),
               "commit": os.environ.get("SUBLOCAL_COMMIT") or _git_commit(), "torch": torch.__version__,
               "triton": triton.__version__, "rows": rows}
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {path}")
    return 1 if bad else 0


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
