"""The engine of the cross-validation accuracy benchmarks (:mod:`.deeploc2`, :mod:`.lncrna`).

A *recipe* is a name and the ``sublocal train`` flags of one model. :func:`run_recipe` runs

    sublocal train DATA --cv --out RUN_DIR FLAGS [--only-folds F,...] [--resume]

in a fresh process (a run directory that already holds part of the run is resumed, so the
folds of a recipe can be spread over several sittings), then writes a results file,
``benchmarks/results/accuracy/<data set>-<recipe>-<date>.json``, with:

- the data file's name, SHA-256 and record count; the commit, the machine and torch;
- the recipe's flags and the exact command;
- every fold's test figures (best checkpoint by the recipe's ``--select-by``), their mean and
  standard deviation, the pooled out-of-fold report, which folds were run and which not;
- seconds per epoch, and the peak resident memory of the training process; each sitting's date,
  commit, folds trained, seconds and peak (a sitting that trains no fold re-scores the run at
  its commit), and their total and maximum;
- for recipes trained with ``--test-each-epoch``: what each selection rule would have chosen
  (the validation figure's best epoch, ties to the lower validation loss) and that epoch's test
  figures, and the last epoch's: the measurement behind ``--select-by``'s defaults;
- the peak memory of one training step (forward and backward) on the data set's longest record,
  measured alone in a fresh process.

:func:`table` renders the README's accuracy table from the newest results file of each recipe.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import RESULTS_DIR, _cpu_name, git_commit, replace_section, sha256, write_doc

ACCURACY_DIR = RESULTS_DIR / "accuracy"
RULES = ("loss", "accuracy", "mcc", "macro-f1", "micro-f1", "jaccard", "macro-auc")
# The history's name of each rule's figure (val_/test_ prefixed), single-label and multi-label.
_FIGURE = {False: {"loss": "loss", "accuracy": "accuracy", "mcc": "mcc", "macro-f1": "macro_f1",
                   "micro-f1": "accuracy"},
           True: {"loss": "loss", "accuracy": "subset_accuracy", "mcc": "macro_mcc", "macro-f1": "macro_f1",
                  "micro-f1": "micro_f1", "jaccard": "jaccard", "macro-auc": "macro_auc"}}


@dataclass(frozen=True)
class Recipe:
    """One model's flags for ``sublocal train --cv`` and what the README says of it."""

    name: str
    flags: tuple[str, ...]
    label: str
    note: str = ""
    folds: tuple[str, ...] = field(default=())  # the folds run by default (empty: all)
    # Per-protein features to train on (--model mlp): ``(MODEL, POOL)`` for ``sublocal embed MODEL
    # FASTA --pool POOL``, run per partition of the data (see :func:`embedded_features`).
    embed: tuple[str, str] | None = None


@dataclass(frozen=True)
class DataSet:
    """One data set's benchmark: its recipes (run in ``order`` by default), the published
    figures beside ours, the README markers of its table and the command that regenerates it."""

    name: str
    recipes: dict
    order: list
    published: list
    start: str
    end: str
    command: str
    doc: str


def command_line(spec: DataSet, argv=None) -> int:
    """``python -m benchmarks.accuracy.<data set> DATA [--recipe R ...] [--folds 0,1] [--readme README.md]``."""
    p = argparse.ArgumentParser(description=spec.doc.split("\n\n")[0])
    p.add_argument("data", nargs="?", help="the data file (under ../shared/data/)")
    p.add_argument("--recipe", action="append", choices=list(spec.recipes), help="default: every recipe")
    p.add_argument("--folds", default=None, help="train only these folds now (e.g. 0,1); the rest later")
    p.add_argument("--runs", default="runs/accuracy", help="where the run directories go (resumed when present)")
    p.add_argument("--results", default=str(ACCURACY_DIR))
    p.add_argument("--readme", default=None, help="write the README's table from the newest results")
    args = p.parse_args(argv)
    if args.data:
        folds = tuple(args.folds.split(",")) if args.folds else None
        for name in args.recipe or spec.order:
            path = run_recipe(spec.name, Path(args.data), spec.recipes[name], Path(args.runs), folds,
                              Path(args.results), spec.published)
            print(f"results: {path}")
    if args.readme:
        readme = Path(args.readme)
        text = table(newest(Path(args.results), spec.name), spec.order, spec.published, spec.command)
        readme.write_text(replace_section(readme.read_text(), spec.start, spec.end, text, str(readme)))
        print(f"{readme}: {spec.name} table")
    if not args.data and not args.readme:
        p.error("give DATA, --readme, or both")
    return 0


