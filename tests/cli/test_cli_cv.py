"""`sublocal train --cv` and the training options of the accuracy work: a model per fold and
the fold ensemble (predict and evaluate take it as one checkpoint), resume per fold, folds taken
by torchrun's ranks, a fold column with DNA letters, the k-mer baseline, and planted-signal sets
where --select-by, --class-weight, --threshold-by and --top-one make a measurable difference.
Generated data only, tiny models."""

import json
import os

import numpy as np
import pytest

from sublocal_kernels.data import EmbeddingWriter

from ..helpers import planted_rna_table
from .conftest import TINY, one_error, run_cli, run_torchrun

pytest.importorskip("sklearn")


def _cv(capsys, data, out, *extra):
    status, stdout, err = run_cli(capsys, "train", data, "--cv", "--out", out, "--device", "cpu", *extra)
    assert status == 0, err
    return stdout


def _summary(out):
    with open(os.path.join(out, "cv.json")) as fh:
        return json.load(fh)


def _oof(out):
    rows = [line.rstrip("\n").split("\t") for line in open(os.path.join(out, "oof.tsv"))]
    return rows[0], rows[1:]


def test_cv_trains_a_model_per_fold_and_saves_their_ensemble(capsys, tmp_path, tiny_fasta):
    import torch

    from sublocal_kernels.data import SequenceDataset, load_records
    from sublocal_kernels.models import Ensemble
    from sublocal_kernels.training import load_checkpoint, run_model

    out = str(tmp_path / "cv")
    stdout = _cv(capsys, tiny_fasta, out, "--folds", "3", "--epochs", "2", *TINY)
    assert "cross-validation: 3 folds" in stdout and "mean +- std: accuracy" in stdout
    cv = _summary(out)
    assert [f["fold"] for f in cv["folds"]] == ["0", "1", "2"]
    assert cv["select_by"] == "accuracy"  # the single-label default
    for f in cv["folds"]:
        assert f["epochs"] == 2 and f["train"] + f["val"] + f["test"] == 42
        assert 0.0 <= f["report"]["accuracy"] <= 1.0 and f["time_per_epoch_s"] > 0
    accs = [f["report"]["accuracy"] for f in cv["folds"]]
    assert cv["mean"]["accuracy"] == pytest.approx(np.mean(accs))
    assert cv["std"]["accuracy"] == pytest.approx(np.std(accs, ddof=1))

    # Out-of-fold: every record once, scored by the model of the fold that held it out.
    head, rows = _oof(out)
    assert head[:3] == ["id", "fold", "label"] and len(rows) == 42
    records = load_records(tiny_fasta, "auto", "protein")
    ds = SequenceDataset(records, cv["classes"], "protein")
    index = {r.id: i for i, r in enumerate(records)}
    for fold in ("0", "2"):
        ck = load_checkpoint(os.path.join(out, f"fold-{fold}", "best.json"))
        mine = [r for r in rows if r[1] == fold]
        probs, _, _ = run_model(ck.model, ds, [index[r[0]] for r in mine], "cpu")
        np.testing.assert_allclose(np.array([[float(v) for v in r[3:]] for r in mine]), probs, atol=2e-6)

    # The ensemble is one checkpoint: the mean of its members' probabilities.
    ens = load_checkpoint(out)
    assert ens.path.endswith("ensemble.json") and isinstance(ens.model, Ensemble) and len(ens.model.members) == 3
    members = [load_checkpoint(os.path.join(out, f"fold-{k}", "best.json")).model for k in range(3)]
    batch_probs, _, _ = run_model(ens.model, ds, np.arange(10), "cpu")
    mean = np.mean([run_model(m, ds, np.arange(10), "cpu")[0] for m in members], axis=0)
    np.testing.assert_allclose(batch_probs, mean, atol=1e-5)
    assert torch.equal(ens.model.members[1].state_dict()["head.1.weight"] if "head.1.weight" in
                       ens.model.members[1].state_dict() else next(iter(ens.model.members[1].parameters())),
                       members[1].state_dict()["head.1.weight"] if "head.1.weight" in members[1].state_dict()
                       else next(iter(members[1].parameters())))

    status, stdout, err = run_cli(capsys, "evaluate", out, tiny_fasta)
    assert status == 0, err
    assert stdout.startswith("n=42  accuracy=")
    status, stdout, err = run_cli(capsys, "predict", out, tiny_fasta)
    assert status == 0, err
    assert len(stdout.splitlines()) == 43


