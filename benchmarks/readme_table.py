"""Writes the README's benchmark table from the newest results file (never typed by hand).

    python -m benchmarks.readme_table [--results FILE] [--readme README.md] [--check]

GPU results are preferred over CPU results; the newest date wins. The table goes between
the ``<!-- bench-table:start -->`` and ``<!-- bench-table:end -->`` markers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.common import RESULTS_DIR, format_table

START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"


def newest_results(directory: Path = RESULTS_DIR) -> Path | None:
    files = sorted(p for p in directory.glob("*.json") if not p.name.startswith("sm90-static"))
    if not files:
        return None

    def key(p: Path):
        doc = json.loads(p.read_text())
        return (not p.name.startswith("cpu-"), doc.get("date", ""), p.name)

    return max(files, key=key)


def render(path: Path | None) -> str:
    if path is None:
        return "No results file yet: run `python -m benchmarks.run` (GPU figures are pending)."
    doc = json.loads(path.read_text())
    table = format_table(doc["rows"], doc["machine"], markdown=True)
    lines = table.splitlines()
    return "\n".join([f"From `benchmarks/results/{path.name}` (commit {doc['commit'][:10]}, {doc['date']}).", "",
                      lines[0], ""] + lines[1:])


def update(readme: Path, text: str) -> str:
    body = readme.read_text()
    if START not in body or END not in body:
        raise SystemExit(f"{readme}: markers {START} / {END} not found")
    head, rest = body.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{text}\n{END}{tail}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=None)
    ap.add_argument("--readme", type=Path, default=Path(__file__).resolve().parent.parent / "README.md")
    ap.add_argument("--check", action="store_true", help="exit 1 if the README is not up to date")
    args = ap.parse_args(argv)
    new = update(args.readme, render(args.results or newest_results()))
    if args.check:
        return 0 if new == args.readme.read_text() else 1
    args.readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