def _machine() -> dict:
    import torch

    return {"cpu": _cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}


def selection_table(summaries: list[dict], multi: bool) -> dict:
    """Per rule (and ``last``): the mean over folds of the test figures at the epoch the rule
    picks by validation; only folds whose history has ``test_`` figures count."""
    names = _FIGURE[multi]
    keys = sorted({v for v in names.values() if v != "loss"})
    picked: dict[str, list[dict]] = {}
    for summary in summaries:
        history = summary["history"]
        if not history or not any(k.startswith("test_") for k in history[0]):
            continue
        for rule, fig in list(names.items()) + [("last", None)]:
            if rule == "last":
                row = history[-1]
            elif f"val_{fig}" not in history[0]:
                continue  # a run from before the figure was recorded
            else:
                sign = -1.0 if rule == "loss" else 1.0
                row = max(history, key=lambda h: (sign * _finite(h[f"val_{fig}"]), -h["val_loss"], -h["epoch"]))
            picked.setdefault(rule, []).append({"epoch": row["epoch"], **{k: row.get(f"test_{k}") for k in keys}})
    # A rule's row averages the folds that recorded it; a figure some fold lacks is left out.
    return {rule: {"folds": len(rows), "epochs": [r["epoch"] for r in rows],
                   **{k: sum(r[k] for r in rows) / len(rows) for k in keys if all(_finite(r[k]) > -math.inf
                                                                                  for r in rows)}}
            for rule, rows in picked.items()}


def _finite(value) -> float:
    """A history figure for comparing: an undefined one (None, NaN) ranks below every other."""
    return float(value) if value is not None and math.isfinite(value) else -math.inf


def longest_record_memory(data: Path, run_dir: Path) -> dict | None:
    """One training step (forward, backward) of a fold's model on the longest record of
    ``data``, in a fresh process: its peak resident memory and the process's before it."""
    folds = sorted(run_dir.glob("fold-*/best.json"))
    if not folds:
        return None
    code = f"""
import json, resource, sys, torch
from sublocal_kernels.data import SequenceDataset, collate, load_records
from sublocal_kernels.training import load_checkpoint
from sublocal_kernels.training.evaluation import _loss_sum
ck = load_checkpoint({str(folds[0])!r})
cfg = ck.meta["train_config"]
if cfg.get("single_label_only", False):
    from sublocal_kernels.training.data import single_label_records
    recs = single_label_records(load_records({str(data)!r}, "auto", cfg["alphabet"], None, multi_label=True), "")
else:
    recs = load_records({str(data)!r}, "auto", cfg["alphabet"], ck.classes, multi_label=cfg["multi_label"])
longest = max(range(len(recs)), key=lambda i: len(recs[i].sequence))
ds = SequenceDataset([recs[longest]], ck.classes, cfg["alphabet"], cfg["max_length"], multi_label=cfg["multi_label"])
model = ck.model.train()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
batch = collate(ds, [0])
loss = _loss_sum(model(batch.tokens, batch.lengths, batch.features), batch, cfg["multi_label"])
if any(p.requires_grad for p in model.parameters()) and loss.requires_grad:
    loss.backward()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"id": recs[longest].id, "length": len(recs[longest].sequence), "model": ck.meta["model"],
                  "peak_rss_mb": round(peak / 1024, 1), "before_step_rss_mb": round(before / 1024, 1)}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _sublocal(args: list[str]) -> tuple[float, float]:
    """``sublocal ARGS`` in a fresh process: its wall seconds and its own peak RSS in MB
    (RUSAGE_CHILDREN would be the largest of every child so far); a failure ends the benchmark."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "sublocal_kernels.cli", *args])
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"sublocal {' '.join(args)}: exit status {code}")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024


