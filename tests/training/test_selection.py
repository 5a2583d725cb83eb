"""Model selection, thresholds, class weights, schedules and folds: the pieces of ``train --cv``
and its options, each against a hand computation or scikit-learn on planted data."""

import math

import numpy as np
import pytest

from sublocal_kernels.data import SequenceDataset
from sublocal_kernels.data.readers import Record
from sublocal_kernels.training import TrainConfig
from sublocal_kernels.training.data import class_weights, cv_folds, read_class_weights
from sublocal_kernels.training.metrics import (multilabel_report, predict_labels, ranking_scores,
                                               selection_score, tune_thresholds)
from sublocal_kernels.training.run import learning_rate

skm = pytest.importorskip("sklearn.metrics")


def test_selection_score_reads_the_named_figure():
    single = {"loss": 0.7, "accuracy": 0.8, "mcc": 0.6, "macro_f1": 0.5}
    multi = {"multi_label": True, "loss": 0.3, "subset_accuracy": 0.4, "macro_mcc": 0.45, "macro_f1": 0.55,
             "micro_f1": 0.65, "jaccard": 0.6}
    assert selection_score(single, "loss") == -0.7
    assert [selection_score(single, m) for m in ("accuracy", "mcc", "macro-f1", "micro-f1")] == [0.8, 0.6, 0.5, 0.8]
    assert [selection_score(multi, m) for m in ("accuracy", "mcc", "macro-f1", "micro-f1", "jaccard")] == \
        [0.4, 0.45, 0.55, 0.65, 0.6]
    assert selection_score(dict(multi, macro_auc=0.7), "macro-auc") == 0.7
    # An AUC undefined on the validation set (no label with both classes) never wins.
    assert selection_score(dict(multi, macro_auc=math.nan), "macro-auc") == -math.inf
    for metric in ("jaccard", "macro-auc"):
        with pytest.raises(ValueError, match=f"--select-by {metric} applies to multi-label data only"):
            selection_score(dict(single, macro_auc=0.7), metric)
    with pytest.raises(ValueError, match="--select-by must be one of"):
        selection_score(single, "auc")


