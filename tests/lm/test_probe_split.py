"""sublocal probe on a given train/test split (--test, --split-column): fit on the train side
only, score on the test side only, checked against scikit-learn run directly on generated data;
the one-line errors; cross-validation unchanged without a split."""

import json

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import accuracy_score, matthews_corrcoef, r2_score
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sublocal_kernels.data.embeddings import EmbeddingWriter, open_embeddings
from sublocal_kernels.lm import ProbeError, probe
from tests.cli.conftest import one_error, run_cli, warnings_of

D = 6


def write_emb(path, ids, X, per_residue=None):
    """Per-protein rows ``X``; with ``per_residue`` (a rng), each row becomes an ``(L, D)`` array
    whose mean over residues is exactly that row."""
    kind = "per-residue" if per_residue is not None else "per-protein"
    with EmbeddingWriter(path, kind=kind, model="test", pool="none" if per_residue is not None else "mean",
                         dim=X.shape[1]) as w:
        for i, x in zip(ids, X):
            if per_residue is not None:
                length = int(per_residue.integers(2, 9))
                noise = per_residue.normal(size=(length, X.shape[1]))
                x = x + noise - noise.mean(0)
            w.write(i, np.asarray(x, dtype=np.float32))
    return path


def read_back(path, ids):
    """The features the probe sees: each record, averaged over residues where per residue."""
    with open_embeddings(str(path)) as e:
        return np.stack([e[i].mean(0) if e[i].ndim == 2 else e[i] for i in ids]).astype(np.float64)


def write_labels(path, ids, targets, column="value", extra=None):
    head = "id\t" + column + ("\t" + extra[0] if extra else "")
    rows = [f"{i}\t{t}" + (f"\t{s}" if extra else "") for i, t, s in zip(ids, targets, extra[1] if extra else ids)]
    path.write_text(head + "\n" + "\n".join(rows) + "\n")
    return path


def ridge_split(X_tr, y_tr, X_te, y_te):
    """The split protocol computed with scikit-learn directly."""
    est = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 15))).fit(X_tr, y_tr)
    pred = est.predict(X_te)
    return spearmanr(y_te, pred).statistic, r2_score(y_te, pred)


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    """Regression data: the test side is shifted (mean +2) and its labels depend on the features
    the other way round (y = -X w there), and the test file reuses the training ids for other
    vectors, so a probe that cross-validates, fits on both sides or looks the test ids up in
    the training file gets other numbers."""
    d = tmp_path_factory.mktemp("probe-split")
    rng = np.random.default_rng(7)
    w = np.array([3.0, -2.0, 1.0, 0.5, 0.0, 0.0])
    X_tr = rng.normal(size=(60, D))
    y_tr = X_tr @ w + 0.5 * rng.normal(size=60)
    X_te = rng.normal(size=(40, D)) + 2.0
    y_te = -(X_te @ w) + 0.5 * rng.normal(size=40)
    tr_ids = [f"s{k}" for k in range(60)]
    te_ids = [f"s{k}" for k in range(40)]  # the same names as training ids, other proteins
    data = dict(d=d, X_tr=X_tr, y_tr=y_tr, X_te=X_te, y_te=y_te, tr_ids=tr_ids, te_ids=te_ids)
    data["train_emb"] = write_emb(d / "train.npz", tr_ids, X_tr)
    data["test_emb"] = write_emb(d / "test.h5", te_ids, X_te, per_residue=np.random.default_rng(1))
    data["train_lab"] = write_labels(d / "train.tsv", tr_ids, y_tr)
    data["test_lab"] = write_labels(d / "test.tsv", te_ids, y_te)
    # The same proteins under distinct ids, in one file with a split column, and in one labels file.
    u_tr = [f"tr{k}" for k in range(60)]
    u_te = [f"te{k}" for k in range(40)]
    data["u_tr"], data["u_te"] = u_tr, u_te
    data["all_emb"] = write_emb(d / "all.npz", u_tr + u_te, np.vstack([X_tr, X_te]))
    data["u_train_emb"] = write_emb(d / "u_train.npz", u_tr, X_tr)
    data["u_test_emb"] = write_emb(d / "u_test.npz", u_te, X_te)
    splits = ["Train"] * 60 + ["valid"] * 40  # case does not matter
    data["split_lab"] = write_labels(d / "split.tsv", u_tr + u_te, np.concatenate([y_tr, y_te]),
                                     extra=("split", splits))
    # What the probe reads: float32 values, and the per-residue test file averaged to X_te.
    F_tr, F_te = read_back(data["train_emb"], tr_ids), read_back(data["test_emb"], te_ids)
    np.testing.assert_allclose(F_te, X_te, atol=1e-5)
    np.testing.assert_array_equal(read_back(data["all_emb"], u_tr + u_te), np.vstack([F_tr, X_te.astype(np.float32)]))
    data["want"] = ridge_split(F_tr, y_tr, F_te, y_te)
    return data