def features_dir(runs: Path, dataset: str, model: str, pool: str) -> Path:
    """Where the embeddings of ``dataset`` by ``model`` pooled by ``pool`` are kept, shared by every
    recipe that trains on them: ``RUNS/<dataset>-embed-<model>-<pool>`` (a model given as a path
    adds a hash of the whole path, so two checkpoints called alike do not share a folder)."""
    import hashlib

    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(model).name)
    if os.sep in model or Path(model).exists():
        slug += "-" + hashlib.sha256(str(Path(model).resolve()).encode()).hexdigest()[:8]
    return runs / f"{dataset}-embed-{slug}-{pool}"


def embedded_features(data: Path, folder: Path, model: str, pool: str) -> tuple[Path, dict]:
    """The per-protein features of every record of ``data`` by ``sublocal embed MODEL --pool POOL``,
    in ``folder`` (:func:`features_dir`): one FASTA and one embedding file per partition (an
    embedding that takes hours is kept a partition at a time, and a later sitting embeds only what
    is missing), then merged into ``features.h5``. The records are the training reader's (its ids,
    duplicates merged; U and O kept, as UniRep reads them). ``embed.json`` records the data's
    SHA-256, the model and the pooling: a folder made from other data or another model is refused,
    not reused. Returns the merged file's path and each partition's embedding time."""
    import contextlib

    from benchmarks.common import write_fasta
    from sublocal_kernels.data import EmbeddingWriter, load_records, open_embeddings

    folder.mkdir(parents=True, exist_ok=True)
    merged, log = folder / "features.h5", folder / "embed.json"
    made = {"data": data.name, "data_sha256": sha256(data), "model": model, "pool": pool}
    info = json.loads(log.read_text()) if log.is_file() else dict(made, partitions={})
    if any(info.get(k) != made[k] for k in ("data_sha256", "model", "pool")):
        raise SystemExit(f"{folder}: its embeddings are of {info.get('data')} (SHA-256 "
                         f"{str(info.get('data_sha256'))[:12]}...) by {info.get('model')} --pool {info.get('pool')}, "
                         f"not of {data} by {model} --pool {pool}: remove the folder to embed again")
    if merged.is_file():
        return merged, info
    parts: dict[str, list[tuple[str, str]]] = {}
    for r in load_records(data, "auto", "protein-full", multi_label=True):
        parts.setdefault("all" if r.partition is None else str(r.partition), []).append((r.id, r.sequence))
    for part, rows in sorted(parts.items()):
        out = folder / f"partition-{part}.h5"
        if out.is_file():
            continue
        fasta = folder / f"partition-{part}.fasta"
        write_fasta(fasta, rows)
        seconds, peak = _sublocal(["embed", model, str(fasta), "-o", str(out), "--pool", pool])
        info["partitions"][part] = {"records": len(rows), "residues": sum(len(q) for _, q in rows),
                                    "seconds": round(seconds, 1), "peak_rss_mb": round(peak, 1)}
        log.write_text(json.dumps(info, indent=1))
    with contextlib.ExitStack() as stack:
        readers = {part: stack.enter_context(open_embeddings(folder / f"partition-{part}.h5")) for part in sorted(parts)}
        for part, reader in readers.items():
            if sorted(reader.ids) != sorted(rid for rid, _ in parts[part]):
                raise SystemExit(f"{folder / f'partition-{part}.h5'}: its ids are not partition {part}'s of {data}: "
                                 "remove it to embed that partition again")
        first = readers[sorted(parts)[0]]
        with EmbeddingWriter(merged, kind=first.kind, model=str(first.attrs.get("model", model)),
                             pool=str(first.attrs.get("pool", pool)), dim=first.dim) as writer:
            for reader in readers.values():
                for rid in reader.ids:
                    writer.write(rid, reader[rid])
    return merged, info