def _planted_probs(seed=0, n=400, K=4):
    """Scores that separate each label imperfectly, with label-specific calibration (so 0.5 is a
    poor threshold and the best F1 and best MCC thresholds differ)."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, K)) < np.array([0.5, 0.2, 0.08, 0.35])[:K]).astype(np.int64)
    logits = 1.5 * (targets - 0.5) + rng.normal(0, 1.0, (n, K)) - np.array([1.5, 0.5, 2.0, -0.5])[:K]
    return targets, 1 / (1 + np.exp(-logits))


def _hand_auc(truth, scores):
    """ROC AUC as the Mann-Whitney statistic: over every (positive, negative) pair, 1 where the
    positive scores higher, 1/2 on a tie."""
    pos, neg = scores[truth == 1], scores[truth == 0]
    return float(((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean())


def _hand_ap(truth, scores):
    """Average precision with distinct scores: the precision at the rank of each positive,
    averaged over the positives."""
    order = np.argsort(-scores, kind="stable")
    hits = np.cumsum(truth[order])
    return float(np.mean([hits[i] / (i + 1) for i in range(len(order)) if truth[order][i]]))


def test_ranking_scores_equal_the_hand_computation():
    targets, probs = _planted_probs(seed=3, n=300)
    classes = list("abcd")
    got = ranking_scores(targets, probs, classes)
    aucs = [_hand_auc(targets[:, k], probs[:, k]) for k in range(4)]
    aps = [_hand_ap(targets[:, k], probs[:, k]) for k in range(4)]
    assert [got["per_class"][c]["auc"] for c in classes] == pytest.approx(aucs, abs=1e-12)
    assert [got["per_class"][c]["ap"] for c in classes] == pytest.approx(aps, abs=1e-12)
    assert got["macro_auc"] == pytest.approx(np.mean(aucs)) and got["macro_ap"] == pytest.approx(np.mean(aps))
    assert got["micro_auc"] == pytest.approx(_hand_auc(targets.ravel(), probs.ravel()), abs=1e-12)
    # The planted scores separate every label (each AUC well above chance); shuffled, they do not.
    assert min(aucs) > 0.75
    shuffled = ranking_scores(targets, np.random.default_rng(0).permutation(probs), classes)
    assert abs(shuffled["macro_auc"] - 0.5) < 0.1
    # Ties count one half: constant scores give 0.5 exactly.
    assert ranking_scores(targets, np.full(probs.shape, 0.3), classes)["macro_auc"] == 0.5


def test_ranking_scores_leave_out_undefined_labels():
    targets, probs = _planted_probs(seed=4, n=200)
    targets[:, 1] = 0  # no positive: neither AUC nor AP
    targets[:, 2] = 1  # no negative: no AUC; AP is the positives' share, 1
    got = ranking_scores(targets, probs, list("abcd"))
    assert math.isnan(got["per_class"]["b"]["auc"]) and math.isnan(got["per_class"]["b"]["ap"])
    assert math.isnan(got["per_class"]["c"]["auc"]) and got["per_class"]["c"]["ap"] == pytest.approx(1.0)
    assert got["macro_auc"] == pytest.approx(np.mean([_hand_auc(targets[:, k], probs[:, k]) for k in (0, 3)]))
    report = multilabel_report(targets, probs, [0.5] * 4, list("abcd"))
    assert report["macro_auc"] == got["macro_auc"] and math.isnan(report["per_class"]["b"]["auc"])
    none = ranking_scores(np.zeros((5, 2)), np.random.default_rng(1).random((5, 2)), ["x", "y"])
    assert math.isnan(none["macro_auc"]) and math.isnan(none["micro_auc"]) and math.isnan(none["macro_ap"])


def test_mcc_thresholds_maximise_each_label_mcc():
    targets, probs = _planted_probs()
    classes = list("abcd")
    by_mcc, untuned = tune_thresholds(targets, probs, classes, by="mcc")
    by_f1, _ = tune_thresholds(targets, probs, classes, by="f1")
    assert untuned == []
    for k in range(4):
        cuts = np.unique(probs[:, k])
        mccs = np.array([skm.matthews_corrcoef(targets[:, k], probs[:, k] >= t) for t in cuts])
        best = cuts[np.flatnonzero(np.isclose(mccs, mccs.max(), rtol=0, atol=1e-12))[-1]]
        assert by_mcc[k] == pytest.approx(best)
        assert skm.matthews_corrcoef(targets[:, k], probs[:, k] >= by_mcc[k]) >= \
            skm.matthews_corrcoef(targets[:, k], probs[:, k] >= by_f1[k]) - 1e-12
    # The two rules disagree somewhere on this set: the option makes a difference.
    assert not np.allclose(by_mcc, by_f1)
    report_mcc = multilabel_report(targets, probs, by_mcc, classes)
    report_f1 = multilabel_report(targets, probs, by_f1, classes)
    assert report_mcc["macro_mcc"] > report_f1["macro_mcc"]
    assert report_f1["macro_f1"] >= report_mcc["macro_f1"]


def test_mcc_threshold_of_a_label_with_no_negative_keeps_the_default():
    targets = np.array([[1, 0], [1, 1], [1, 0]])
    probs = np.array([[0.9, 0.2], [0.8, 0.7], [0.4, 0.1]])
    thresholds, untuned = tune_thresholds(targets, probs, ["all", "some"], by="mcc")
    assert untuned == ["all"] and thresholds[0] == 0.5 and thresholds[1] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="--threshold-by"):
        tune_thresholds(targets, probs, ["all", "some"], by="auc")


def test_top_one_predicts_the_most_probable_label_when_none_passes():
    probs = np.array([[0.2, 0.4, 0.1], [0.9, 0.1, 0.6], [0.05, 0.01, 0.3]])
    thresholds = [0.5, 0.5, 0.5]
    assert predict_labels(probs, thresholds).tolist() == [[0, 0, 0], [1, 0, 1], [0, 0, 0]]
    assert predict_labels(probs, thresholds, top_one=True).tolist() == [[0, 1, 0], [1, 0, 1], [0, 0, 1]]


def test_top_one_gains_where_every_sequence_has_a_label():
    # Planted: every sequence has exactly one label, and its probability is often under the
    # threshold while still the largest: the fallback recovers those.
    rng = np.random.default_rng(1)
    n, K = 300, 5
    truth = rng.integers(0, K, n)
    targets = np.eye(K, dtype=np.int64)[truth]
    probs = rng.uniform(0, 0.3, (n, K))
    probs[np.arange(n), truth] = rng.uniform(0.25, 0.9, n)
    plain = multilabel_report(targets, probs, [0.5] * K, list("abcde"))
    fallback = multilabel_report(targets, probs, [0.5] * K, list("abcde"), top_one=True)
    assert fallback["top_one"] and not plain["top_one"]
    assert fallback["subset_accuracy"] > plain["subset_accuracy"] + 0.1
    assert fallback["jaccard"] > plain["jaccard"]
    pred = predict_labels(probs, [0.5] * K, top_one=True)
    assert fallback["hamming_accuracy"] == pytest.approx(1 - skm.hamming_loss(targets, pred))


def _dataset(labels, multi=False, partitions=None):
    partitions = partitions or [None] * len(labels)
    records = [Record(f"r{i}", "MKVLA" * (1 + i % 3), lab, part) for i, (lab, part) in enumerate(zip(labels,
                                                                                                     partitions))]
    return SequenceDataset(records, None, "protein", None, multi_label=multi)


def test_balanced_class_weights_follow_the_training_split():
    ds = _dataset(["a"] * 8 + ["b"] * 2 + ["c"] * 6)
    train = np.arange(12)  # a: 8, b: 2, c: 2 (the last four c's are not in training)
    w = class_weights(TrainConfig(data="x", class_weight="balanced"), ds, train)
    assert w.tolist() == pytest.approx([12 / (3 * 8), 12 / (3 * 2), 12 / (3 * 2)])
    assert class_weights(TrainConfig(data="x"), ds, train) is None


def test_balanced_positive_weights_for_multi_label():
    ds = _dataset(["a;b", "a", "a", "b", "a;c"], multi=True)
    w = class_weights(TrainConfig(data="x", class_weight="balanced", multi_label=True), ds, np.arange(5))
    # a: 4 positives, 1 negative; b: 2 and 3; c: 1 and 4.
    assert ds.classes == ["a", "b", "c"]
    assert w.tolist() == pytest.approx([1 / 4, 3 / 2, 4 / 1])


def test_class_weight_file(tmp_path):
    path = tmp_path / "w.tsv"
    path.write_text("# class weights\nCell membrane\t2.5\nNucleus, 1\nGolgi apparatus 4  # rare\n")
    assert read_class_weights(str(path), ["Nucleus", "Cell membrane", "Golgi apparatus"]).tolist() == [1, 2.5, 4]
    with pytest.raises(ValueError, match=r"no weight for 'Peroxisome'"):
        read_class_weights(str(path), ["Nucleus", "Cell membrane", "Golgi apparatus", "Peroxisome"])
    with pytest.raises(ValueError, match=r"line 3: class 'Nucleus' is not in the data"):
        read_class_weights(str(path), ["Cell membrane", "Golgi apparatus"])
    path.write_text("Nucleus -1\n")
    with pytest.raises(ValueError, match=r"line 1: expected 'CLASS WEIGHT' with a positive weight"):
        read_class_weights(str(path), ["Nucleus"])
    with pytest.raises(ValueError, match="cannot read it"):
        read_class_weights(str(tmp_path / "missing.tsv"), ["Nucleus"])


def test_learning_rate_schedules():
    def cfg(**kw):
        return TrainConfig(data="x", lr=1.0, **kw)

    assert learning_rate(cfg(), 7, 3, 100) == 1.0
    assert learning_rate(cfg(schedule="step", lr_step_epochs=2, lr_gamma=0.5), 0, 5, 100) == 0.25
    assert learning_rate(cfg(schedule="cosine"), 50, 0, 100) == pytest.approx(0.5)
    assert learning_rate(cfg(schedule="cosine"), 100, 0, 100) == pytest.approx(0.0)
    warm = cfg(schedule="cosine", warmup_steps=10)
    assert [learning_rate(warm, s, 0, 110) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert learning_rate(warm, 60, 0, 110) == pytest.approx(0.5)


def test_cv_folds_from_a_partition_column_and_stratified():
    labels = ["a"] * 10 + ["b"] * 5
    parts = [str(i % 3) for i in range(14)] + ["test"]
    ds = _dataset(labels, partitions=parts)
    names, folds = cv_folds(ds, TrainConfig(data="x"))
    assert names == ["0", "1", "2"]
    assert [f.tolist() for f in folds] == [list(range(0, 14, 3)), list(range(1, 14, 3)), list(range(2, 14, 3))]
    ds = _dataset(labels)
    names, folds = cv_folds(ds, TrainConfig(data="x", folds=5))
    assert names == list("01234")
    assert sorted(np.concatenate(folds).tolist()) == list(range(15))
    for f in folds:  # stratified: two a's and one b in each
        assert sorted(ds.labels[f].tolist()) == [0, 0, 1]
    with pytest.raises(ValueError, match="at least 3"):
        cv_folds(_dataset(labels, partitions=[str(i % 2) for i in range(15)]), TrainConfig(data="x"))
    with pytest.raises(ValueError, match="non-integer"):
        cv_folds(_dataset(labels, partitions=["x"] * 15), TrainConfig(data="x"))


def test_loss_weights_enter_the_loss():
    import torch

    from sublocal_kernels.training.evaluation import _loss_sum

    class B:
        labels = torch.tensor([0, 1, 1])
        targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])

    logits = torch.tensor([[0.3, -0.2], [0.1, 0.4], [-1.0, 2.0]])
    w = torch.tensor([2.0, 0.5])
    logp = torch.log_softmax(logits, -1)
    expected = -(2.0 * logp[0, 0] + 0.5 * logp[1, 1] + 0.5 * logp[2, 1])
    assert float(_loss_sum(logits, B, False, w)) == pytest.approx(float(expected))
    p = torch.sigmoid(logits)
    bce = -(w * B.targets * torch.log(p) + (1 - B.targets) * torch.log(1 - p)).sum() / 2
    assert float(_loss_sum(logits, B, True, w)) == pytest.approx(float(bce), rel=1e-6)
    assert math.isfinite(float(_loss_sum(logits, B, True)))


def test_fold_spread_skips_the_folds_where_an_auc_is_undefined():
    from sublocal_kernels.training.crossval import HEADLINE, _spread

    def report(auc_rare, macro_auc):
        figures = {k: 0.5 for k in HEADLINE[True]}
        figures["macro_auc"] = macro_auc
        return {**figures, "per_class": {"Rare": {"mcc": 0.1, "auc": auc_rare},
                                         "Common": {"mcc": 0.3, "auc": 0.8}}}

    # Fold 3's test split has no 'Rare' record: its AUC there is undefined, not zero.
    mean, std = _spread([report(0.6, 0.7), report(0.7, 0.75), report(math.nan, 0.8)], multi=True)
    assert mean["auc_per_class"]["Rare"] == pytest.approx(0.65)
    assert std["auc_per_class"]["Rare"] == pytest.approx(np.std([0.6, 0.7], ddof=1))
    assert mean["macro_auc"] == pytest.approx(0.75) and mean["mcc_per_class"]["Common"] == pytest.approx(0.3)
    mean, _ = _spread([report(math.nan, 0.7)], multi=True)
    assert math.isnan(mean["auc_per_class"]["Rare"])
