"""`sublocal train --model mlp` on per-protein embeddings (`--features`, `kind = per-protein`):
learning a planted signal (single- and multi-label) through train, evaluate and predict; a
resumed run; `pretrain -> embed -> train -> predict` without `--features` (embed-and-classify)
equal to predicting from the embeddings file; and every error of the new paths as one line
naming the flag, the file or the record. Generated data only, tiny models."""

import csv
import json
import os

import numpy as np
import pytest

from sublocal_kernels.data import EmbeddingWriter

from .conftest import one_error, run_cli, warnings_of

CLASSES = ["Cytoplasm", "Mitochondrion", "Nucleus", "Peroxisome"]
COMMON = ["--batch-size", "16", "--lr", "1e-2", "--no-progress", "--device", "cpu"]
D = 12


def _sequence(rng, low=15, high=40):
    return "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), int(rng.integers(low, high))))


def _write_set(d, label_sets, vectors, name, model="planted", pool="mean"):
    """DATA (TSV: id, sequence, label 'A;B'), the same records as FASTA, and the per-protein
    embeddings (.npz in the shared layout, root attributes model/pool)."""
    rng = np.random.default_rng(len(label_sets))
    seqs = [_sequence(rng) for _ in label_sets]
    ids = [f"{name}{i}" for i in range(len(label_sets))]
    data, fasta, emb = d / f"{name}.tsv", d / f"{name}.fasta", d / f"{name}.npz"
    data.write_text("id\tsequence\tlabel\n" + "".join(f"{i}\t{s}\t{';'.join(ls)}\n"
                                                     for i, s, ls in zip(ids, seqs, label_sets)))
    fasta.write_text("".join(f">{i}\n{s}\n" for i, s in zip(ids, seqs)))
    with EmbeddingWriter(emb, kind="per-protein", model=model, pool=pool, dim=vectors.shape[1]) as w:
        for i, v in zip(ids, vectors):
            w.write(i, v)
    return {"data": data, "fasta": fasta, "emb": emb, "ids": ids, "seqs": seqs, "labels": label_sets}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Three classes whose per-protein vector is the class's centre plus noise (the residues are
    random: only the embedding carries the label); and a multi-label set whose vector is the
    sum of its classes' centres plus noise."""
    d = tmp_path_factory.mktemp("mlp")
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, D)) * 1.5
    labels = [CLASSES[k % 3] for k in range(90)]
    vectors = np.stack([centres[CLASSES.index(c)] for c in labels]) + rng.standard_normal((90, D))
    single = _write_set(d, [(c,) for c in labels], vectors, "s")
    sets = [(CLASSES[k % 4],) for k in range(60)] + [(CLASSES[k % 4], CLASSES[(k + 1) % 4]) for k in range(60)]
    mvec = np.stack([sum(centres[CLASSES.index(c)] for c in s) for s in sets]) + 0.7 * rng.standard_normal((120, D))
    multi = _write_set(d, sets, mvec, "m")
    return d, single, multi