def run_recipe(dataset: str, data: Path, recipe: Recipe, runs: Path, folds: tuple[str, ...] | None,
               results: Path, published: list[dict], extra: tuple[str, ...] = ()) -> Path:
    """Train (or continue) ``recipe`` on ``data`` in ``runs/<dataset>-<recipe>`` and write its
    results file (see the module docstring); returns its path."""
    if not data.is_file():
        raise SystemExit(f"{data}: no such file")
    run_dir = runs / f"{dataset}-{recipe.name}"
    folds = folds if folds is not None else recipe.folds
    embedding, features = None, ()
    if recipe.embed:
        path, embedding = embedded_features(data, features_dir(runs, dataset, *recipe.embed), *recipe.embed)
        features = ("--features", str(path))
    cmd = ["train", str(data), "--cv", "--out", str(run_dir), *recipe.flags, *extra, *features, "--no-progress"]
    if folds:
        cmd += ["--only-folds", ",".join(folds)]
    resumed = (run_dir / "config.json").is_file()
    if resumed:
        cmd.append("--resume")
    # The sittings that built this run directory before this one, from the newest results file
    # written from it (a fresh run directory has none).
    before = _sittings(results, dataset, recipe.name, run_dir) if resumed else []
    seconds, peak = _sublocal(cmd)
    cv = json.loads((run_dir / "cv.json").read_text())
    summaries = [json.loads((Path(f["dir"]) / "summary.json").read_text()) for f in cv["folds"]]
    date, commit = _dt.date.today().isoformat(), git_commit()
    done_before = {f for s in before for f in s["folds_trained"]}
    sittings = before + [{"date": date, "commit": commit,
                          "folds_trained": [f["fold"] for f in cv["folds"] if f["fold"] not in done_before],
                          "seconds": round(seconds, 1), "peak_rss_mb": round(peak, 1)}]
    doc = {"dataset": dataset, "recipe": recipe.name, "label": recipe.label, "note": recipe.note,
           "date": date, "commit": commit, "machine": _machine(),
           "data": {"name": data.name, "sha256": sha256(data), "records": _records(cv)},
           "flags": list(recipe.flags) + list(extra) + (["--features", "FEATURES.h5"] if features else []),
           "command": "sublocal " + " ".join(cmd),
           "multi_label": cv["multi_label"], "select_by": cv["select_by"], "classes": cv["classes"],
           "folds_run": [f["fold"] for f in cv["folds"]], "folds_missing": cv.get("folds_missing", []),
           "folds": cv["folds"], "mean": cv["mean"], "std": cv["std"], "oof": _strip(cv["oof"]),
           # Every sitting's time and peak memory add up here; a sitting that trained no fold (it
           # only re-scored the run, at a newer commit) is listed with its own.
           "test": cv.get("test"), "seconds": round(sum(s["seconds"] for s in sittings), 1),
           "time_per_epoch_s": _mean([f["time_per_epoch_s"] for f in cv["folds"] if f["time_per_epoch_s"]]),
           "peak_rss_mb": max(s["peak_rss_mb"] for s in sittings), "sittings": sittings,
           "selection": selection_table(summaries, cv["multi_label"]),
           # A model of per-protein vectors sees no residues: the embedding's peaks are in "embedding".
           "longest_record": None if embedding else longest_record_memory(data, run_dir), "published": published,
           "embedding": embedding}
    path = results / f"{dataset}-{recipe.name}-{doc['date']}.json"
    write_doc(path, doc)
    return path


