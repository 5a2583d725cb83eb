"""Turn a benchmark JSON-lines log into the usual results file, and print its table.

    python -m benchmarks.collect OUT/bench.jsonl [--out DIR_OR_FILE]

``benchmarks.run --jsonl`` appends every finished case to the log at once; the run writes the
results file itself at its end, on Ctrl-C and on SIGTERM. After a SIGKILL (or a machine taken
away mid-run) this recovers every case the log holds; a torn last line is ignored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.common import format_table, results_from_jsonl


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("jsonl", type=Path)
    ap.add_argument("--out", type=Path, default=None, help="results file or directory (default: beside the log)")
    ap.add_argument("--no-table", action="store_true")
    args = ap.parse_args(argv)
    if not args.jsonl.exists():
        print(f"benchmarks.collect: error: {args.jsonl}: no such file", file=sys.stderr)
        return 1
    path = results_from_jsonl(args.jsonl, args.out)
    if path is None:
        print(f"benchmarks.collect: {args.jsonl} holds no finished case", file=sys.stderr)
        return 1
    doc = json.loads(path.read_text())
    if not args.no_table:
        print(format_table(doc["rows"], doc["machine"]))
    print(f"results: {path} ({len(doc['rows'])} rows, commit {doc['commit'][:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