@pytest.fixture(scope="module")
def single_run(planted):
    from sublocal_kernels.cli import main

    d, s, _ = planted
    out = d / "single-run"
    assert main(["train", str(s["data"]), "--model", "mlp", "--features", str(s["emb"]), "--hidden", "0",
                 "--epochs", "12", "--out", str(out), *COMMON]) == 0
    return out


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_single_label_planted_signal_train_evaluate_predict(planted, single_run, tmp_path, capsys):
    _, s, _ = planted
    meta = json.load(open(single_run / "best.json"))
    assert meta["model"] == "mlp" and meta["encoding"] == "none" and meta["num_features"] == D
    assert meta["model_config"] == {"num_classes": 3, "input_dim": D, "hidden": 0, "dropout": 0.25,
                                    "standardize": True}
    assert meta["features_source"] == {"kind": "per-protein", "dim": D, "model": "planted", "pool": "mean"}
    # The input standardisation: the training split's mean and standard deviation, in the checkpoint.
    from sublocal_kernels.training import TrainConfig, load_checkpoint, prepare_data

    ck = load_checkpoint(str(single_run / "best"))
    ds, (tr, _, _) = prepare_data(TrainConfig.from_json(meta["train_config"]), classes=ck.classes)
    x = np.stack([ds.features[i] for i in tr])
    np.testing.assert_allclose(ck.model.input_mean.numpy(), x.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ck.model.input_std.numpy(), x.std(0), rtol=1e-5)
    status, out, err = run_cli(capsys, "evaluate", single_run, s["data"], "--features", s["emb"], "--split", "test",
                               "--out", tmp_path / "ev", "--device", "cpu")
    assert status == 0, err
    report = json.load(open(tmp_path / "ev" / "report.json"))
    assert report["accuracy"] >= 0.8, out  # chance: 1/3
    status, _, err = run_cli(capsys, "predict", single_run, s["fasta"], "--features", s["emb"], "-o",
                             tmp_path / "p.tsv", "--workers", "1", "--device", "cpu")
    assert status == 0, err
    rows = _rows(tmp_path / "p.tsv")
    assert [r["id"] for r in rows] == s["ids"]
    accuracy = np.mean([r["prediction"] == ls[0] for r, ls in zip(rows, s["labels"])])
    assert accuracy >= 0.9, accuracy


def test_multi_label_planted_signal_train_evaluate_predict(planted, tmp_path, capsys):
    _, _, m = planted
    out = tmp_path / "run"
    status, stdout, err = run_cli(capsys, "train", m["data"], "--model", "mlp", "--features", m["emb"],
                                  "--multi-label", "--hidden", "16", "--dropout", "0.1", "--epochs", "15",
                                  "--out", out, *COMMON)
    assert status == 0, err
    meta = json.load(open(out / "best.json"))
    assert meta["multi_label"] is True and len(meta["thresholds"]) == 4 and meta["model_config"]["hidden"] == 16
    status, _, err = run_cli(capsys, "evaluate", out, m["data"], "--features", m["emb"], "--split", "test",
                             "--out", tmp_path / "ev", "--device", "cpu")
    assert status == 0, err
    report = json.load(open(tmp_path / "ev" / "report.json"))
    assert report["micro_f1"] >= 0.8, report["micro_f1"]
    status, _, err = run_cli(capsys, "predict", out, m["fasta"], "--features", m["emb"], "-o", tmp_path / "p.tsv",
                             "--workers", "1", "--device", "cpu")
    assert status == 0, err
    rows = _rows(tmp_path / "p.tsv")
    exact = np.mean([set(r["prediction"].split(";")) == set(ls) for r, ls in zip(rows, m["labels"])])
    assert exact >= 0.7, exact  # chance of the exact set is far below 0.1


def test_resume_repeats_the_uninterrupted_run(planted, tmp_path, capsys):
    from sublocal_kernels.training import load_checkpoint

    _, s, _ = planted
    argv = ["train", s["data"], "--model", "mlp", "--features", s["emb"], "--hidden", "4", *COMMON]
    assert run_cli(capsys, *argv, "--epochs", "2", "--out", tmp_path / "full")[0] == 0
    assert run_cli(capsys, *argv, "--epochs", "1", "--out", tmp_path / "cut")[0] == 0
    status, _, err = run_cli(capsys, *argv, "--epochs", "2", "--out", tmp_path / "cut", "--resume")
    assert status == 0, err
    full = load_checkpoint(str(tmp_path / "full" / "last")).model.state_dict()
    cut = load_checkpoint(str(tmp_path / "cut" / "last")).model.state_dict()
    assert sorted(full) == sorted(cut) and "input_mean" in full
    for k in full:
        assert np.array_equal(full[k].numpy(), cut[k].numpy()), k