def test_cv_resumes_each_fold_and_skips_finished_ones(capsys, tmp_path, tiny_fasta):
    out = str(tmp_path / "cv")
    _cv(capsys, tiny_fasta, out, "--folds", "3", "--epochs", "1", *TINY)
    first = [json.load(open(os.path.join(out, f"fold-{k}", "summary.json")))["history"] for k in range(3)]
    stdout = _cv(capsys, tiny_fasta, out, "--folds", "3", "--epochs", "2", "--resume", *TINY)
    assert stdout.count("resuming ") == 3
    for k in range(3):
        history = json.load(open(os.path.join(out, f"fold-{k}", "summary.json")))["history"]
        assert len(history) == 2 and history[0]["val_loss"] == first[k][0]["val_loss"]
    # Everything done: a resume skips every fold and assembles the ensemble again.
    status, stdout, err = run_cli(capsys, "train", tiny_fasta, "--out", out, "--resume", "--epochs", "2")
    assert status == 0, err
    assert stdout.count(", skipped") == 3 and "ensemble:" in stdout
    # Other settings are refused, naming the flag, before any fold trains.
    status, _, err = run_cli(capsys, "train", tiny_fasta, "--cv", "--out", out, "--resume", "--lr", "0.5", *TINY[:-3])
    assert status == 1 and "--lr 0.5 (checkpoint: 0.003)" in one_error(err, "train")


def test_only_folds_spreads_the_folds_over_sittings(capsys, tmp_path, tiny_fasta):
    out = str(tmp_path / "cv")
    stdout = _cv(capsys, tiny_fasta, out, "--folds", "3", "--epochs", "1", "--only-folds", "2", *TINY)
    assert "folds not trained yet: 0, 1" in stdout
    cv = _summary(out)
    assert [f["fold"] for f in cv["folds"]] == ["2"] and cv["folds_missing"] == ["0", "1"]
    assert len(_oof(out)[1]) == 14  # fold 2's records only
    # A plain --resume trains every fold left (not the last sitting's --only-folds).
    status, stdout, err = run_cli(capsys, "train", tiny_fasta, "--out", out, "--resume")
    assert status == 0, err
    assert "fold 2: finished" in stdout and stdout.count("resuming ") == 0
    cv = _summary(out)
    assert [f["fold"] for f in cv["folds"]] == ["0", "1", "2"] and cv["folds_missing"] == []
    assert len(_oof(out)[1]) == 42
    # A fold's own directory resumes as the ordinary run it is (not as a cross-validation in it).
    status, stdout, err = run_cli(capsys, "train", tiny_fasta, "--out", os.path.join(out, "fold-1"), "--resume",
                                  "--epochs", "2")
    assert status == 0, err
    assert "cross-validation" not in stdout and not os.path.exists(os.path.join(out, "fold-1", "fold-0"))
    assert len(json.load(open(os.path.join(out, "fold-1", "summary.json")))["history"]) == 2
    # The fold ensemble's members trained on every fold: evaluate refuses in-sample splits.
    status, _, err = run_cli(capsys, "evaluate", out, tiny_fasta, "--split", "test")
    assert status == 2 and "figures would be in-sample" in one_error(err, "evaluate")
    # --overwrite starts afresh: no fold of the previous run joins the new ensemble.
    _cv(capsys, tiny_fasta, out, "--folds", "3", "--epochs", "1", "--only-folds", "0", "--overwrite", *TINY)
    cv = _summary(out)
    assert [f["fold"] for f in cv["folds"]] == ["0"] and cv["folds_missing"] == ["1", "2"]
    status, _, err = run_cli(capsys, "train", tiny_fasta, "--cv", "--folds", "3", "--only-folds", "7", "--out",
                             str(tmp_path / "x"), *TINY)
    assert status == 1 and "--only-folds 7: no fold 7 (folds: 0, 1, 2)" in one_error(err, "train")
    status, _, err = run_cli(capsys, "train", tiny_fasta, "--only-folds", "1", "--out", str(tmp_path / "y"), *TINY)
    assert status == 2 and "--only-folds applies to --cv runs only" in one_error(err, "train")


