"""Run the op benchmarks and print the table: ``python -m benchmarks.run [options]``.

    python -m benchmarks.run                       # every op, its default shapes for this device
    python -m benchmarks.run --ops fo_pool --shapes qrnn,rna --device cuda
    python -m benchmarks.run --quick               # the quick profile (make demo; the first GPU call)
    python -m benchmarks.run --profile full --skip-existing benchmarks/results/nvidia-h200-DATE.json

Prints one line per case as it is timed (op, shape, dtype, mode, provider, median), then the
table. Writes ``benchmarks/results/<machine>-<date>.json`` (merged with a same-day file) unless
``--results none``; ``--jsonl FILE`` also appends each finished case to a JSON-lines log at once,
so a run cut short keeps what it measured (``python -m benchmarks.collect FILE`` turns a log
into a results file). ``python -m benchmarks.readme_table`` turns the newest results file into
the README's table.

Profiles: ``default`` (each op's default shapes and peers for the device), ``quick`` (no
``torch.compile`` peers, no peer that takes many seconds per call there; forward and
forward+backward on a GPU, forward+backward on a CPU), ``full`` (everything).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


class _Progress:
    """Replaces pytest's own output: a line per case, failures in short, then our table."""

    def __init__(self):
        self.failed = 0
        self.silent = False
        self.t0 = time.perf_counter()
        self.result = None

    def pytest_runtest_logstart(self, nodeid, location):
        # pytest's placeholder when an op has no case here (e.g. whole models on a GPU): silent.
        self.silent = "[NOTSET]" in nodeid
        if self.silent:
            return
        case = nodeid.split("[", 1)[-1].rstrip("]") if "[" in nodeid else nodeid
        op = nodeid.split("bench_", 1)[-1].split(".py", 1)[0]
        print(f"  {op:<18} {case.replace('-', ' ', 3):<58}", end="", flush=True)

    def pytest_runtest_logreport(self, report):
        if self.silent and not report.failed:
            return
        if report.when == "call" and report.passed:
            ms = dict(report.user_properties).get("ms_p50")
            print(f"{ms:12.3f} ms" if ms is not None else "", flush=True)
        elif report.failed:
            self.failed += 1
            msg = str(report.longrepr).strip().splitlines()
            print(f"  FAILED ({report.when}): {msg[-1] if msg else ''}", flush=True)
        elif report.skipped and report.when == "setup":
            print("  skipped", flush=True)

    def pytest_collectreport(self, report):
        if report.failed:
            self.failed += 1
            print(f"collection failed: {report.nodeid}\n{report.longrepr}", flush=True)

    def pytest_sessionfinish(self, session):
        self.result = getattr(session.config, "_sublocal_bench", None)


def find_benchmarks() -> tuple[dict[str, Path], dict[str, Path]]:
    """(name -> file of every op's benchmark, as sublocal_kernels/ops/registry.py declares it;
    name -> file of every other benchmarks/bench_<name>.py: whole models, prediction, UniRep)."""
    from sublocal_kernels.ops import registry

    ops = {}
    for spec in registry.OPS:
        path = HERE.parent / spec.benchmark
        if not path.is_file():
            raise FileNotFoundError(f"{spec.name}: its benchmark {spec.benchmark} does not exist")
        ops[path.stem[len("bench_"):]] = path
    others = {f.stem[len("bench_"):]: f for f in sorted(HERE.glob("bench_*.py")) if f not in ops.values()}
    return ops, others


def main(argv=None) -> int:
    # Ctrl-C and a time budget's SIGINT end the run with its results written, also when started
    # as a background job (which a shell starts with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ops, others = find_benchmarks()
    ap.add_argument("--ops", default=None,
                    help=f"comma-separated benchmarks: ops ({', '.join(ops)}) or whole models ({', '.join(others)}); "
                         "default: all")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--shapes", default=None)
    ap.add_argument("--dtypes", default=None)
    ap.add_argument("--modes", default=None)
    ap.add_argument("--providers", default=None)
    ap.add_argument("--threads", default=None, type=int)
    ap.add_argument("--results", default=None, help="results file or directory, or 'none'")
    ap.add_argument("--profile", default="default", choices=("default", "quick", "full"))
    ap.add_argument("--quick", action="store_true", help="the quick profile (--profile quick)")
    ap.add_argument("--jsonl", default=None, help="append each finished case to this JSON-lines file at once")
    ap.add_argument("--skip-existing", default=None, help="leave out cases already in this results file or log")
    ap.add_argument("--tiny", action="store_true", help="time scaled-down shapes, one round each (dry runs)")
    ap.add_argument("--list", action="store_true", help="list the cases and their count; time nothing")
    args = ap.parse_args(argv)
    every = {**ops, **others}
    files = sorted(every.values())
    if args.ops:
        wanted = {o.strip() for o in args.ops.split(",")}
        files = [f for f in files if f.stem[len("bench_"):] in wanted]
        missing = wanted - {f.stem[len("bench_"):] for f in files}
        if missing:
            ap.error(f"no benchmark for {sorted(missing)}; have {sorted(every)}")
    pytest_args = [str(f) for f in files] + ["-p", "no:cacheprovider", f"--bench-device={args.device}",
                                             f"--bench-profile={'quick' if args.quick else args.profile}"]
    for opt in ("shapes", "dtypes", "modes", "providers", "threads", "results", "jsonl", "skip_existing"):
        value = getattr(args, opt)
        if value is not None:
            pytest_args.append(f"--bench-{opt.replace('_', '-')}={value}")
    if args.tiny:
        pytest_args.append("--bench-tiny")
    if args.list:
        return int(pytest.main(pytest_args + ["--collect-only", "-q"]))
    progress = _Progress()
    # pytest's terminal output is replaced by _Progress (-ra in addopts belongs to it).
    code = int(pytest.main(pytest_args + ["-p", "no:terminal", "-o", "addopts=--strict-markers"], plugins=[progress]))
    if progress.result:
        from benchmarks.common import format_table

        rows, machine, path = progress.result
        print()
        print(format_table(rows, machine))
        if path:
            print(f"results: {path}")
    print(f"{len(progress.result[0]) if progress.result else 0} cases in {time.perf_counter() - progress.t0:.0f} s"
          + (f", {progress.failed} failed" if progress.failed else ""))
    return code


if __name__ == "__main__":
    sys.exit(main())