def test_split_matches_sklearn_and_differs_from_cv(reg, tmp_path, capsys):
    rho, r2 = reg["want"]
    assert rho < -0.9  # the planted flip: on the test side the fit ranks the wrong way round
    status, out, err = run_cli(capsys, "probe", reg["train_emb"], reg["train_lab"], "--test", reg["test_emb"],
                               reg["test_lab"], "--task", "regression", "--json", tmp_path / "m.json")
    assert status == 0, err
    assert "held-out split (not k-fold)" in out and "60 train and 40 test sequences" in out and "-fold ridge" not in out
    got = json.loads((tmp_path / "m.json").read_text())
    assert got["protocol"] == "split" and got["n_train"] == 60 and got["n_test"] == 40 and "folds" not in got
    assert got["spearman"] == pytest.approx(rho, abs=1e-9) and got["r2"] == pytest.approx(r2, abs=1e-9)
    assert f"Spearman rho {rho:.4f}, R^2 {r2:.4f}" in out
    # Cross-validation on the training side alone finds the planted signal the right way round.
    cv = probe(reg["train_emb"], reg["train_lab"], "regression")
    assert cv["protocol"] == "cv" and cv["spearman"] > 0.9
    # Scored in the training file's vectors of the same ids, the number would differ.
    assert ridge_split(reg["X_tr"], reg["y_tr"], reg["X_tr"][:40], reg["y_te"])[0] != pytest.approx(rho, abs=1e-3)


def test_split_column_and_one_labels_file_give_the_same_numbers(reg, tmp_path, capsys):
    # Per-protein files here, so the test side's features are X_te in float32, not the average.
    rho, r2 = ridge_split(read_back(reg["all_emb"], reg["u_tr"]), reg["y_tr"],
                          read_back(reg["all_emb"], reg["u_te"]), reg["y_te"])
    assert rho == pytest.approx(reg["want"][0], abs=1e-3)
    by_column = probe(reg["all_emb"], reg["split_lab"], "regression", split_column="SPLIT")
    assert by_column["protocol"] == "split" and (by_column["n_train"], by_column["n_test"]) == (60, 40)
    assert by_column["test_values"] == ["test", "valid", "validation"] and "left_out" not in by_column
    assert by_column["spearman"] == pytest.approx(rho, abs=1e-9) and by_column["r2"] == pytest.approx(r2, abs=1e-9)
    # The test rows' embeddings in a second file.
    status, out, err = run_cli(capsys, "probe", reg["u_train_emb"], reg["split_lab"], "--split-column", "split",
                               "--test", reg["u_test_emb"], "--task", "regression")
    assert status == 0 and err == "", err
    assert f"Spearman rho {rho:.4f}" in out and "held-out split" in out
    # No split column: one labels file, and each id's side is the embedding file holding it.
    for extra in ((), (reg["split_lab"],)):
        status, out, err = run_cli(capsys, "probe", reg["u_train_emb"], reg["split_lab"], "--test", reg["u_test_emb"],
                                   *extra, "--task", "regression")
        assert status == 0 and err == "", err
        assert "60 train and 40 test sequences" in out and f"Spearman rho {rho:.4f}, R^2 {r2:.4f}" in out


