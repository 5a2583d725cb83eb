"""Per-protein features (`(D,)` per record, `kind = per-protein`) in the data set: read lazily,
stacked into `(B, D)` batches, per-residue files averaged for a per-protein model, and the errors
(missing record, width, kind) naming the file and the record."""

import numpy as np
import pytest

from sublocal_kernels.data import (DataFormatError, EmbeddingWriter, FeatureView, Record, SequenceDataset, collate,
                                   load_features)


def records(lengths, labels=None):
    labels = labels or ["a", "b"] * len(lengths)
    return [Record(f"r{i}", "ACDEFGHIKLMNPQRSTVWY"[:n], labels[i]) for i, n in enumerate(lengths)]


def write(path, kind, arrays, dim):
    with EmbeddingWriter(path, kind=kind, model="m", pool="mean" if kind == "per-protein" else "none", dim=dim) as w:
        for rid, a in arrays.items():
            w.write(rid, a)
    return str(path)


def test_per_protein_vectors_are_read_lazily_and_stacked(tmp_path):
    recs = records([5, 9, 3])
    vectors = {r.id: np.arange(4, dtype=np.float32) + 10 * k for k, r in enumerate(recs)}
    path = write(tmp_path / "p.npz", "per-protein", vectors, 4)
    view = load_features(path, recs, "per-protein")
    assert isinstance(view, FeatureView) and view.kind == "per-protein" and view.width == 4
    ds = SequenceDataset(recs, features=view)
    assert ds.feature_kind == "per-protein" and ds.num_features == 4 and isinstance(ds.features, FeatureView)
    np.testing.assert_array_equal(ds[1][2], vectors["r1"])
    b = collate(ds, [2, 0])
    assert b.features.shape == (2, 4) and b.tokens.shape == (2, 5)
    np.testing.assert_array_equal(b.features.numpy(), [vectors["r2"], vectors["r0"]])
    sub = ds.subset([1])
    assert sub.feature_kind == "per-protein"
    np.testing.assert_array_equal(collate(sub, [0]).features.numpy(), [vectors["r1"]])
    # The same from the path, and from in-memory vectors.
    ds2 = SequenceDataset(recs, features=path, feature_kind="per-protein")
    np.testing.assert_array_equal(collate(ds2, [0, 1, 2]).features.numpy(), collate(ds, [0, 1, 2]).features.numpy())
    ds3 = SequenceDataset(recs, features=[vectors[r.id] for r in recs])
    assert ds3.feature_kind == "per-protein"
    np.testing.assert_array_equal(collate(ds3, [0, 1, 2]).features.numpy(), collate(ds, [0, 1, 2]).features.numpy())


def test_per_residue_file_is_averaged_for_a_per_protein_model(tmp_path):
    recs = records([5, 9])
    rng = np.random.default_rng(0)
    arrays = {r.id: rng.standard_normal((len(r.sequence), 3)).astype(np.float32) for r in recs}
    path = write(tmp_path / "r.npz", "per-residue", arrays, 3)
    ds = SequenceDataset(recs, features=path, feature_kind="per-protein", max_length=4)
    assert ds.feature_kind == "per-protein"
    b = collate(ds, [0, 1])
    # The whole sequence's mean, whatever the token truncation.
    np.testing.assert_allclose(b.features.numpy(), [arrays["r0"].mean(0), arrays["r1"].mean(0)], rtol=1e-6)


def test_missing_record_names_record_and_file(tmp_path):
    recs = records([5, 9, 3])
    path = write(tmp_path / "p.npz", "per-protein", {"r0": np.zeros(4), "r2": np.zeros(4)}, 4)
    with pytest.raises(DataFormatError, match=r"p.npz, record 'r1': no feature vector for this record id for "
                                              r"--model mlp"):
        load_features(path, recs, "per-protein", "mlp")


def test_width_mismatch_names_record_and_file(tmp_path):
    recs = records([5, 9])
    path = str(tmp_path / "p.npz")
    # Two widths in one file (written by hand: the writer checks its own width).
    np.savez(path, r0=np.zeros(4, np.float32), r1=np.zeros(5, np.float32))
    with pytest.raises(DataFormatError, match=r"p.npz, record 'r1': feature width 5 differs from the first "
                                              r"record's 4"):
        load_features(path, recs, "per-protein")


def test_per_protein_file_refused_for_a_per_residue_model(tmp_path):
    recs = records([5, 9])
    path = write(tmp_path / "p.npz", "per-protein", {"r0": np.zeros(2), "r1": np.zeros(2)}, 2)
    with pytest.raises(DataFormatError, match=r"p.npz: --features needs per-residue embeddings \(L, D\) for --model "
                                              r"alstm; this file holds per-protein vectors \(D,\).*--model mlp"):
        load_features(path, recs, "per-residue", "alstm")
    with pytest.raises(ValueError, match="kind must be"):
        load_features(path, recs, "per-sequence")
