"""Static sm_90 resource check: every GPU kernel compiled as it is really launched, no GPU needed.

    python -m benchmarks.sm90_static                  # print the table; exit 1 if a kernel is over a limit
    python -m benchmarks.sm90_static --json FILE      # also write the table (make static-report)

Triton kernels: each op's launchers (``lstm_fwd_triton`` ...) run on small CPU tensors with their
``@triton.jit`` kernels swapped for recorders, over problems chosen so that every tile size,
``num_warps`` and ``num_stages`` the launcher can pick is reached, for float32 (tf32x3, and plain
TF32 as chosen when torch allows TF32), bfloat16, float16 and float64, with every optional input present
(initial states, lengths, bias, output gate: the largest variant). Each recorded launch is then
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


def _t(*shape, dtype, fill=None):
    import torch

    t = torch.rand(*shape, dtype=torch.float64).to(dtype) if fill is None else torch.full(shape, fill, dtype=dtype)
    return t


def _lengths(B, T):
    import torch

    return torch.tensor([T - (i % T) for i in range(B)], dtype=torch.int64)


def launches_lstm(dtype):
    """Tile sizes: BLOCK_H = BLOCK_K = next power of two of H in [16, 64] (32 for float64);
    H = 9, 32, 256, 300."""
    import torch
    from sublocal_kernels.ops.lstm import triton as K

    T, B, C = 3, 5, 20
    for H in (9, 32, 256, 300):
        ctx = {"op": "lstm", "case": f"H={H}"}
        weights = []
        for _ in range(2):
            weights += [_t(4 * H, C, dtype=dtype), _t(4 * H, H, dtype=dtype), _t(4 * H, dtype=dtype),
                        _t(4 * H, dtype=dtype)]
        x = _t(B, T, C, dtype=dtype)
        h0, c0 = _t(2, B, H, dtype=dtype), _t(2, B, H, dtype=dtype)
        L = _lengths(B, T)
        yield ctx, lambda: K.lstm_fwd_triton(x, L, weights, h0, c0, True)
        yield ctx, lambda: K.lstm_infer_triton(x, L, weights, h0, c0, True)
        sd = torch.float64 if dtype == torch.float64 else torch.float32
        gates, states = _t(2, B * T, 4 * H, dtype=sd), _t(2, B * T, 2 * H, dtype=sd)
        yield ctx, lambda: K.lstm_bwd_triton(_t(B, T, 2 * H, dtype=dtype), h0, c0, x, L, weights, h0, c0,
                                             gates, states, True)


def launches_mlstm(dtype):
    """The multiplicative cell's kernels at the LSTM's tile sizes (the same ``_blocks``): H = 9,
    32, 256, 300 and UniRep's 1900, with bias and initial states."""
    import torch
    from sublocal_kernels.ops.lstm import triton as K

    T, B, C = 3, 5, 10
    for H in (9, 32, 256, 300, 1900):
        ctx = {"op": "mlstm", "case": f"H={H}"}
        weights = []
        for _ in range(2):
            weights += [_t(4 * H, C, dtype=dtype), _t(4 * H, H, dtype=dtype), _t(4 * H, dtype=dtype),
                        _t(4 * H, dtype=dtype), _t(H, C, dtype=dtype), _t(H, H, dtype=dtype)]
        x = _t(B, T, C, dtype=dtype)
        h0, c0 = _t(2, B, H, dtype=dtype), _t(2, B, H, dtype=dtype)
        L = _lengths(B, T)
        yield ctx, lambda: K.mlstm_fwd_triton(x, L, weights, h0, c0, True)
        yield ctx, lambda: K.mlstm_infer_triton(x, L, weights, h0, c0, True)
        sd = torch.float64 if dtype == torch.float64 else torch.float32
        gates, states = _t(2, B * T, 5 * H, dtype=sd), _t(2, B * T, 3 * H, dtype=sd)
        yield ctx, lambda: K.mlstm_bwd_triton(_t(B, T, 2 * H, dtype=dtype), h0, c0, x, L, weights, h0, c0,
                                              gates, states, True)