def test_split_values_choose_rows_and_warn_for_the_rest(tmp_path, capsys):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(90, D))
    y = X @ rng.normal(size=D) + 0.3 * rng.normal(size=90)
    ids = [f"p{k}" for k in range(90)]
    splits = ["train"] * 50 + ["valid"] * 15 + ["test"] * 25
    emb = write_emb(tmp_path / "e.npz", ids, X)
    X = read_back(emb, ids)
    lab = write_labels(tmp_path / "l.csv", ids, y, extra=("set", splits))
    lab.write_text(lab.read_text().replace("\t", ","))  # a CSV
    status, _, err = run_cli(capsys, "probe", emb, lab, "--split-column", "set", "--task", "regression")
    assert status == 1 and "column set holds rows of 'test' and 'valid': choose the test side with --test-value" \
        in one_error(err, "probe")
    status, out, err = run_cli(capsys, "probe", emb, lab, "--split-column", "set", "--test-value", "TEST",
                               "--task", "regression", "--json", tmp_path / "m.json")
    assert status == 0, err
    assert warnings_of(err, "probe") == [f"{lab}: 15 rows left out: their set is neither train (train) nor test "
                                         f"(test): 15 'valid'"]
    want = ridge_split(X[:50], y[:50], X[65:], y[65:])[0]
    got = json.loads((tmp_path / "m.json").read_text())
    assert (got["n_train"], got["n_test"], got["left_out"]) == (50, 25, {"valid": 15})
    assert got["spearman"] == pytest.approx(want, abs=1e-9)
    # The validation rows as training rows too.
    got = probe(emb, lab, "regression", split_column="set", train_values=["train", "valid"], test_values="test")
    assert (got["n_train"], got["n_test"]) == (65, 25)
    assert got["spearman"] == pytest.approx(ridge_split(X[:65], y[:65], X[65:], y[65:])[0], abs=1e-9)


def test_classification_split_and_unseen_classes(tmp_path, capsys):
    rng = np.random.default_rng(5)
    W = rng.normal(size=(D, 3))
    names = np.array(["alpha", "beta", "gamma"])
    X_tr, X_te = rng.normal(size=(80, D)), rng.normal(size=(30, D)) + 0.5
    lab_tr, lab_te = list(names[np.argmax(X_tr @ W, 1)]), list(names[np.argmax(X_te @ W, 1)])
    lab_te[:4] = ["delta"] * 4  # never seen in training
    tr_ids, te_ids = [f"a{k}" for k in range(80)], [f"b{k}" for k in range(30)]
    emb_tr = write_emb(tmp_path / "tr.npz", tr_ids, X_tr)
    emb_te = write_emb(tmp_path / "te.npz", te_ids, X_te, per_residue=rng)
    l_tr = write_labels(tmp_path / "tr.tsv", tr_ids, lab_tr, "label")
    l_te = write_labels(tmp_path / "te.tsv", te_ids, lab_te, "label")
    status, out, err = run_cli(capsys, "probe", emb_tr, l_tr, "--test", emb_te, l_te, "--task", "classification",
                               "--json", tmp_path / "m.json")
    assert status == 0, err
    assert warnings_of(err, "probe") == [f"{l_te}: 4 of the 30 test sequences have a class never seen in "
                                         f"training ('delta'): they count as wrong predictions"]
    classes = sorted(set(lab_tr) | set(lab_te))
    est = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    pred = est.fit(read_back(emb_tr, tr_ids), [classes.index(c) for c in lab_tr]).predict(read_back(emb_te, te_ids))
    y_te = [classes.index(c) for c in lab_te]
    got = json.loads((tmp_path / "m.json").read_text())
    assert got["protocol"] == "split" and got["classes"] == classes and got["unseen_classes"] == ["delta"]
    assert got["accuracy"] == pytest.approx(accuracy_score(y_te, pred), abs=1e-12) and got["accuracy"] <= 26 / 30
    assert got["mcc"] == pytest.approx(matthews_corrcoef(y_te, pred), abs=1e-12)
    assert "30 test sequences, 4 classes, held-out split (not k-fold): logistic regression" in out


def test_cross_validation_is_unchanged(reg, tmp_path, capsys):
    status, out, err = run_cli(capsys, "probe", reg["train_emb"], reg["train_lab"], "--task", "regression",
                               "--json", tmp_path / "m.json")
    assert status == 0, err
    est = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 15)))
    pred = cross_val_predict(est, reg["X_tr"].astype(np.float32).astype(np.float64), reg["y_tr"],
                             cv=KFold(5, shuffle=True, random_state=0))
    rho = spearmanr(reg["y_tr"], pred).statistic
    got = json.loads((tmp_path / "m.json").read_text())
    assert got == {"task": "regression", "protocol": "cv", "n": 60, "dim": D, "folds": 5,
                   "spearman": pytest.approx(rho, abs=1e-9), "r2": pytest.approx(r2_score(reg["y_tr"], pred), abs=1e-9)}
    assert out == f"60 sequences, 5-fold ridge regression: Spearman rho {rho:.4f}, R^2 {got['r2']:.4f}\n"


