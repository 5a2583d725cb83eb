"""Run the op benchmarks and print the table: ``python -m benchmarks.run [options]``.

    python -m benchmarks.run                       # every op, its default shapes for this device
    python -m benchmarks.run --ops fo_pool --shapes qrnn,rna --device cuda
    python -m benchmarks.run --quick               # the smallest default set (make demo)

Writes ``benchmarks/results/<machine>-<date>.json`` (merged with a same-day file) unless
``--results none``; ``python -m benchmarks.readme_table`` turns the newest file into the
README's table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", default=None, help="comma-separated ops (fo_pool, multiwidth_conv1d, lstm, attention_pool)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--shapes", default=None)
    ap.add_argument("--dtypes", default=None)
    ap.add_argument("--modes", default=None)
    ap.add_argument("--providers", default=None)
    ap.add_argument("--threads", default=None, type=int)
    ap.add_argument("--results", default=None, help="results file, or 'none'")
    ap.add_argument("--quick", action="store_true", help="forward+backward only, without the peers that take minutes per call on a CPU (the demo)")
    args = ap.parse_args(argv)
    files = sorted(HERE.glob("bench_*.py"))
    if args.ops:
        wanted = {o.strip() for o in args.ops.split(",")}
        files = [f for f in files if f.stem[len("bench_"):] in wanted]
        missing = wanted - {f.stem[len("bench_"):] for f in files}
        if missing:
            ap.error(f"no benchmark for {sorted(missing)}; have {[f.stem[6:] for f in sorted(HERE.glob('bench_*.py'))]}")
    pytest_args = [str(f) for f in files] + ["-q", "-p", "no:cacheprovider", "--benchmark-columns=median,iqr,rounds",
                                             f"--bench-device={args.device}"]
    for opt in ("shapes", "dtypes", "modes", "providers", "threads", "results"):
        value = getattr(args, opt)
        if value is not None:
            pytest_args.append(f"--bench-{opt}={value}")
    if args.quick:
        pytest_args.append("--bench-quick")
        if args.modes is None:
            pytest_args.append("--bench-modes=fwd+bwd")
    return int(pytest.main(pytest_args))


if __name__ == "__main__":
    sys.exit(main())