def test_cv_folds_taken_by_torchrun_ranks(tmp_path, tiny_fasta):
    out = str(tmp_path / "cv")
    stdout = run_torchrun("train", tiny_fasta, "--cv", "--folds", "3", "--epochs", "1", "--out", out, "--device",
                          "cpu", *TINY)
    assert "taking folds in turn" in stdout
    cv = _summary(out)
    assert [f["fold"] for f in cv["folds"]] == ["0", "1", "2"]
    assert all(os.path.isfile(os.path.join(out, f"fold-{k}", "best.json")) for k in range(3))
    assert os.path.isfile(os.path.join(out, "ensemble.json"))


def test_cv_over_a_fold_column_with_the_kmer_baseline(capsys, tmp_path):
    from sublocal_kernels.training.metrics import tune_thresholds

    data = planted_rna_table(tmp_path / "rna.tsv")
    out = str(tmp_path / "cv")
    _cv(capsys, data, out, "--multi-label", "--alphabet", "rna", "--model", "kmer", "--k", "5",
        "--threshold-by", "mcc", "--top-one", "--no-progress")
    cv = _summary(out)
    assert [f["fold"] for f in cv["folds"]] == ["0", "1", "2", "3"]  # the fold column's
    assert cv["mean"]["micro_f1"] > 0.8  # the motifs are found
    # The ensemble's thresholds: tuned by MCC on the out-of-fold probabilities.
    head, rows = _oof(out)
    classes = [h[2:] for h in head[3:]]
    probs = np.array([[float(v) for v in r[3:]] for r in rows])
    targets = np.array([[c in r[2].split(";") for c in classes] for r in rows], dtype=np.int64)
    meta = json.load(open(os.path.join(out, "ensemble.json")))
    assert meta["thresholds"] == pytest.approx(tune_thresholds(targets, probs, classes, by="mcc")[0])
    assert meta["top_one"] is True and meta["threshold_by"] == "mcc"
    # predict follows top-one: every record gets at least one label.
    fasta = tmp_path / "rna.fasta"
    fasta.write_text("".join(f">{line.split()[0]}\n{line.split()[1]}\n" for line in open(data).readlines()[1:]))
    status, stdout, err = run_cli(capsys, "predict", out, fasta)
    assert status == 0, err
    assert all(line.split("\t")[1] for line in stdout.splitlines()[1:])