def _sittings(results: Path, dataset: str, recipe: str, run_dir: Path) -> list[dict]:
    """The sittings recorded by the newest results file of ``recipe`` written from ``run_dir``
    (a file from before sittings were recorded counts as one sitting that trained its folds)."""
    docs = [d for d in newest_files(results, dataset, recipe) if f"--out {run_dir} " in d["command"]]
    if not docs:
        return []
    doc = docs[-1]
    return doc.get("sittings") or [{"date": doc["date"], "commit": doc["commit"], "folds_trained": doc["folds_run"],
                                    "seconds": doc["seconds"], "peak_rss_mb": doc["peak_rss_mb"]}]


def _records(cv: dict) -> int:
    """The records the run read: one fold's train, validation and test, and the held-out test."""
    f = cv["folds"][0]
    return f["train"] + f["val"] + f["test"] + ((cv.get("test") or {}).get("n", 0))


def _mean(values):
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 2) if values else None


def _strip(report: dict) -> dict:
    """A report without its confusion matrices (the per-class figures stay)."""
    out = {k: v for k, v in report.items() if k not in ("confusion",)}
    if "per_class" in out:
        out["per_class"] = {c: {k: v for k, v in d.items() if k != "confusion"} for c, d in out["per_class"].items()}
    return out


def newest_files(results: Path, dataset: str, recipe: str | None = None) -> list[dict]:
    """Every results file of ``dataset`` (of one ``recipe``, if named), oldest first (by date,
    then name), each with its file name as ``file``."""
    docs = []
    for path in sorted(results.glob(f"{dataset}-*.json")):
        doc = json.loads(path.read_text())
        if doc.get("dataset") == dataset and recipe in (None, doc["recipe"]):
            docs.append(((doc["date"], path.name), dict(doc, file=path.name)))
    return [d for _, d in sorted(docs, key=lambda x: x[0])]


def newest(results: Path, dataset: str) -> list[dict]:
    """The newest results file of each recipe of ``dataset``, in recipe-name order."""
    docs = {d["recipe"]: d for d in newest_files(results, dataset)}
    return [docs[k] for k in sorted(docs)]


def _pm(doc: dict, key: str) -> str:
    if doc["mean"].get(key) is None:
        return "-"  # a run from before the figure was recorded, or undefined on its data
    if len(doc["folds_run"]) < 2:
        return f"{doc['mean'][key]:.3f}"  # one fold: no spread to show
    return f"{doc['mean'][key]:.3f} ± {doc['std'][key]:.3f}"


def table(docs: list[dict], order: list[str], published: list[dict], command: str) -> str:
    """The README's accuracy tables of one data set: our recipes (in ``order``; mean ± standard
    deviation over the folds run) beside the published figures; then what each ``--select-by``
    rule would have kept, the per-label MCC with and without class weights, and where each
    figure comes from."""
    by = {d["recipe"]: d for d in docs}
    rows = [by[n] for n in order if n in by] + [d for d in docs if d["recipe"] not in order]
    if not rows:
        return "No results yet: run `" + command + "`."
    # The data set read as it is, beside the published figures; then the recipes that read a
    # multi-label set with --single-label-only, in a table of their own (their figures are of
    # other records and other metrics).
    single = [d for d in rows if "--single-label-only" in d["flags"]]
    main = [d for d in rows if d not in single]
    parts = []
    if main or any(p["figures"] for p in published):
        multi = main[0]["multi_label"] if main else True
        lines = _rows(main, _KEYS[multi])
        for p in published:
            if p["figures"]:
                cells = [p["figures"].get(k, "-") for k in _KEYS[multi]]
                lines.append(f"| {p['name']} (published) | " + " | ".join(str(c) for c in cells) + " | all | - |")
        parts.append("\n".join(lines))
    if single:
        parts.append("\n".join([_single_caption(single), ""] + _rows(single, _KEYS[False])))
    parts += [_selection(d, d["multi_label"]) for d in rows if d.get("selection")]
    parts += [w for n in order if n in by and n + "-balanced" in by for w in [_weights(by[n], by[n + "-balanced"])] if w]
    parts += [_ensemble(d) for d in rows if d.get("test")]
    parts.append(_sources(rows, published, command))
    return "\n\n".join(parts)