def test_pretrain_embed_train_predict_without_features(planted, tmp_path, capsys, monkeypatch):
    """Embed-and-classify in one pass equals classifying the embeddings file `embed` wrote; the
    embedder is found from another directory (its path recorded absolute at training time)."""
    _, s, _ = planted
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # relative paths, as a user types them
    tiny = ["--hidden-size", "8", "--embedding-dim", "4", "--max-tokens", "800", "--no-progress", "--device", "cpu"]
    status, _, err = run_cli(capsys, "pretrain", s["fasta"], "--out", "lm", "--max-steps", "2", *tiny)
    assert status == 0, err
    status, _, err = run_cli(capsys, "embed", "lm", s["fasta"], "-o", "emb.npz", "--pool", "unirep", "--device", "cpu")
    assert status == 0, err
    status, _, err = run_cli(capsys, "train", s["data"], "--model", "mlp", "--features", "emb.npz", "--epochs", "2",
                             "--out", "run", *COMMON)
    assert status == 0, err
    source = json.load(open(work / "run" / "best.json"))["features_source"]
    assert source == {"kind": "per-protein", "dim": 24, "model": os.path.join("lm", "best.json"), "pool": "unirep",
                      "model_path": str(work / "lm" / "best.json")}
    status, _, err = run_cli(capsys, "predict", "run", s["fasta"], "--features", "emb.npz", "-o", "a.tsv",
                             "--workers", "1", "--device", "cpu")
    assert status == 0, err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    status, _, err = run_cli(capsys, "predict", work / "run", s["fasta"], "-o", "b.tsv", "--workers", "1",
                             "--max-tokens", "300", "--device", "cpu")
    assert status == 0, err
    a, b = _rows(work / "a.tsv"), _rows(elsewhere / "b.tsv")
    assert [r["id"] for r in a] == [r["id"] for r in b] == s["ids"]
    pa = np.array([[float(r[f"p_{c}"]) for c in CLASSES[:3]] for r in a])
    pb = np.array([[float(r[f"p_{c}"]) for c in CLASSES[:3]] for r in b])
    np.testing.assert_allclose(pb, pa, atol=5e-6)  # other batches: the last bits may differ
    top = np.sort(pa, 1)
    clear = top[:, -1] - top[:, -2] > 1e-4
    assert clear.sum() > len(a) // 2
    assert [r["prediction"] for r, c in zip(a, clear) if c] == [r["prediction"] for r, c in zip(b, clear) if c]


def test_per_residue_file_is_averaged_but_not_embedded_at_predict(planted, tmp_path, capsys):
    _, s, _ = planted
    rng = np.random.default_rng(1)
    vectors = np.load(s["emb"])
    res = tmp_path / "res.npz"
    with EmbeddingWriter(res, kind="per-residue", model="planted", pool="none", dim=D) as w:
        for i, seq in zip(s["ids"], s["seqs"]):
            # Residues scatter around the protein's vector: their mean carries the label.
            w.write(i, vectors[i] + rng.standard_normal((len(seq), D)))
    out = tmp_path / "run"
    status, _, err = run_cli(capsys, "train", s["data"], "--model", "mlp", "--features", res, "--hidden", "0",
                             "--epochs", "12", "--out", out, *COMMON)
    assert status == 0, err
    assert json.load(open(out / "best.json"))["features_source"]["kind"] == "per-residue"
    status, _, err = run_cli(capsys, "evaluate", out, s["data"], "--features", res, "--split", "test", "--out",
                             tmp_path / "ev", "--device", "cpu")
    assert status == 0, err
    assert json.load(open(tmp_path / "ev" / "report.json"))["accuracy"] >= 0.8
    status, _, err = run_cli(capsys, "predict", out, s["fasta"], "--workers", "1", "--device", "cpu")
    msg = one_error(err, "predict")
    assert status == 1 and "per-residue features averaged" in msg and "pass --features" in msg


# ------------------------------------------------------------------------------------------------
# Errors: one line each, the exit status, the flag / file / record named.


def test_train_missing_record_names_record_and_file(planted, tmp_path, capsys):
    _, s, _ = planted
    part = tmp_path / "part.npz"
    vectors = np.load(s["emb"])
    with EmbeddingWriter(part, kind="per-protein", model="planted", pool="mean", dim=D) as w:
        for i in s["ids"][:-1]:
            w.write(i, vectors[i])
    status, _, err = run_cli(capsys, "train", s["data"], "--model", "mlp", "--features", part, "--epochs", "1",
                             "--out", tmp_path / "r", *COMMON)
    msg = one_error(err, "train")
    assert status == 1 and str(part) in msg and f"record {s['ids'][-1]!r}" in msg and "no feature vector" in msg