def test_single_label_only_trains_on_the_one_label_records(capsys, tmp_path):
    """A multi-label table read as single-label: the records with two labels (every third) are
    left out and counted; evaluate reads the table the same way through the checkpoint."""
    data = planted_rna_table(tmp_path / "rna.tsv", n=96)
    with open(data, "a") as fh:  # a label that only ever comes with another one
        fh.write("rna96\tGGACTGGACTACGUACGUACGUACGUACGU\tNucleus;Plastid\t0\n")
    out = str(tmp_path / "cv")
    status, _, err = run_cli(capsys, "train", data, "--cv", "--out", out, "--device", "cpu", "--single-label-only",
                             "--alphabet", "rna", "--model", "kmer", "--k", "5", "--no-progress")
    assert status == 0, err
    assert "keeps 64 of 97 records, leaving out 33 with several labels" in err
    cv = _summary(out)
    assert not cv["multi_label"] and cv["select_by"] == "accuracy"
    assert sum(f["test"] for f in cv["folds"]) == 64
    assert cv["mean"]["accuracy"] > 0.9  # Nucleus and Cytoplasm motifs told apart
    head, rows = _oof(out)
    assert len(rows) == 64 and all(";" not in r[2] for r in rows)
    assert cv["classes"] == ["Cytoplasm", "Nucleus"]
    status, stdout, err = run_cli(capsys, "evaluate", out, data)
    assert status == 0, err  # Plastid, unknown to the checkpoint, is only on a record left out
    assert stdout.startswith("n=64 ") and "leaving out 33 with several labels" in err


def test_held_out_partition_scores_the_ensemble_and_each_member(capsys, tmp_path):
    data = planted_rna_table(tmp_path / "rna.tsv", n=150)
    # Five folds, one held out of every fold as the test set.
    text = open(data).read().splitlines()
    data2 = tmp_path / "rna5.tsv"
    data2.write_text("\n".join([text[0]] + [line[:-1] + str(i % 5) for i, line in enumerate(text[1:])]) + "\n")
    out = str(tmp_path / "cv")
    stdout = _cv(capsys, str(data2), out, "--multi-label", "--alphabet", "rna", "--model", "kmer", "--k", "4",
                 "--test-partition", "4", "--no-progress")
    cv = _summary(out)
    assert [f["fold"] for f in cv["folds"]] == ["0", "1", "2", "3"]
    assert cv["test"]["n"] == 30 and len(cv["test"]["members"]) == 4
    assert cv["test"]["ensemble"]["micro_f1"] > 0.5 and cv["test"]["ensemble"]["macro_auc"] > 0.5
    # The summary line gives each figure of the ensemble beside its members' range.
    line = next(x for x in stdout.splitlines() if x.startswith("held-out test (30)"))
    f1 = [m["micro_f1"] for m in cv["test"]["members"]]
    assert f"micro_f1 {cv['test']['ensemble']['micro_f1']:.4f} ({min(f1):.4f}..{max(f1):.4f})" in line
    assert "macro_auc" in line


def _imbalanced(tmp_path, seed=0):
    """Per-protein vectors: 160 'Major' and 16 'Minor' proteins whose centres overlap."""
    rng = np.random.default_rng(seed)
    n = [160, 16]
    labels = ["Major"] * n[0] + ["Minor"] * n[1]
    centres = np.zeros((2, 6))
    centres[1, :2] = 1.3
    vectors = np.concatenate([centres[k] + rng.standard_normal((n[k], 6)) for k in range(2)])
    data, emb = tmp_path / "imb.tsv", tmp_path / "imb.npz"
    ids = [f"p{i}" for i in range(len(labels))]
    seqs = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 20)) for _ in ids]
    data.write_text("id\tsequence\tlabel\n" + "".join(f"{i}\t{s}\t{lab}\n" for i, s, lab in zip(ids, seqs, labels)))
    with EmbeddingWriter(emb, kind="per-protein", model="planted", pool="mean", dim=6) as w:
        for i, v in zip(ids, vectors):
            w.write(i, v)
    return str(data), str(emb)


def test_balanced_class_weights_raise_the_minority_recall(capsys, tmp_path):
    data, emb = _imbalanced(tmp_path)
    recall = {}
    for weight in (None, "balanced"):
        out = str(tmp_path / f"run-{weight}")
        extra = ["--class-weight", weight] if weight else []
        status, _, err = run_cli(capsys, "train", data, "--model", "mlp", "--hidden", "0", "--features", emb,
                                 "--out", out, "--epochs", "30", "--lr", "1e-2", "--batch-size", "16",
                                 "--test-fraction", "0.4", "--val-fraction", "0.2", "--select-by", "loss",
                                 "--no-progress", "--device", "cpu", *extra)
        assert status == 0, err
        recall[weight] = json.load(open(os.path.join(out, "summary.json")))["test"]["per_class"]["Minor"]["recall"]
    assert recall["balanced"] >= recall[None] + 0.3, recall