_KEYS = {True: ("micro_f1", "macro_f1", "jaccard", "subset_accuracy", "macro_mcc", "macro_auc"),
         False: ("accuracy", "mcc", "macro_f1", "macro_mcc")}


def _rows(docs: list[dict], keys) -> list[str]:
    """A table's header and one row per results file: mean ± std over the folds run."""
    lines = ["| model | " + " | ".join(_HEADS[k] for k in keys) + " | folds run | s / epoch |",
             "|---|" + "---|" * (len(keys) + 2)]
    for d in docs:
        n = len(d["folds_run"]) + len(d["folds_missing"])
        lines.append(f"| {d['label']} | " + " | ".join(_pm(d, k) for k in keys)
                     + f" | {', '.join(d['folds_run'])} of {n} | {d['time_per_epoch_s'] or '-'} |")
    return lines


def _single_caption(group: list[dict]) -> str:
    kept = ", ".join(f"{n:,}" for n in sorted({d["data"]["records"] for d in group}))
    return (f"Single-label, on the records with exactly one label (`--single-label-only`: {kept} records; the "
            "figures are not comparable with the multi-label table's)")


_HEADS = {"micro_f1": "micro F1", "macro_f1": "macro F1", "jaccard": "Jaccard", "subset_accuracy": "subset acc.",
          "macro_mcc": "mean MCC", "macro_auc": "macro AUC", "accuracy": "accuracy", "mcc": "MCC"}


def _selection(doc: dict, multi: bool) -> str:
    keys = ("macro_f1", "micro_f1", "jaccard", "macro_mcc", "macro_auc") if multi else ("accuracy", "macro_f1", "mcc")
    sel = doc["selection"]
    most = max(v["folds"] for v in sel.values())
    lines = [f"{doc['label']}: the test figures of the epoch each `--select-by` rule keeps (by validation; "
             f"mean over folds {', '.join(doc['folds_run'])}; `last`: the final epoch)", "",
             "| kept by | " + " | ".join(_HEADS[k] for k in keys) + " | epochs kept |", "|---|" + "---|" * (len(keys) + 1)]
    for rule in [*RULES, "last"]:
        if rule in sel:
            r = sel[rule]
            mark = " (default)" if rule == doc["select_by"] else ""
            if r["folds"] < most:
                # Folds trained before the rule's figure was recorded lack it: a mean over other
                # folds, not comparable with the rows above it.
                mark += f" ({r['folds']} of {most} folds: the newer)"
            lines.append(f"| {rule}{mark} | " + " | ".join(f"{r[k]:.3f}" if k in r else "-" for k in keys)
                         + f" | {', '.join(map(str, r['epochs']))} |")
    return "\n".join(lines)


