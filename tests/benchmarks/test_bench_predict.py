"""The prediction benchmark's synthetic proteome: the human proteome's length distribution, the
planted long records, and its shapes."""

import numpy as np

from benchmarks.bench_predict import SPEC, proteome_lengths, proteome_records


def test_proteome_lengths():
    lengths = proteome_lengths(20_000, 35_000)
    assert 395 <= np.median(lengths) <= 435 and 530 <= lengths.mean() <= 590
    assert lengths.max() == 35_000 and (lengths == 35_000).sum() == 1
    assert 3 <= (lengths > 10_000).sum() <= 8 and lengths.min() >= 20
    assert np.array_equal(lengths, proteome_lengths(20_000, 35_000)), "seeded"
    small = proteome_lengths(3, 67)
    assert small.max() == 67 and small.min() >= 20


def test_proteome_records_and_shapes():
    records = proteome_records(50, 400)
    assert [len(r.sequence) for r in records] == proteome_lengths(50, 400).tolist()
    assert set("".join(r.sequence for r in records)) <= set("ACDEFGHIKLMNPQRSTVWY")
    assert set(SPEC.shapes) == {"rlstm-proteome", "alstm-proteome"}
    assert all(s.B == 20_000 and s.hidden == 256 for s in SPEC.shapes.values())