def _overlapping(tmp_path, seed=0, n=60, dim=10, noise=1.6):
    """Per-protein vectors of three classes around overlapping centres: a small training split
    that a 32-unit MLP overfits (validation loss turns up while accuracy holds or climbs)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((3, dim))
    labels = [f"C{k % 3}" for k in range(n)]
    vectors = np.stack([centres[k % 3] for k in range(n)]) + noise * rng.standard_normal((n, dim))
    ids = [f"p{i}" for i in range(n)]
    seqs = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 20)) for _ in ids]
    data, emb = tmp_path / "s.tsv", tmp_path / "s.npz"
    data.write_text("id\tsequence\tlabel\n" + "".join(f"{i}\t{s}\t{lab}\n" for i, s, lab in zip(ids, seqs, labels)))
    with EmbeddingWriter(emb, kind="per-protein", model="planted", pool="mean", dim=dim) as w:
        for i, v in zip(ids, vectors):
            w.write(i, v)
    return str(data), str(emb)


def test_select_by_picks_the_epoch_of_its_figure(capsys, tmp_path):
    """Over one run the epoch of lowest validation loss and the epoch of highest validation
    accuracy differ; each rule keeps its own as best (the last epoch is kept too), and
    selecting by accuracy keeps the more accurate model."""
    data, emb = _overlapping(tmp_path)
    runs = {}
    for rule in ("loss", "accuracy"):
        out = str(tmp_path / rule)
        status, _, err = run_cli(capsys, "train", data, "--model", "mlp", "--hidden", "32", "--features", emb,
                                 "--out", out, "--epochs", "30", "--lr", "3e-2", "--batch-size", "8",
                                 "--val-fraction", "0.4", "--test-fraction", "0.1", "--select-by", rule,
                                 "--no-progress", "--device", "cpu")
        assert status == 0, err
        runs[rule] = json.load(open(os.path.join(out, "summary.json")))
        assert os.path.isfile(os.path.join(out, "last.json"))

    def figures(run):
        return [{k: v for k, v in h.items() if k not in ("seq_per_s", "time_s")} for h in run["history"]]

    assert figures(runs["loss"]) == figures(runs["accuracy"])  # the same run: only the choice differs
    history = runs["loss"]["history"]
    losses = [h["val_loss"] for h in history]
    accs = [h["val_accuracy"] for h in history]
    assert runs["loss"]["best_epoch"] == int(np.argmin(losses)) + 1
    tied = np.flatnonzero(np.array(accs) == max(accs))  # ties go to the lower validation loss
    assert runs["accuracy"]["best_epoch"] == int(tied[np.argmin(np.array(losses)[tied])]) + 1
    assert runs["loss"]["best_epoch"] != runs["accuracy"]["best_epoch"]
    assert accs[runs["accuracy"]["best_epoch"] - 1] > accs[runs["loss"]["best_epoch"] - 1]


def test_select_by_macro_auc_keeps_the_epoch_of_best_ranking(capsys, tmp_path):
    """Multi-label, ``--select-by macro-auc`` (LncLocFormer's rule) keeps the epoch of the highest
    validation macro ROC AUC; each epoch's AUC is the scikit-learn figure of its predictions."""
    data = planted_rna_table(tmp_path / "rna.tsv", n=120, folds=4)
    out = str(tmp_path / "auc")
    status, stdout, err = run_cli(capsys, "train", data, "--multi-label", "--alphabet", "rna", "--model", "tcn",
                                  "--channels", "8", "--num-levels", "2", "--epochs", "4", "--lr", "3e-2",
                                  "--select-by", "macro-auc", "--test-partition", "3", "--out", out, "--no-progress",
                                  "--device", "cpu")
    assert status == 0, err
    summary = json.load(open(os.path.join(out, "summary.json")))
    aucs = [h["val_macro_auc"] for h in summary["history"]]
    losses = [h["val_loss"] for h in summary["history"]]
    assert summary["select_by"] == "macro-auc" and all(0.0 <= a <= 1.0 for a in aucs)
    tied = np.flatnonzero(np.array(aucs) == max(aucs))
    assert summary["best_epoch"] == int(tied[np.argmin(np.array(losses)[tied])]) + 1
    assert 0.0 <= summary["test"]["macro_auc"] <= 1.0 and "macro AUC" in stdout
    status, stdout, err = run_cli(capsys, "evaluate", out, data)
    assert status == 0, err
    assert "macro AUC=" in stdout and "AUC" in stdout.split("class")[1].splitlines()[0]


def test_patience_stops_and_a_resume_does_not_go_on(capsys, tmp_path, tiny_fasta):
    out = str(tmp_path / "stop")
    args = ["train", tiny_fasta, "--out", out, "--select-by", "loss", "--patience", "2", "--lr", "1e-12",
            "--device", "cpu", *TINY[:-3], "--no-progress"]
    status, stdout, err = run_cli(capsys, *args, "--epochs", "10")
    assert status == 0, err
    summary = json.load(open(os.path.join(out, "summary.json")))
    # With no learning the loss moves only by rounding: at most a few epochs pass.
    assert summary["stopped_early"] and len(summary["history"]) < 10 and "early stopping" in stdout
    status, stdout, err = run_cli(capsys, *args, "--epochs", "12", "--resume")
    assert status == 0, err
    assert len(json.load(open(os.path.join(out, "summary.json")))["history"]) == len(summary["history"])


def test_step_schedule_sets_the_rate(capsys, tmp_path, tiny_fasta):
    out = str(tmp_path / "sched")
    status, _, err = run_cli(capsys, "train", tiny_fasta, "--out", out, "--epochs", "3", "--schedule", "step",
                             "--lr-step-epochs", "1", "--lr-gamma", "0.5", "--device", "cpu", *TINY)
    assert status == 0, err
    meta = json.load(open(os.path.join(out, "last.json")))
    assert meta["optimizer"]["param_groups"][0]["lr"] == pytest.approx(3e-3 * 0.25)


@pytest.mark.parametrize("argv, code, message", [
    (["--select-by", "jaccard"], 2, "--select-by jaccard applies to multi-label data only"),
    (["--select-by", "macro-auc"], 2, "--select-by macro-auc applies to multi-label data only"),
    (["--top-one"], 2, "--top-one applies to multi-label runs only"),
    (["--threshold-by", "mcc"], 2, "--threshold-by applies to multi-label runs only"),
    (["--cv", "--val-partition", "1"], 2, "--val-partition does not apply to --cv"),
    (["--model", "kmer", "--hidden-size", "8"], 2, "--hidden-size does not apply to --model kmer"),
    (["--class-weight", "missing.tsv"], 1, "--class-weight missing.tsv: cannot read it"),
    (["--test-partition", "3"], 1, "--test-partition 3:"),
    (["--single-label-only", "--multi-label"], 2, "--single-label-only and --multi-label exclude each other"),
])
def test_bad_options_are_one_line_errors(capsys, tmp_path, monkeypatch, tiny_fasta, argv, code, message):
    monkeypatch.chdir(tmp_path)
    status, _, err = run_cli(capsys, "train", tiny_fasta, "--out", str(tmp_path / "o"), "--epochs", "1",
                             "--no-progress", *argv)
    assert status == code, err
    assert message in one_error(err, "train")