def test_errors_are_one_line(reg, tmp_path, capsys):
    emb, lab, t_emb, t_lab = reg["train_emb"], reg["train_lab"], reg["test_emb"], reg["test_lab"]
    ghost = write_labels(tmp_path / "ghost.tsv", reg["te_ids"] + ["ghost"], list(reg["y_te"]) + [1.0])
    narrow = write_emb(tmp_path / "narrow.npz", reg["te_ids"], reg["X_te"][:, :5])
    no_test = write_labels(tmp_path / "nt.tsv", reg["u_tr"], reg["y_tr"], extra=("split", ["train"] * 60))
    no_train = write_labels(tmp_path / "ntr.tsv", reg["u_te"], reg["y_te"], extra=("split", ["test"] * 40))
    task = ("--task", "regression")
    cases = [
        (("--test", t_emb, ghost), 1, f"{t_emb}: no embedding for 1 of the 41 ids in {ghost}: 'ghost'"),
        (("--split-column", "fold"), 1, f"{lab}, line 1: --split-column fold: no such column; the header names id, "
                                        f"value"),
        (("--split-column", "split"), 1, "no such column"),
        (("--test", narrow, t_lab), 1, f"{narrow}: embeddings are 5 wide, but those of {emb} are 6 wide"),
        (("--test", t_emb, t_lab, "--folds", "3"), 2, "--folds 3 does not apply to a given train/test split"),
        (("--split-column", "split", "--folds", "5"), 2, "--folds 5 does not apply"),
        (("--test", t_emb, t_lab, lab), 2, "argument --test: expected EMBEDDINGS [LABELS], got 3 values"),
        (("--test", t_emb, t_lab, "--split-column", "split"), 2, "--split-column takes both sides' labels from LABELS"),
        (("--test-value", "test"), 2, "--train-value and --test-value apply only with --split-column"),
        (("--test", emb), 2, f"--test {emb} is the EMBEDDINGS file"),
        (("--test", tmp_path / "nope.h5", t_lab), 1, "--test EMBEDDINGS"),
        (("--test", t_emb, tmp_path / "nope.tsv"), 1, "--test LABELS"),
        (("--split-column", "split", "--test-value", "valid,"), 2, "argument --test-value: expected comma-separated"),
    ]
    for flags, status, message in cases:
        got, _, err = run_cli(capsys, "probe", emb, lab, *task, *flags)
        assert got == status, (flags, err)
        assert message in one_error(err, "probe"), (flags, err)
    # Empty sides of a split column, and a labels file whose ids are in both embedding files.
    for labels, side in ((no_test, "test"), (no_train, "train")):
        got, _, err = run_cli(capsys, "probe", reg["all_emb"], labels, "--split-column", "split", *task)
        assert got == 1 and f"{labels}: no {side} rows: column split has no value" in one_error(err, "probe"), err
    got, _, err = run_cli(capsys, "probe", emb, lab, "--test", t_emb, *task)
    assert got == 1 and "40 ids are embedded in both" in one_error(err, "probe"), err
    got, _, err = run_cli(capsys, "probe", reg["u_train_emb"], lab, "--test", reg["u_test_emb"], *task)
    assert got == 1 and "no embedding for 60 of the 60 ids" in one_error(err, "probe"), err
    with pytest.raises(ValueError, match="--folds 5 does not apply"):
        probe(emb, lab, "regression", folds=5, test_embeddings=t_emb, test_labels=t_lab)
    one = write_labels(tmp_path / "one.tsv", reg["tr_ids"], ["x"] * 60, "label")
    two = write_labels(tmp_path / "two.tsv", reg["te_ids"], ["x", "y"] * 20, "label")
    with pytest.raises(ProbeError, match="every training label is 'x'"):
        probe(emb, one, "classification", test_embeddings=t_emb, test_labels=two)
