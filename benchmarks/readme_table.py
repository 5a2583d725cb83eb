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

from benchmarks.common import FO_POOL_SHAPES, RESULTS_DIR, SHAPES, format_table, replace_section

START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"


def newest_results(directory: Path = RESULTS_DIR) -> Path | None:
    files = sorted(p for p in directory.glob("*.json") if not p.name.startswith("sm90-static"))
    if not files:
        return None

    def key(p: Path):
        doc = json.loads(p.read_text())
        return (not p.name.startswith("cpu-"), doc.get("date", ""), p.name)

    return max(files, key=key)


# Peers shown first, in this order: the padded nn.LSTM is the fair LSTM peer (the packed one,
# beside it, has our semantics but is many times slower on a CPU).
HEADLINE_PEERS = ("nn.LSTM-padded", "nn.LSTM-packed")


def _machine_line(machine: dict) -> str:
    desc = machine.get("gpu") or f"{machine.get('cpu', 'cpu')}, {machine.get('threads')} threads"
    peaks = ", ".join(f"{v} TFLOP/s ({k})" for k, v in machine["peak_tflops"].items())
    return (f"{desc}; torch {machine.get('torch')}; copy bandwidth {machine['bandwidth_gbs']} GB/s; "
            f"matmul peak {peaks}. `vs X`: X's time over ours (>1: we are faster).")


def _headline_first(table: str) -> str:
    """The markdown table with the HEADLINE_PEERS columns right after "of floor"."""
    rows = [line.split(" | ") for line in table.splitlines()]
    head = [c.strip("| ") for c in rows[0]]
    first = head.index("of floor") + 1
    moved = [head.index(f"vs {p}") for p in HEADLINE_PEERS if f"vs {p}" in head]
    order = list(range(first)) + moved + [i for i in range(first, len(head)) if i not in moved]

    def cells(row):
        parts = [c.strip("| ") for c in row]
        return "| " + " | ".join(parts[i] for i in order) + " |"

    return "\n".join([cells(rows[0]), rows[1][0]] + [cells(r) for r in rows[2:]])


def _own_shape(name: str):
    """A shape defined by one op's benchmark rather than the named shapes (docs/benchmarking.md)."""
    from benchmarks.bench_channel_attention_pool import LA_SHAPES
    from benchmarks.bench_mlstm import MLSTM_SHAPES
    from benchmarks.bench_unirep import UNIREP_SHAPES

    for own in (LA_SHAPES, MLSTM_SHAPES, UNIREP_SHAPES):
        if name in own:
            return own[name]
    raise KeyError(f"shape {name!r} is not defined in benchmarks/common.py or by an op's benchmark")


def _language_model_shape(name: str) -> str | None:
    """The description of an mLSTM / UniRep shape (log-normal lengths), or None."""
    from benchmarks.bench_mlstm import MLSTM_SHAPES
    from benchmarks.bench_unirep import UNIREP_SHAPES

    if name in UNIREP_SHAPES:
        s = UNIREP_SHAPES[name]
        return (f"`{name}`: UniRep-{s.hidden}'s architecture, B={s.B} proteins, log-normal lengths (median 400) up "
                f"to {s.T}, embedded into the fusion representation without a gradient")
    if name in MLSTM_SHAPES:
        s = MLSTM_SHAPES[name]
        return f"`{name}`: mLSTM, B={s.B}, C={s.C}, hidden {s.hidden}, one direction, lengths up to {s.T}"
    return None


def _shapes_line(rows: list[dict]) -> str:
    """What each named shape in the table is (benchmarks/common.py, docs/benchmarking.md)."""
    seen = []
    for r in rows:
        if (r["op"] == "fo_pool", r["shape"]) not in seen:
            seen.append((r["op"] == "fo_pool", r["shape"]))
    out = []
    for fo_pool, name in sorted(seen):
        s = (FO_POOL_SHAPES if fo_pool else SHAPES).get(name)
        if s is None and _language_model_shape(name):
            out.append(_language_model_shape(name))
            continue
        if s is None:  # an op's own shape (bench_channel_attention_pool's `light-attention`)
            s = _own_shape(name)
            out.append(f"`{name}`: B={s.B}, T={s.T}, D={s.D}, lengths uniform in [{s.min_length_frac:g} T, T]")
        elif fo_pool:
            out.append(f"`{name}` (fo-pool): B={s.B}, T={s.T}, D={s.D}, every sequence full length")
        else:
            out.append(f"`{name}`: B={s.B}, T={s.T}, C={s.C}, conv widths {','.join(map(str, s.widths))} x "
                       f"{s.filters} filters, LSTM hidden {s.hidden} per direction, attention {s.attention}, "
                       f"lengths uniform in [{s.min_length_frac:g} T, T]")
    return "Shapes: " + "; ".join(out) + "."


