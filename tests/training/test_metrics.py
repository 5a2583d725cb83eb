"""The classification report (sklearn.metrics underneath) against figures worked out by hand."""

import math

import numpy as np
import pytest

from sublocal_kernels.training.metrics import classification_report, confusion_matrix, format_report

pytest.importorskip("sklearn")

# 12 sequences, 3 classes; class c is predicted once and never present.
CM = np.array([[5, 1, 0],
               [2, 3, 1],
               [0, 0, 0]])


def test_figures_equal_the_hand_computation():
    r = classification_report(CM, ["a", "b", "c"])
    assert r["n"] == 12
    assert r["accuracy"] == pytest.approx(8 / 12)
    a, b, c = (r["per_class"][k] for k in "abc")
    # a: tp 5, fp 2, fn 1, tn 4;  b: tp 3, fp 1, fn 3, tn 5;  c: tp 0, fp 1, fn 0, tn 11.
    assert (a["precision"], a["recall"], a["f1"], a["support"]) == pytest.approx((5 / 7, 5 / 6, 10 / 13, 6))
    assert (b["precision"], b["recall"], b["f1"], b["support"]) == pytest.approx((3 / 4, 1 / 2, 6 / 10, 6))
    assert a["mcc"] == pytest.approx((5 * 4 - 2 * 1) / math.sqrt(7 * 6 * 6 * 5))
    assert b["mcc"] == pytest.approx((3 * 5 - 1 * 3) / math.sqrt(4 * 6 * 6 * 8))
    assert (c["mcc"], c["f1"], c["precision"], c["recall"], c["support"]) == (0.0, 0.0, 0.0, 0.0, 0)
    # Gorodkin's R_K: (c n - t.p) / sqrt((n^2 - p.p)(n^2 - t.t)), t = row sums, p = column sums.
    assert r["mcc"] == pytest.approx((8 * 12 - (6 * 7 + 6 * 4)) / math.sqrt((144 - (49 + 16 + 1)) * (144 - 72)))
    # Macro means leave out the class with no support.
    assert r["macro_mcc"] == pytest.approx((a["mcc"] + b["mcc"]) / 2)
    assert r["macro_f1"] == pytest.approx((10 / 13 + 0.6) / 2)


def test_report_text_format():
    assert format_report(classification_report(CM, ["a", "b", "c"])) == "\n".join([
        "n=12  accuracy=0.6667  MCC=0.4003  macro MCC=0.4303  macro F1=0.6846",
        "",
        "class         MCC       F1     prec   recall       n",
        "a          0.5071   0.7692   0.7143   0.8333       6",
        "b          0.3536   0.6000   0.7500   0.5000       6",
        "c          0.0000   0.0000   0.0000   0.0000       0",
        "",
        "confusion matrix (rows: true, columns: predicted)",
        "                0    1    2",
        "a          0    5    1    0",
        "b          1    2    3    1",
        "c          2    0    0    0",
    ])


def test_confusion_matrix_counts_pairs():
    cm = confusion_matrix([0, 0, 1, 2, 2, 1], [0, 1, 1, 2, 0, 1], 4)
    assert cm.dtype == np.int64 and cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    assert confusion_matrix([], [], 2).tolist() == [[0, 0], [0, 0]]
    empty = classification_report(np.zeros((2, 2), dtype=np.int64), ["x", "y"])
    assert (empty["n"], empty["accuracy"], empty["mcc"], empty["macro_f1"]) == (0, 0.0, 0.0, 0.0)
