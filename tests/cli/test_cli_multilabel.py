"""`sublocal train --multi-label` for every model, multi-label evaluate/predict, and training on
embeddings read from an HDF5 file (`--encoding none --features emb.h5`)."""

import json
import os

import numpy as np
import pytest

from sublocal_kernels.data import make_multilabel_synthetic

from .conftest import one_error, run_cli, warnings_of

pytest.importorskip("sklearn")

# The smallest of each model (one epoch: a smoke test, no accuracy claim).
SMALL = {
    "alstm": ["--widths", "1,3", "--filters-per-width", "2", "--hidden-size", "4", "--attention-size", "4",
              "--dense-size", "4"],
    "rlstm": ["--widths", "1,3", "--filters-per-width", "2", "--hidden-size", "4", "--dense-size", "4"],
    "cnnlstm": ["--filters-per-width", "2", "--hidden-size", "4", "--dense-size", "4"],
    "qrnn": ["--hidden-size", "4", "--num-layers", "1", "--attention-size", "4", "--dense-size", "4"],
    "tcn": ["--channels", "4", "--num-levels", "2", "--dense-size", "4"],
    "light-attention": ["--kernel-size", "3", "--hidden", "4"],
}
COMMON = ["--epochs", "1", "--batch-size", "8", "--lr", "3e-3", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def multi_fasta(tmp_path_factory):
    d = tmp_path_factory.mktemp("multi")
    data = make_multilabel_synthetic(n_per_class=5, n_per_pair=5, min_length=100, max_length=130, seed=2)
    path = d / "multi.fasta"
    with open(path, "w") as fh:
        for r in data.records:
            fh.write(f">{r.id} {r.label}-U\n{r.sequence}\n")
    return str(path), data


@pytest.fixture(scope="module")
def multi_run(multi_fasta, tmp_path_factory):
    from sublocal_kernels.cli import main

    out = tmp_path_factory.mktemp("mrun") / "run"
    assert main(["train", multi_fasta[0], "--out", str(out), "--multi-label", *SMALL["alstm"], *COMMON]) == 0
    return str(out)


@pytest.mark.parametrize("model", sorted(SMALL))
def test_every_model_trains_multi_label(multi_fasta, tmp_path, capsys, model):
    out = tmp_path / "run"
    status, stdout, err = run_cli(capsys, "train", multi_fasta[0], "--out", out, "--model", model, "--multi-label",
                                  *SMALL[model], *COMMON)
    assert status == 0, err
    assert "micro F1" in stdout and "thresholds tuned on validation" in stdout
    meta = json.load(open(out / "best.json"))
    assert meta["multi_label"] is True and meta["model"] == model
    assert meta["classes"] == ["Cytoplasm", "Mitochondrion", "Nucleus", "Peroxisome"]
    assert len(meta["thresholds"]) == 4 and all(0 <= t <= 1 for t in meta["thresholds"])
    assert meta["train_config"]["multi_label"] is True


def test_multi_label_data_without_the_flag_is_an_error(multi_fasta, tmp_path, capsys):
    status, _, err = run_cli(capsys, "train", multi_fasta[0], "--out", tmp_path / "r", *SMALL["alstm"], *COMMON)
    msg = one_error(err, "train")
    assert status == 1 and "several labels" in msg and "pass --multi-label" in msg and "record 'SYN" in msg


def test_single_label_checkpoint_on_multi_label_data_names_the_checkpoint(multi_fasta, tmp_path, capsys):
    # evaluate has no --multi-label: the error points at the checkpoint, not at a flag.
    single = tmp_path / "single.fasta"
    with open(single, "w") as fh:
        for r in multi_fasta[1].records:
            if ";" not in r.label:
                fh.write(f">{r.id} {r.label}-U\n{r.sequence}\n")
    status, _, err = run_cli(capsys, "train", single, "--out", tmp_path / "r", "--model", "rlstm", *SMALL["rlstm"],
                             *COMMON)
    assert status == 0, err
    status, _, err = run_cli(capsys, "evaluate", tmp_path / "r", multi_fasta[0], "--device", "cpu")
    msg = one_error(err, "evaluate")
    assert status == 1 and "several labels" in msg and "record 'SYN" in msg, msg
    assert "trained with one label per record" in msg and "sublocal train --multi-label" in msg, msg
    assert "pass --multi-label" not in msg, msg


def test_class_without_validation_positives_keeps_half(tmp_path, capsys):
    # 'rare' has one sequence, which the split puts in training.
    rows = ["id\tsequence\tlabel"]
    rng = np.random.default_rng(0)
    for i in range(24):
        label = ["a", "b", "a;b"][i % 3] if i >= 1 else "a;rare"
        rows.append(f"s{i}\t{''.join(rng.choice(list('ACDEFGHIKLMNPQRSTVWY'), 30))}\t{label}")
    (tmp_path / "t.tsv").write_text("\n".join(rows) + "\n")
    status, _, err = run_cli(capsys, "train", tmp_path / "t.tsv", "--out", tmp_path / "r", "--multi-label",
                             "--val-fraction", "0.3", "--test-fraction", "0", *SMALL["alstm"], *COMMON)
    assert status == 0, err
    meta = json.load(open(tmp_path / "r" / "best.json"))
    rare = meta["classes"].index("rare")
    assert meta["thresholds"][rare] == 0.5
    assert any("with no positive sequence in the validation split keeps the threshold 0.5: 'rare'" in w
               for w in warnings_of(err, "train")), err


def test_evaluate_and_predict_multi_label(multi_run, multi_fasta, tmp_path, capsys):
    status, stdout, err = run_cli(capsys, "evaluate", multi_run, multi_fasta[0], "--out", tmp_path / "ev")
    assert status == 0, err
    assert "micro F1=" in stdout and "Jaccard=" in stdout and "subset accuracy=" in stdout
    # Strict JSON (an undefined AUC is null, never NaN), with the threshold-free figures.
    report = json.loads(open(tmp_path / "ev" / "report.json").read(),
                        parse_constant=lambda c: pytest.fail(f"report.json holds {c}"))
    assert report["multi_label"] is True and report["n"] == len(multi_fasta[1].records)
    assert set(report["per_class"]["Nucleus"]) >= {"mcc", "precision", "recall", "f1", "confusion", "threshold",
                                                   "auc", "ap"}
    assert 0.0 <= report["macro_auc"] <= 1.0 and "macro AUC=" in stdout
    assert open(tmp_path / "ev" / "confusion.png", "rb").read(4) == b"\x89PNG"
    # predict: sigmoid probabilities and the set of classes at or over their thresholds.
    fasta = tmp_path / "p.fasta"
    fasta.write_text("".join(f">{r.id}\n{r.sequence}\n" for r in multi_fasta[1].records[:6]))
    status, stdout, err = run_cli(capsys, "predict", multi_run, fasta)
    assert status == 0, err
    meta = json.load(open(os.path.join(multi_run, "best.json")))
    rows = [line.split("\t") for line in stdout.splitlines()[1:]]
    assert len(rows) == 6
    for row in rows:
        probs = np.array([float(v) for v in row[2:]])
        want = {c for c, p, t in zip(meta["classes"], probs, meta["thresholds"]) if p >= t - 5e-7}
        assert set(filter(None, row[1].split(";"))) == want


def test_ensemble_of_multi_label_runs(multi_run, multi_fasta, tmp_path, capsys):
    other = tmp_path / "other"
    status, _, err = run_cli(capsys, "train", multi_fasta[0], "--out", other, "--multi-label", "--seed", "1",
                             "--split-seed", "0", *SMALL["alstm"], *COMMON)
    assert status == 0, err
    status, stdout, err = run_cli(capsys, "evaluate", f"{multi_run},{other}", multi_fasta[0], "--split", "test",
                                  "--out", tmp_path / "ev")
    assert status == 0, err
    report = json.load(open(tmp_path / "ev" / "report.json"))
    assert report["multi_label"] is True and "macro F1=" in stdout
    # Thresholds tuned on the ensemble's own validation predictions (not the members' mean).
    from sublocal_kernels.training import TrainConfig, load_predictor, prepare_data, run_model
    from sublocal_kernels.training.metrics import tune_thresholds

    ens = load_predictor(f"{multi_run},{other}")
    cfg = TrainConfig.from_json(ens.meta["train_config"])
    cfg.data = multi_fasta[0]
    ds, (_, va, _) = prepare_data(cfg, classes=ens.classes)
    probs, _, _ = run_model(ens.model, ds, va, "cpu")
    tuned, untuned = tune_thresholds(ds.targets[va], probs, ds.classes)
    assert report["thresholds"] == [ens.meta["thresholds"][k] if c in untuned else tuned[k]
                                    for k, c in enumerate(ds.classes)]


def test_light_attention_on_embeddings_from_hdf5(multi_fasta, tmp_path, capsys):
    """Train Light Attention on generated per-residue embeddings read from an .h5 file
    (--encoding none: the embeddings alone), then evaluate and predict with them."""
    pytest.importorskip("h5py")
    from sublocal_kernels.data import EmbeddingWriter, load_records

    records = load_records(multi_fasta[0], multi_label=True)
    rng = np.random.default_rng(0)
    table = rng.standard_normal((26, 12)).astype(np.float32)  # a fixed random "language model"
    emb = tmp_path / "emb.h5"
    with EmbeddingWriter(emb, kind="per-residue", model="random-table", pool="none", dim=12, dtype="float16") as w:
        for r in records:
            w.write(r.id, table[[ord(c) - 65 for c in r.sequence]])
    out = tmp_path / "la"
    status, stdout, err = run_cli(capsys, "train", multi_fasta[0], "--out", out, "--model", "light-attention",
                                  "--encoding", "none", "--features", emb, "--multi-label", *SMALL["light-attention"],
                                  *COMMON)
    assert status == 0, err
    meta = json.load(open(out / "best.json"))
    assert meta["num_features"] == 12 and meta["model_config"]["embedding_dim"] == 12
    assert meta["model_config"]["encoding"] == "none"
    status, stdout, err = run_cli(capsys, "evaluate", out, multi_fasta[0], "--features", emb)
    assert status == 0 and "micro F1=" in stdout, err
    # Single-label Light Attention on the same embeddings (first label of each record).
    single = tmp_path / "single.tsv"
    single.write_text("id\tsequence\tlabel\n" + "".join(f"{r.id}\t{r.sequence}\t{r.labels[0]}\n" for r in records))
    status, stdout, err = run_cli(capsys, "train", single, "--out", tmp_path / "la1", "--model", "light-attention",
                                  "--encoding", "none", "--features", emb, *SMALL["light-attention"], *COMMON)
    assert status == 0 and "accuracy" in stdout, err


def test_embedding_flag_errors(multi_fasta, tmp_path, capsys):
    status, _, err = run_cli(capsys, "train", multi_fasta[0], "--out", tmp_path / "r", "--encoding", "none",
                             "--multi-label", *COMMON)
    assert status == 2 and "--encoding none reads precomputed features only: pass --features" in one_error(err, "train")
    status, _, err = run_cli(capsys, "train", multi_fasta[0], "--out", tmp_path / "r", "--model", "light-attention",
                             "--hidden-size", "4", *COMMON)
    assert status == 2 and "--hidden-size does not apply to --model light-attention" in one_error(err, "train")
    # Embeddings whose length differs from a sequence's: the record and the file are named.
    pytest.importorskip("h5py")
    from sublocal_kernels.data import EmbeddingWriter, load_records

    records = load_records(multi_fasta[0], multi_label=True)
    with EmbeddingWriter(tmp_path / "bad.h5", kind="per-residue", model="m", pool="none", dim=3) as w:
        for k, r in enumerate(records):
            w.write(r.id, np.zeros((len(r.sequence) + (k == 3), 3)))
    status, _, err = run_cli(capsys, "train", multi_fasta[0], "--out", tmp_path / "r2", "--model", "light-attention",
                             "--encoding", "none", "--features", tmp_path / "bad.h5", "--multi-label", *COMMON)
    msg = one_error(err, "train")
    assert status == 1 and "bad.h5" in msg and f"record {records[3].id!r}" in msg and "length differs" in msg


def test_deeploc2_csv_partitions_are_the_folds(multi_fasta, tmp_path, capsys):
    # DeepLoc 2.0's layout: one 0/1 column per class and a Partition column (predefined folds).
    data = multi_fasta[1]
    classes = list(data.classes)
    lines = [",ACC,Kingdom,Partition,Membrane," + ",".join(classes) + ",Sequence"]
    for k, r in enumerate(data.records):
        flags = ",".join("1" if c in r.labels else "0" for c in classes)
        lines.append(f"{k},{r.id},Eukaryota,{k % 3},0,{flags},{r.sequence}")
    (tmp_path / "deeploc2.csv").write_text("\n".join(lines) + "\n")
    status, stdout, err = run_cli(capsys, "train", tmp_path / "deeploc2.csv", "--out", tmp_path / "r", "--multi-label",
                                  "--val-partition", "2", *SMALL["alstm"], *COMMON)
    assert status == 0, err
    n = len(data.records)
    summary = json.load(open(tmp_path / "r" / "summary.json"))
    assert summary["splits"] == {"train": n - len(range(2, n, 3)), "val": len(range(2, n, 3)), "test": 0}
    status, _, err = run_cli(capsys, "train", tmp_path / "deeploc2.csv", "--out", tmp_path / "r2", "--multi-label",
                             "--val-partition", "7", *SMALL["alstm"], *COMMON)
    assert status == 1 and "--val-partition 7" in one_error(err, "train") and "partitions 0, 1, 2" in err


def test_plot_multi_label_run(multi_run, multi_fasta, tmp_path, capsys):
    for module in ("matplotlib", "logomaker"):
        pytest.importorskip(module)
    status, stdout, err = run_cli(capsys, "plot", multi_run, multi_fasta[0], "--out", tmp_path / "plots",
                                  "--max-sequences", "12")
    assert status == 0, err
    assert {"attention:", "filters:", "tsne:"} <= {line.split()[0] for line in stdout.splitlines() if line}