def launches_fo_pool(dtype):
    """Channel block = next power of two of D in [16, 64]; one time segment, or several (the
    aggregate pass, the segment scan and the seeded pass) when the sequences cannot fill the GPU."""
    from sublocal_kernels.ops.fo_pool import CHUNK
    from sublocal_kernels.ops.fo_pool import triton as K

    B, T = 2, 4 * CHUNK + 3
    for D in (9, 32, 256):
        for segments in (1, 3):
            ctx = {"op": "fo_pool", "case": f"D={D} segments={segments}"}
            f, z, o = (_t(B, T, D, dtype=dtype) for _ in range(3))
            init, L = _t(B, D, dtype=dtype), _lengths(B, T)
            yield ctx, lambda: K.fo_pool_fwd_triton(f, z, o, L, init, False, CHUNK, segments=segments)
            import torch

            sd = torch.float64 if dtype == torch.float64 else torch.float32
            ckpt = _t(B, T // CHUNK + 1, D, dtype=sd)
            yield ctx, lambda: K.fo_pool_bwd_triton(_t(B, T, D, dtype=dtype), init, f, z, o, L, ckpt, False, CHUNK,
                                                    segments=segments)


def launches_multiwidth_conv1d(dtype):
    """Output-column block = next power of two of N in [16, 128]; input-channel block of the input
    gradient = next power of two of C in [16, 64]."""
    from sublocal_kernels.ops.multiwidth_conv1d import triton as K

    B, T = 2, 70
    for C, widths, filters in ((5, (2,), 7), (20, (1, 3, 5, 9, 15, 21), 10), (33, (3, 5), 16), (80, (9,), 100)):
        ctx = {"op": "multiwidth_conv1d", "case": f"C={C} N={filters * len(widths)}"}
        x = _t(B, T, C, dtype=dtype)
        ws = [_t(filters, C, k, dtype=dtype) for k in widths]
        bias, L = _t(filters * len(widths), dtype=dtype), _lengths(B, T)
        yield ctx, lambda: K.multiwidth_conv1d_fwd_triton(x, L, ws, bias, "relu", False, False, 1)
        y = _t(B, T, filters * len(widths), dtype=dtype)
        yield ctx, lambda: K.multiwidth_conv1d_bwd_triton(y, x, L, ws, y, "relu", False, False, 1, True, True, splits=2)
    # The QRNN's gate convolutions: width 2, causal, tanh / sigmoid fused (C = 512: layer 2 of a
    # bidirectional 256-unit stack, N = 256 per gate).
    ctx = {"op": "multiwidth_conv1d", "case": "QRNN gate C=512 N=256"}
    x, ws = _t(B, T, 512, dtype=dtype), [_t(256, 512, 2, dtype=dtype)]
    bias, L, y = _t(256, dtype=dtype), _lengths(B, T), _t(B, T, 256, dtype=dtype)
    for act in ("tanh", "sigmoid"):
        yield ctx, lambda act=act: K.multiwidth_conv1d_fwd_triton(x, L, ws, bias, act, True, False, 1)
        yield ctx, lambda act=act: K.multiwidth_conv1d_bwd_triton(y, x, L, ws, y, act, True, False, 1, True, True,
                                                                  splits=2)


def launches_attention_pool(dtype):
    """One block configuration per dtype (``_config``); the backward in one or several slices."""
    from sublocal_kernels.ops.attention_pool import triton as K

    B, T = 3, 70
    for D, A in ((9, 11), (512, 400)):
        ctx = {"op": "attention_pool", "case": f"D={D} A={A}"}
        h, L = _t(B, T, D, dtype=dtype), _lengths(B, T)
        w, v, b = _t(D, A, dtype=dtype), _t(A, dtype=dtype), _t(A, dtype=dtype)
        yield ctx, lambda: K.attention_pool_fwd_triton(h, L, w, v, b)
        ctx_, alpha = _t(B, D, dtype=dtype), _t(B, T, dtype=dtype)
        yield ctx, lambda: K.attention_pool_bwd_triton(ctx_, alpha, h, L, w, v, b, ctx_, alpha, dw_split=2)


def launches_channel_attention_pool(dtype):
    """One (sequence, channel block) per program; with and without alpha, every gradient or only
    the logits'."""
    import torch
    from sublocal_kernels.ops.channel_attention_pool import triton as K

    B, T = 3, 70
    sd = torch.float64 if dtype == torch.float64 else torch.float32
    for D in (9, 1024):
        ctx = {"op": "channel_attention_pool", "case": f"D={D}"}
        v, e, L = _t(B, T, D, dtype=dtype), _t(B, T, D, dtype=dtype), _lengths(B, T)
        c = _t(B, D, dtype=dtype)
        lse, arg = torch.zeros(B, D, dtype=sd), torch.zeros(B, D, dtype=torch.int64)
        for alpha in (False, True):
            yield ctx, lambda: K.channel_attention_pool_fwd_triton(v, e, L, alpha)
        yield ctx, lambda: K.channel_attention_pool_bwd_triton(c, c, v, v, e, L, c, lse, arg, True, True)
        yield ctx, lambda: K.channel_attention_pool_bwd_triton(c, None, None, v, e, L, c, lse, arg, False, True)


OPS = {
    "lstm": ("sublocal_kernels.ops.lstm.triton", launches_lstm),
    "mlstm": ("sublocal_kernels.ops.lstm.triton", launches_mlstm),
    "fo_pool": ("sublocal_kernels.ops.fo_pool.triton", launches_fo_pool),
    "multiwidth_conv1d": ("sublocal_kernels.ops.multiwidth_conv1d.triton", launches_multiwidth_conv1d),
    "attention_pool": ("sublocal_kernels.ops.attention_pool.triton", launches_attention_pool),
    "channel_attention_pool": ("sublocal_kernels.ops.channel_attention_pool.triton",
                               launches_channel_attention_pool),
}


def record_launches(ops=None) -> list:
    """Every distinct (kernel, specialisation, options) the launchers of ``ops`` ask for."""
    import importlib

    import torch

    sink: list = []
    for op in ops or OPS:
        mod_name, gen = OPS[op]
        mod = importlib.import_module(mod_name)
        for dt in DTYPES:
            # float32 products are tf32x3 by default and plain TF32 when torch allows TF32
            # (sublocal_kernels.ops._triton_utils.dot_precision): both are launcher choices.
            for tf32 in ((False, True) if dt == "float32" else (False,)):
                context: dict = {}
                old = torch.backends.cuda.matmul.allow_tf32
                torch.backends.cuda.matmul.allow_tf32 = tf32
                try:
                    with recording([mod], sink, context):
                        for ctx, call in gen(getattr(torch, dt)):
                            context.clear()
                            context.update(ctx, dtype=dt)
                            if tf32:
                                context["case"] += " allow_tf32"
                            call()
                finally:
                    torch.backends.cuda.matmul.allow_tf32 = old
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