def test_train_width_mismatch_names_record_and_file(planted, tmp_path, capsys):
    _, s, _ = planted
    bad = tmp_path / "bad.npz"
    arrays = {i: np.zeros(D + (k == 5), np.float32) for k, i in enumerate(s["ids"])}
    np.savez(bad, **arrays)
    status, _, err = run_cli(capsys, "train", s["data"], "--model", "mlp", "--features", bad, "--epochs", "1",
                             "--out", tmp_path / "r", *COMMON)
    msg = one_error(err, "train")
    assert status == 1 and str(bad) in msg and f"record {s['ids'][5]!r}" in msg and f"width {D + 1}" in msg


def test_per_protein_file_for_a_sequence_model(planted, tmp_path, capsys):
    _, s, _ = planted
    status, _, err = run_cli(capsys, "train", s["data"], "--model", "rlstm", "--features", s["emb"], "--epochs", "1",
                             "--out", tmp_path / "r", *COMMON)
    msg = one_error(err, "train")
    assert status == 1 and str(s["emb"]) in msg and "needs per-residue embeddings" in msg
    assert "--model rlstm" in msg and "per-protein" in msg


@pytest.mark.parametrize("argv, message", [
    (["--encoding", "onehot"], "--encoding onehot does not apply to --model mlp"),
    (["--max-length", "20"], "--max-length 20 does not apply to --model mlp"),
    (["--hidden-size", "8"], "--hidden-size does not apply to --model mlp"),
    (["--hidden", "-1"], "argument --hidden: must be at least 0"),
])
def test_train_mlp_flag_errors(planted, tmp_path, capsys, argv, message):
    _, s, _ = planted
    status, _, err = run_cli(capsys, "train", s["data"], "--model", "mlp", "--features", s["emb"], *argv,
                             "--out", tmp_path / "r", *COMMON)
    assert status == 2 and message in one_error(err, "train")
    assert not (tmp_path / "r").exists()


def test_train_mlp_needs_features(planted, tmp_path, capsys):
    _, s, _ = planted
    status, _, err = run_cli(capsys, "train", s["data"], "--model", "mlp", "--out", tmp_path / "r", *COMMON)
    msg = one_error(err, "train")
    assert status == 2 and "--model mlp reads one embedding vector per protein: pass --features" in msg


def test_new_flags_on_other_models(planted, tmp_path, capsys):
    _, s, _ = planted
    status, _, err = run_cli(capsys, "train", s["data"], "--no-standardize", "--out", tmp_path / "r", *COMMON)
    assert status == 2 and "--no-standardize does not apply to --model alstm" in one_error(err, "train")
    status, _, err = run_cli(capsys, "train", s["data"], "--model", "light-attention", "--hidden", "0",
                             "--out", tmp_path / "r", *COMMON)
    assert status == 2 and "--hidden must be a positive int, got 0" in one_error(err, "train")


def test_evaluate_needs_features(planted, single_run, capsys):
    _, s, _ = planted
    status, _, err = run_cli(capsys, "evaluate", single_run, s["data"], "--device", "cpu")
    msg = one_error(err, "evaluate")
    assert status == 1 and str(single_run) in msg and "pass --features" in msg and str(s["emb"]) in msg


def test_evaluate_and_predict_width_mismatch(planted, single_run, tmp_path, capsys):
    _, s, _ = planted
    wide = tmp_path / "wide.npz"
    with EmbeddingWriter(wide, kind="per-protein", model="planted", pool="mean", dim=D + 2) as w:
        for i in s["ids"]:
            w.write(i, np.zeros(D + 2))
    status, _, err = run_cli(capsys, "evaluate", single_run, s["data"], "--features", wide, "--device", "cpu")
    msg = one_error(err, "evaluate")
    assert status == 1 and f"--features {wide}" in msg and f"{D + 2} features per record" in msg and f"{D}" in msg
    status, _, err = run_cli(capsys, "predict", single_run, s["fasta"], "--features", wide, "--workers", "1",
                             "--device", "cpu")
    msg = one_error(err, "predict")
    assert status == 1 and f"--features {wide}" in msg and f"trained on {D}" in msg


