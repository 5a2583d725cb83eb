"""Multi-label metrics and per-class thresholds, against figures worked out by hand."""

import numpy as np
import pytest

from sublocal_kernels.training.metrics import (format_multilabel_report, multilabel_report, plot_multilabel_confusion,
                                               tune_thresholds)

pytest.importorskip("sklearn")

# 4 sequences, 3 classes (class c never present).
TARGETS = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]])
PROBS = np.array([[0.9, 0.3, 0.1], [0.6, 0.4, 0.2], [0.2, 0.7, 0.6], [0.7, 0.1, 0.3]])


def test_thresholds_maximise_each_class_f1():
    thresholds, untuned = tune_thresholds(TARGETS, PROBS, ["a", "b", "c"])
    # a: positives score 0.9, 0.6, negatives 0.2, 0.7: cut 0.6 gives P 2/3 R 1 (F1 0.8), cut
    # 0.9 gives P 1 R 1/2 (F1 0.67): 0.6. b: positives 0.3, 0.7, negatives 0.4, 0.1: cut 0.3
    # gives P 2/3 R 1 (0.8), 0.7 gives P 1 R 1/2 (0.67): 0.3. c: no positive: 0.5.
    assert thresholds == [0.6, 0.3, 0.5] and untuned == ["c"]
    # A tie goes to the highest threshold: positives 0.9, 0.6, negatives 0.8, 0.7: cut 0.9 gives
    # P 1 R 1/2, cut 0.6 P 1/2 R 1, both F1 2/3 (0.8 and 0.7 give 1/2 and 2/5).
    t, _ = tune_thresholds([[1], [0], [0], [1]], [[0.9], [0.8], [0.7], [0.6]], ["x"])
    assert t == [0.9]


def test_report_equals_the_hand_computation(tmp_path):
    r = multilabel_report(TARGETS, PROBS, [0.6, 0.3, 0.5], ["a", "b", "c"])
    # Predictions: [1,1,0], [1,1,0], [0,1,1], [1,0,0].
    a, b, c = (r["per_class"][k] for k in "abc")
    assert (a["precision"], a["recall"], a["f1"], a["support"]) == pytest.approx((2 / 3, 1, 0.8, 2))
    assert (b["precision"], b["recall"], b["f1"], b["support"]) == pytest.approx((2 / 3, 1, 0.8, 2))
    assert (c["precision"], c["recall"], c["f1"], c["support"]) == (0.0, 0.0, 0.0, 0)
    assert a["confusion"] == [[1, 1], [0, 2]] and c["confusion"] == [[3, 1], [0, 0]]
    # a: tp 2 fp 1 fn 0 tn 1: MCC (2*1 - 1*0) / sqrt(3*2*2*1).
    assert a["mcc"] == pytest.approx(2 / np.sqrt(12))
    # micro: tp 4, fp 3, fn 0: F1 8/11. Macro over classes with support: (0.8 + 0.8) / 2.
    assert r["micro_f1"] == pytest.approx(8 / 11) and r["macro_f1"] == pytest.approx(0.8)
    # Subset accuracy: only row 0 exactly right. Jaccard per sample: 1, 1/2, 1/2, 0 (row 3:
    # empty truth, one false positive).
    assert r["subset_accuracy"] == pytest.approx(0.25)
    assert r["jaccard"] == pytest.approx((1 + 0.5 + 0.5 + 0) / 4)
    text = format_multilabel_report(r)
    assert "micro F1=0.7273" in text and "macro F1=0.8000" in text and text.count("\n") == 5
    pytest.importorskip("matplotlib")
    path = plot_multilabel_confusion(r, str(tmp_path / "c.png"))
    assert open(path, "rb").read(4) == b"\x89PNG"


def test_empty_report():
    r = multilabel_report(np.zeros((0, 2)), np.zeros((0, 2)), [0.5, 0.5], ["a", "b"])
    assert r["n"] == 0 and r["macro_f1"] == 0.0 and r["per_class"]["a"]["confusion"] == [[0, 0], [0, 0]]