def _weights(plain: dict, weighted: dict) -> str:
    """Per-label MCC (mean over the folds both ran) without and with ``--class-weight
    balanced``, the smallest labels first; and the ROC AUC where both runs have it."""
    common = [f for f in plain["folds_run"] if f in weighted["folds_run"]]
    if not common:
        return ""

    def mean(doc, c, key):
        rows = [f["report"]["per_class"][c].get(key) for f in doc["folds"] if f["fold"] in common]
        return sum(rows) / len(rows) if all(isinstance(r, (int, float)) for r in rows) else None

    support = {c: sum(f["report"]["per_class"][c]["support"] for f in plain["folds"] if f["fold"] in common)
               for c in plain["classes"]}
    keys = ["mcc"] + (["auc"] if all(mean(d, c, "auc") is not None for d in (plain, weighted)
                                     for c in plain["classes"]) else [])
    heads = {"mcc": "MCC", "auc": "ROC AUC"}
    lines = [f"Per-label figures, {plain['label']} against the same with `--class-weight balanced` (mean over "
             f"folds {', '.join(common)}; smallest labels first)", "",
             "| label | proteins in these test folds | " + " | ".join(f"{heads[k]} | {heads[k]}, balanced" for k in keys)
             + " |", "|---|---|" + "---|---|" * len(keys)]
    for c in sorted(plain["classes"], key=lambda c: support[c]):
        lines.append(f"| {c} | {support[c]:,} | "
                     + " | ".join(f"{mean(plain, c, k):.3f} | {mean(weighted, c, k):.3f}" for k in keys) + " |")
    return "\n".join(lines)


def _ensemble(doc: dict) -> str:
    """The held-out records' figures of the fold ensemble, each beside its members' range."""
    t = doc["test"]
    keys = [k for k in _KEYS[doc["multi_label"]] if t["ensemble"].get(k) is not None
            and all(m.get(k) is not None for m in t["members"])]
    figures = "; ".join(f"{_HEADS[k]} {t['ensemble'][k]:.3f} (members {min(m[k] for m in t['members']):.3f} to "
                        f"{max(m[k] for m in t['members']):.3f})" for k in keys)
    return f"{doc['label']} on the held-out records ({t['n']:,}, in no fold): the fold ensemble's {figures}."


def _commits(doc: dict) -> str:
    """Which commit trained which folds, and which re-scored the run (a sitting that trained
    none), from the results file's sittings (older files: one commit)."""
    sittings = doc.get("sittings")
    if not sittings:
        return f"commit {doc['commit'][:10]}"
    trained: dict[str, list[str]] = {}
    for s in sittings:
        if s["folds_trained"]:
            trained.setdefault(s["commit"][:10], []).extend(s["folds_trained"])
    text = "; ".join(f"fold{'s' if len(folds) > 1 else ''} {', '.join(folds)} trained at {commit}"
                     for commit, folds in trained.items())
    if not sittings[-1]["folds_trained"]:
        text += f"; scored at {sittings[-1]['commit'][:10]}"
    return text


def _sources(rows: list[dict], published: list[dict], command: str) -> str:
    lines = [f"`{command} --readme README.md` regenerates these tables from the newest results file of each "
             "recipe (`s / epoch` of the k-mer models: the fit, one pass):"]
    for d in rows:
        longest = d.get("longest_record") or {}
        mem = (f"; one training step on the longest record ({longest['length']:,}) peaks at "
               f"{longest['peak_rss_mb']:,.0f} MB") if "length" in longest else ""
        emb = d.get("embedding")
        embed = ""
        if emb and emb["partitions"]:
            parts = emb["partitions"].values()
            embed = (f"`sublocal embed {emb['model']} PARTITION.fasta -o PARTITION.h5 --pool {emb['pool']}` for each "
                     f"partition ({sum(p['residues'] for p in parts):,} residues in "
                     f"{sum(p['seconds'] for p in parts) / 60:,.0f} min, peak RSS "
                     f"{max(p['peak_rss_mb'] for p in parts):,.0f} MB), merged into FEATURES.h5, then ")
        lines.append(f"- {d['label']}: `benchmarks/results/accuracy/{d['file']}` (data {d['data']['name']}, SHA-256 "
                     f"{d['data']['sha256'][:12]}...; {_commits(d)}; {d['machine']['cpu']}, "
                     f"{d['machine']['threads']} threads; peak RSS {d['peak_rss_mb']:,.0f} MB{mem}): "
                     f"{embed}`sublocal train DATA --cv {' '.join(d['flags'])}`.")
    for p in published:
        lines.append(f"- {p['name']}: {p.get('source', 'published')}.")
    return "\n".join(lines)