def _models_table(rows: list[dict]) -> str:
    """The whole-model rows (bench_models.py): our time per training step and inference batch,
    each torch.nn build's time over ours, our fraction of the model's FLOP floor and the ratio a
    build at that floor would reach against torch-ftz (its time over the floor), and, where
    ``--memory`` was recorded, the training step's peak RSS (ours, and ours over the torch.nn
    build's)."""
    by_key = {(r["shape"], r["mode"], r["provider"]): r for r in rows}
    head = ["model", "shape", "mode", "sublocal ms", "vs torch", "vs torch-ftz", "of floor", "floor vs torch-ftz",
            "peak RSS MB", "of torch's"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = {m: i for i, m in enumerate(("rlstm", "alstm", "cnnlstm", "qrnn", "tcn"))}
    ours = sorted((r for r in rows if r["provider"] == "sublocal"),
                  key=lambda r: (order.get(r["shape"].split("-")[0], 9), r["shape"], r["mode"] != "train"))
    for r in ours:
        model, shape = r["shape"].split("-", 1)
        once = r.get("vs_timed_once", [])
        ratios = [f"{r['vs'][p]:.2f}x" + ("*" if p in once else "") if p in r.get("vs", {}) else "-"
                  for p in ("torch", "torch-ftz")]
        mem, peer = r.get("peak_mem_mb"), by_key.get((r["shape"], r["mode"], "torch"), {}).get("peak_mem_mb")
        frac, floor = r.get("frac_of_floor"), r.get("floor_ms")
        ftz = by_key.get((r["shape"], r["mode"], "torch-ftz"), {}).get("ms_p50")
        cells = [model, shape, r["mode"], f"{r['ms_p50']:.1f}", *ratios, f"{frac:.0%}" if frac else "-",
                 f"{ftz / floor:.2f}x" if ftz and floor else "-", f"{mem:.0f}" if mem is not None else "-",
                 f"{mem / peer:.2f}" if mem is not None and peer else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    notes = ["Whole models (`benchmarks/bench_models.py`): one training step (forward, cross-entropy, "
             "backward, Adam) or one inference batch; `torch` is the same model built from `torch.nn` "
             "layers at PyTorch's defaults, `torch-ftz` the same under `torch.set_flush_denormal(True)`. "
             "Shapes: `paper` B=128, lengths uniform in [250, 1000]; `protein` B=64, log-normal lengths "
             "(median 450, full length up to 5000); `rna` B=8, lengths uniform in [7500, 30000]; `decay` "
             "the R-LSTM at `paper` sizes, B=32, T=1000, forget-gate bias -4 (a gradient that decays into "
             "subnormals). Floor: the model's weight-matrix products on valid positions at the run's matmul "
             "peak (a lower bound: elementwise work, softmax and Adam left out); `floor vs torch-ftz` is the "
             "ratio a build running at that floor would reach. Peak RSS: the training step's peak resident size above the resident size "
             "before it, each in a fresh process, output cache off (`python -m benchmarks.bench_models "
             "--memory --results FILE`)."]
    if any(r.get("vs_timed_once") for r in ours):
        notes.append("(* the peer was timed once: one call takes more than 20 s.)")
    return "\n".join(lines + [""] + notes)


def render(path: Path | None) -> str:
    # newest_results prefers GPU files, so a CPU file here means there is no GPU one.
    pending = [] if path is not None and not path.name.startswith("cpu-") else [
        "**GPU figures are pending**: no GPU results file exists yet; the figures below are CPU ones.", ""]
    if path is None:
        return "\n".join(pending + ["No results file yet: run `python -m benchmarks.run`."])
    doc = json.loads(path.read_text())
    op_rows = [r for r in doc["rows"] if r["op"] != "models"]
    model_rows = [r for r in doc["rows"] if r["op"] == "models"]
    out = pending + [f"From `benchmarks/results/{path.name}` (commit {doc['commit'][:10]}, {doc['date']}).", "",
                     _machine_line(doc["machine"])]
    if op_rows:
        out += ["", _headline_first(format_table(op_rows, markdown=True)), "", _shapes_line(op_rows)]
    if model_rows:
        out += ["", _models_table(model_rows)]
    return "\n".join(out)


def update(readme: Path, text: str) -> str:
    return replace_section(readme.read_text(), START, END, text, str(readme))


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