def test_predict_missing_record_names_record_and_file(planted, single_run, tmp_path, capsys):
    _, s, _ = planted
    extra = tmp_path / "extra.fasta"
    extra.write_text(s["fasta"].read_text() + ">stranger\nMKV\n")
    status, _, err = run_cli(capsys, "predict", single_run, extra, "--features", s["emb"], "--workers", "1",
                             "--device", "cpu")
    msg = err.strip().splitlines()[-1]
    assert status == 1 and str(s["emb"]) in msg and "record 'stranger'" in msg and "no feature vector" in msg


def test_predict_pool_differs_warns(planted, single_run, tmp_path, capsys):
    _, s, _ = planted
    final = tmp_path / "final.npz"
    vectors = np.load(s["emb"])
    with EmbeddingWriter(final, kind="per-protein", model="planted", pool="final", dim=D) as w:
        for i in s["ids"]:
            w.write(i, vectors[i])
    status, _, err = run_cli(capsys, "predict", single_run, s["fasta"], "--features", final, "--workers", "1",
                             "-o", tmp_path / "p.tsv", "--device", "cpu")
    assert status == 0, err
    assert any("'final'-pooled embeddings" in w and "'mean'" in w for w in warnings_of(err, "predict")), err


def test_predict_without_features_unloadable_embedder(planted, single_run, capsys):
    _, s, _ = planted
    status, _, err = run_cli(capsys, "predict", single_run, s["fasta"], "--workers", "1", "--device", "cpu")
    msg = one_error(err, "predict")
    assert status == 1 and "cannot load the embedder 'planted'" in msg and "pass --features" in msg
    assert str(single_run) in msg


def test_features_for_a_model_trained_without(planted, tiny_run, tiny_fasta, capsys):
    _, s, _ = planted
    status, _, err = run_cli(capsys, "predict", tiny_run, tiny_fasta, "--features", s["emb"], "--workers", "1",
                             "--device", "cpu")
    msg = one_error(err, "predict")
    assert status == 1 and f"--features {s['emb']}" in msg and "trained without features" in msg
    status, _, err = run_cli(capsys, "evaluate", tiny_run, tiny_fasta, "--features", s["emb"], "--device", "cpu")
    msg = one_error(err, "evaluate")
    assert status == 1 and f"--features {s['emb']}" in msg and "trained without features" in msg


def test_predict_per_protein_file_for_a_per_residue_model(planted, tmp_path, capsys):
    _, s, _ = planted
    res = tmp_path / "res.npz"
    with EmbeddingWriter(res, kind="per-residue", model="m", pool="none", dim=3) as w:
        for i, seq in zip(s["ids"], s["seqs"]):
            w.write(i, np.ones((len(seq), 3)))
    out = tmp_path / "la"
    status, _, err = run_cli(capsys, "train", s["data"], "--model", "light-attention", "--encoding", "none",
                             "--features", res, "--kernel-size", "3", "--hidden", "4", "--epochs", "1", "--out", out,
                             *COMMON)
    assert status == 0, err
    status, _, err = run_cli(capsys, "predict", out, s["fasta"], "--features", s["emb"], "--workers", "1",
                             "--device", "cpu")
    msg = one_error(err, "predict")
    assert status == 1 and f"--features {s['emb']}" in msg and "per-protein" in msg and "per-residue" in msg
    # ... and an ensemble cannot mix it with an mlp.
    mlp = tmp_path / "mlp"
    assert run_cli(capsys, "train", s["data"], "--model", "mlp", "--features", s["emb"], "--epochs", "1",
                   "--out", mlp, *COMMON)[0] == 0
    status, _, err = run_cli(capsys, "predict", mlp, out, s["fasta"], "--features", s["emb"], "--workers", "1",
                             "--device", "cpu")
    msg = one_error(err, "predict")
    assert status == 1 and "cannot mix --model mlp" in msg and str(out) in msg
