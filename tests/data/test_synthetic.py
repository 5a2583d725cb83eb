"""The synthetic set: signals where the returned positions say, and nowhere else."""

import re

import numpy as np
import pytest

from sublocal_kernels.data import SYNTHETIC_CLASSES, attention_near_signal, load_records, make_synthetic, write_synthetic

HYDRO = set("LIVFMW")


@pytest.fixture(scope="module")
def synth():
    return make_synthetic(n_per_class=25, min_length=50, max_length=3000, seed=7)


def test_sizes_and_determinism(synth):
    assert len(synth) == 25 * len(SYNTHETIC_CLASSES)
    lengths = [len(r) for r in synth.records]
    assert min(lengths) >= 50 and max(lengths) <= 3000 and max(lengths) > 1000
    again = make_synthetic(n_per_class=25, min_length=50, max_length=3000, seed=7)
    assert [r.sequence for r in again.records] == [r.sequence for r in synth.records]
    assert again.signals == synth.signals


def test_signals_at_returned_positions(synth):
    for r, spans in zip(synth.records, synth.signals):
        s, n = r.sequence, len(r.sequence)
        assert all(0 <= a < b <= n for a, b in spans)
        if r.label == "Cytoplasm":
            assert spans == []
        if r.label in ("Extracellular", "ER"):
            a, b = spans[0]
            assert a == 0 and s[0] == "M" and re.fullmatch(r"A.A", s[b - 3:b])
        if r.label == "ER":
            assert spans[-1] == (n - 8, n) and s.endswith("KDEL") and all(c in "EDT" for c in s[-8:-4])
        else:
            assert not s.endswith("KDEL")
        if r.label == "Peroxisome":
            assert spans == [(n - 8, n)] and s.endswith("SKL") and all(c in "KRA" for c in s[-8:-3])
        else:
            assert not s.endswith("SKL")
        if r.label == "Nucleus":
            (a, b), = spans
            motif = s[a:b]
            assert sum(c in "KR" for c in motif) >= 4 and 0.2 * n - 1 <= a
        if r.label == "Mitochondrion":
            (a, b), = spans
            pre = s[a:b]
            assert a == 0 and "D" not in pre[1:] and "E" not in pre[1:] and sum(c in "RK" for c in pre) >= 4
        if r.label == "Cell.membrane":
            assert 1 <= len(spans) <= 4
            for a, b in spans:
                core = s[a + 1:b - 1]
                assert 19 <= len(core) <= 23 and s[a] in "KR" and s[b - 1] in "KR"


def test_background_has_no_chance_signals(synth):
    for r, spans in zip(synth.records, synth.signals):
        mask = np.zeros(len(r), dtype=bool)
        for a, b in spans:
            mask[a:b] = True
        s = r.sequence
        # No K/R-rich window (NLS-like) and no long hydrophobic run outside the planted spans.
        for i in range(len(s) - 3):
            if not mask[i:i + 4].any():
                assert sum(c in "KR" for c in s[i:i + 4]) <= 2, (r.id, i)
        for i in range(len(s) - 7):
            if not mask[i:i + 8].any():
                assert sum(c in HYDRO for c in s[i:i + 8]) <= 6, (r.id, i)


def test_write_and_read_back(tmp_path, synth):
    fasta, tsv = write_synthetic(synth, tmp_path)
    recs = load_records(fasta)
    assert [(r.id, r.label, r.sequence) for r in recs] == [(r.id, r.label, r.sequence) for r in synth.records]
    lines = open(tsv).read().splitlines()
    assert lines[0] == "id\tlabel\tsignals" and len(lines) == len(synth) + 1


def test_attention_near_signal():
    alpha = np.zeros((3, 100))
    alpha[0, 0:20] = 0.05  # all mass on an N-terminal signal at 0..15
    alpha[1, 50:100] = 0.02  # mass spread over the second half; the signal is at 0..15
    alpha[2, 40] = 1.0
    masses, hits = attention_near_signal(alpha, [100, 100, 100], [[(0, 15)], [(0, 15)], []])
    np.testing.assert_allclose(masses, [1.0, 0.0])
    assert hits.tolist() == [True, False]


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown"):
        make_synthetic(2, classes=("Golgi",))
    with pytest.raises(ValueError, match="min_length"):
        make_synthetic(2, min_length=10)


def test_multilabel_set_plants_both_signals():
    from sublocal_kernels.data import make_multilabel_synthetic

    data = make_multilabel_synthetic(n_per_class=4, n_per_pair=6, min_length=100, max_length=400, seed=3)
    assert data.classes == ("Cytoplasm", "Mitochondrion", "Nucleus", "Peroxisome") and len(data) == 4 * 4 + 3 * 6
    pairs = [(r, s) for r, s in zip(data.records, data.signals) if len(r.labels) == 2]
    assert sorted({r.label for r, _ in pairs}) == ["Mitochondrion;Nucleus", "Mitochondrion;Peroxisome",
                                                   "Nucleus;Peroxisome"]
    for r, spans in pairs:
        assert len(spans) == 2 and spans[0][1] <= spans[1][0], (r.label, spans)  # two separate signals
        n = len(r.sequence)
        if "Peroxisome" in r.labels:
            assert r.sequence.endswith("SKL") and spans[-1] == (n - 8, n)
        if "Mitochondrion" in r.labels:
            start, end = spans[0]
            assert start == 0 and not set(r.sequence[:end]) & set("DE")
        if "Nucleus" in r.labels:
            s, e = spans[1] if "Mitochondrion" in r.labels else spans[0]
            assert 0.2 * n - 1 <= s and e <= 0.8 * n and set(r.sequence[s:e]) & set("KR")
    with pytest.raises(ValueError, match="do not fit in one sequence"):
        make_multilabel_synthetic(pairs=[("ER", "Mitochondrion")])
    with pytest.raises(ValueError, match="min_length must be >= 100"):
        make_multilabel_synthetic(min_length=60)
