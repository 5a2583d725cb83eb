"""TAPE's stability task (Rocklin et al., Science 2017, as split by Rao et al., NeurIPS 2019) from
frozen UniRep-1900 representations: the README's stability figure.

    python -m benchmarks.accuracy.tape_stability DATA_DIR [--model unirep-1900] [--pool unirep]
                                                 [--results DIR] [--readme README.md]

DATA_DIR holds ``stability_train.tsv`` and ``stability_valid.tsv`` (columns ``id, sequence,
value``; ``../shared/data/tape-stability/`` beside the checkout; never copied into the
repository). The benchmark runs the commands a user would:

1. ``sublocal embed MODEL train.fasta -o train.h5 --pool unirep`` (and the same for valid): the
   fusion representation ``h_avg || h_final || c_final`` (5,700 numbers for UniRep-1900);
2. ``sublocal probe train.h5 train.tsv --test valid.h5 valid.tsv --task regression``: standardised
   features, ridge regression with its penalty chosen by leave-one-out on the training split
   only, scored once on the validation split: Spearman's rho (TAPE's metric) and R^2.

Only the train and valid splits are available here, so the figure is on TAPE's validation split,
not its test split; TAPE's published figures are on the test split. Repeats: the splits are used
as published (no deduplication). The results file records each data file's name and SHA-256, the
commit, the machine and the time of each step: ``benchmarks/results/accuracy/tape-stability-<date>.json``.
``--readme`` writes the README's stability table from the newest such file (between
``<!-- stability-table:start -->`` and ``<!-- stability-table:end -->``).
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS_DIR, _cpu_name, git_commit, replace_section, sha256, write_doc

ACCURACY_DIR = RESULTS_DIR / "accuracy"
START, END = "<!-- stability-table:start -->", "<!-- stability-table:end -->"
# TAPE's published Spearman's rho on the stability test split (Rao et al., NeurIPS 2019).
PUBLISHED = [("UniRep (TAPE, fine-tuned)", 0.73), ("one-hot (TAPE)", 0.19)]


def split_to_files(tsv: Path, fasta: Path, labels: Path) -> int:
    """The TSV's sequences as FASTA and its values as a probe labels file; the record count."""
    n = 0
    with open(tsv, newline="") as fh, open(fasta, "w") as fa, open(labels, "w") as lb:
        lb.write("id\tvalue\n")
        for row in csv.DictReader(fh, delimiter="\t"):
            fa.write(f">{row['id']}\n{row['sequence']}\n")
            lb.write(f"{row['id']}\t{row['value']}\n")
            n += 1
    return n


def sublocal(*args: str) -> float:
    """Runs ``sublocal ARGS`` in a fresh process; its wall time."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sublocal_kernels.cli", *args], check=True)
    return time.perf_counter() - t0


def run(args) -> Path:
    data = Path(args.data)
    files = {split: data / f"stability_{split}.tsv" for split in ("train", "valid")}
    for path in files.values():
        if not path.is_file():
            raise SystemExit(f"{path}: no such file (DATA_DIR must hold stability_train.tsv and stability_valid.tsv)")
    doc = {"task": "tape-stability", "commit": git_commit(), "date": _dt.date.today().isoformat(),
           "machine": {"cpu": _cpu_name()}, "model": args.model, "pool": args.pool,
           "data": {p.name: {"sha256": sha256(p)} for p in files.values()},
           "protocol": "frozen representation, ridge regression fit on train, scored on valid",
           "published": [{"name": n, "spearman": v, "split": "test"} for n, v in PUBLISHED]}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        seconds = {}
        for split, path in files.items():
            doc["data"][path.name]["records"] = split_to_files(path, tmp / f"{split}.fasta", tmp / f"{split}.tsv")
            seconds[f"embed_{split}"] = round(sublocal("embed", args.model, str(tmp / f"{split}.fasta"), "-o",
                                                       str(tmp / f"{split}.h5"), "--pool", args.pool), 1)
        out = tmp / "probe.json"
        seconds["probe"] = round(sublocal("probe", str(tmp / "train.h5"), str(tmp / "train.tsv"), "--test",
                                          str(tmp / "valid.h5"), str(tmp / "valid.tsv"), "--task", "regression",
                                          "--json", str(out)), 1)
        probe = json.loads(out.read_text())
    doc.update(seconds=seconds, spearman=probe["spearman"], r2=probe["r2"], n_train=probe["n_train"],
               n_test=probe["n_test"], dim=probe["dim"])
    path = Path(args.results) / f"tape-stability-{doc['date']}.json"
    write_doc(path, doc)
    return path


def table(doc: dict) -> str:
    lines = ["| representation | probe | split | Spearman's rho |", "|---|---|---|---|",
             f"| {doc['model']} `{doc['pool']}` ({doc['dim']:,} numbers), frozen, `sublocal embed` | ridge "
             f"(`sublocal probe --test`) | valid ({doc['n_test']:,}; train {doc['n_train']:,}) | "
             f"**{doc['spearman']:.3f}** (R^2 {doc['r2']:.3f}) |"]
    for p in doc["published"]:
        lines.append(f"| {p['name']} | published | {p['split']} | {p['spearman']:.2f} |")
    s = doc["seconds"]
    note = (f"From `benchmarks/results/accuracy/tape-stability-{doc['date']}.json` (commit {doc['commit'][:10]}; "
            f"{doc['machine']['cpu']}): embedding {s['embed_train']:.0f} s (train) and {s['embed_valid']:.0f} s "
            f"(valid), probe {s['probe']:.0f} s. `python -m benchmarks.accuracy.tape_stability "
            f"../shared/data/tape-stability --readme README.md` regenerates it. TAPE's figures are on its test split, "
            f"which is not available here.")
    return "\n".join(lines) + "\n\n" + note


def write_readme(readme: Path, doc: dict) -> None:
    readme.write_text(replace_section(readme.read_text(), START, END, table(doc), str(readme)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?", help="directory with stability_train.tsv and stability_valid.tsv")
    p.add_argument("--model", default="unirep-1900")
    p.add_argument("--pool", default="unirep", choices=["mean", "final", "unirep"])
    p.add_argument("--results", default=str(ACCURACY_DIR))
    p.add_argument("--readme", default=None, help="write the README's stability table from the newest results")
    args = p.parse_args(argv)
    if args.data:
        print(f"results: {run(args)}")
    if args.readme:
        files = sorted(Path(args.results).glob("tape-stability-*.json"))
        if not files:
            raise SystemExit(f"no results in {args.results}")
        write_readme(Path(args.readme), json.loads(files[-1].read_text()))
        print(f"{args.readme}: stability table from {files[-1]}")
    if not args.data and not args.readme:
        p.error("give DATA_DIR, --readme, or both")
    return 0


if __name__ == "__main__":
    sys.exit(main())
