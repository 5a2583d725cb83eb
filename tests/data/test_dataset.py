"""Truncation, features, batching by length and the stratified split."""

import collections

import numpy as np
import pytest
import torch

from sublocal_kernels.data import (DataFormatError, LengthBucketSampler, Record, SequenceDataset, collate,
                                   kept_positions, stratified_split, truncate_middle)


def test_truncate_middle():
    s = "ABCDEFGHIJ"
    assert truncate_middle(s, None) == s and truncate_middle(s, 10) == s and truncate_middle(s, 20) == s
    assert truncate_middle(s, 4) == "ABIJ"
    assert truncate_middle(s, 5) == "ABCIJ"  # the odd residue goes to the N-terminal half
    arr = np.arange(1000)
    kept = truncate_middle(arr, 1000 - 1)
    assert len(kept) == 999 and kept[499] == 499 and kept[500] == 501
    t = torch.arange(2500)
    out = truncate_middle(t, 1000)
    assert torch.equal(out, torch.cat([torch.arange(500), torch.arange(2000, 2500)]))
    assert np.array_equal(kept_positions(2500, 1000), out.numpy())
    with pytest.raises(ValueError):
        truncate_middle(s, 1)


def records(lengths, labels):
    rng = np.random.default_rng(0)
    return [Record(f"r{i}", "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), size=n)), lab)
            for i, (n, lab) in enumerate(zip(lengths, labels))]


def test_dataset_full_length_and_truncated(tmp_path):
    recs = records([5, 3000, 12], ["a", "b", "a"])
    full = SequenceDataset(recs)
    assert full.classes == ["a", "b"] and list(full.lengths) == [5, 3000, 12] and list(full.labels) == [0, 1, 0]
    cut = SequenceDataset(recs, max_length=1000)
    assert list(cut.lengths) == [5, 1000, 12]
    assert cut.alphabet.decode(cut.tokens[1]) == truncate_middle(recs[1].sequence, 1000)
    feats = [np.random.rand(len(r.sequence), 4).astype(np.float32) for r in recs]
    path = tmp_path / "f.npz"
    np.savez(path, **{r.id: f for r, f in zip(recs, feats)})
    fds = SequenceDataset(recs, max_length=1000, features=str(path))
    assert fds.num_features == 4
    np.testing.assert_array_equal(fds.features[1], truncate_middle(feats[1], 1000))
    b = collate(fds, [0, 2])
    assert b.tokens.shape == (2, 12) and b.features.shape == (2, 12, 4)
    assert (b.tokens[0, 5:] == 0).all() and (b.features[0, 5:] == 0).all()
    np.testing.assert_array_equal(b.features[1].numpy(), feats[2])


def test_features_errors(tmp_path):
    recs = records([5, 7], ["a", "b"])
    np.savez(tmp_path / "short.npz", r0=np.zeros((5, 2)), r1=np.zeros((6, 2)))
    with pytest.raises(DataFormatError, match=r"short.npz, record 'r1': feature array must have shape \(L=7"):
        SequenceDataset(recs, features=str(tmp_path / "short.npz"))
    np.savez(tmp_path / "missing.npz", r0=np.zeros((5, 2)))
    with pytest.raises(DataFormatError, match="record 'r1': no feature array"):
        SequenceDataset(recs, features=str(tmp_path / "missing.npz"))


def test_unknown_label_in_dataset():
    with pytest.raises(DataFormatError, match="unknown label 'c'"):
        SequenceDataset(records([3], ["c"]), classes=["a", "b"])


def test_bucket_sampler_covers_all_and_keeps_padding_small():
    rng = np.random.default_rng(1)
    lengths = rng.integers(50, 3000, size=1000)
    s = LengthBucketSampler(lengths, batch_size=32, seed=3)
    batches = s.batches(0)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert padded / lengths.sum() < 1.15, "length buckets should keep padding under 15%"
    assert s.batches(0) == batches and s.batches(1) != batches  # seeded, reshuffled per epoch
    assert LengthBucketSampler(lengths, 32, seed=4).batches(0) != batches
    capped = LengthBucketSampler(lengths, 1000, seed=3, max_tokens=20000).batches(0)
    assert all(len(b) * lengths[b].max() <= 20000 or len(b) == 1 for b in capped)


def test_bucket_sampler_shards():
    lengths = np.arange(1, 102)
    full = LengthBucketSampler(lengths, batch_size=10, seed=0, num_replicas=1)
    r0 = LengthBucketSampler(lengths, batch_size=10, seed=0, num_replicas=2, rank=0)
    r1 = LengthBucketSampler(lengths, batch_size=10, seed=0, num_replicas=2, rank=1)
    for g, a, b in zip(r0.batches(), r0, r1):
        assert sorted(a + b) == sorted(g) and len(a) >= 1 and len(b) >= 1
    # The single-item batch (101 = 10 * 10 + 1) is dropped when there are 2 replicas.
    assert len(full) == 11 and len(r0) == 10
    with pytest.raises(ValueError, match="rank"):
        LengthBucketSampler(lengths, num_replicas=2, rank=2)


def test_stratified_split():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 3 + [3] * 1)
    tr, va, te = stratified_split(labels, (0.8, 0.1, 0.1), seed=0)
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(len(labels)))
    c = {name: collections.Counter(labels[p].tolist()) for name, p in (("tr", tr), ("va", va), ("te", te))}
    assert (c["tr"][0], c["va"][0], c["te"][0]) == (40, 5, 5)
    assert (c["tr"][1], c["va"][1], c["te"][1]) == (24, 3, 3)
    assert (c["tr"][2], c["va"][2], c["te"][2]) == (1, 1, 1)  # each part gets one of a 3-member class
    assert c["tr"][3] == 1
    again = stratified_split(labels, (0.8, 0.1, 0.1), seed=0)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again))
    assert not np.array_equal(stratified_split(labels, (0.8, 0.1, 0.1), seed=1)[2], te)
    with pytest.raises(ValueError, match="sum to 1"):
        stratified_split(labels, (0.5, 0.1))


def test_features_file_that_is_not_an_npz(tmp_path):
    from sublocal_kernels.data import load_features

    recs = [Record("r1", "MKV")]
    bad = tmp_path / "f.npz"
    bad.write_text("not numpy")
    with pytest.raises(DataFormatError, match=r"f.npz: not an .npz archive"):
        load_features(str(bad), recs)
    one = tmp_path / "one.npy"
    np.save(one, np.zeros((3, 2)))
    with pytest.raises(DataFormatError, match=r"one.npy: expected an .npz archive"):
        load_features(str(one), recs)
    with pytest.raises(FileNotFoundError, match=r"nope.npz: no such features file"):
        load_features(str(tmp_path / "nope.npz"), recs)


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
def test_features_from_an_embedding_file_are_read_per_batch(tmp_path, suffix, monkeypatch):
    pytest.importorskip("h5py")
    from sublocal_kernels.data import EmbeddingReader, EmbeddingWriter, FeatureView

    recs = records([5, 30, 12], ["a", "b", "a"])
    recs[1].id = "sp|X/1"  # escaped in the file, found by its id
    feats = [np.random.rand(len(r.sequence), 3).astype(np.float32) for r in recs]
    path = tmp_path / f"emb{suffix}"
    with EmbeddingWriter(path, kind="per-residue", model="m", pool="none", dim=3, dtype="float16") as w:
        for r, f in zip(recs, feats):
            w.write(r.id, f)
    reads = []
    get = EmbeddingReader.get
    monkeypatch.setattr(EmbeddingReader, "get", lambda self, rid, n=None: reads.append(rid) or get(self, rid, n))
    ds = SequenceDataset(recs, max_length=10, features=str(path))
    assert isinstance(ds.features, FeatureView) and ds.num_features == 3 and reads == []  # nothing read yet
    b = collate(ds.subset([1, 2]), [0, 1])
    assert reads == ["sp|X/1", "r2"]
    assert b.features.shape == (2, 10, 3) and b.features.dtype == torch.float32
    np.testing.assert_array_equal(b.features[0].numpy(), truncate_middle(feats[1].astype(np.float16), 10))
    np.testing.assert_array_equal(b.features[1].numpy(), truncate_middle(feats[2].astype(np.float16), 10))


def test_embedding_length_mismatch_names_record_and_file(tmp_path):
    pytest.importorskip("h5py")
    from sublocal_kernels.data import EmbeddingWriter

    recs = records([5, 7], ["a", "b"])
    with EmbeddingWriter(tmp_path / "e.h5", kind="per-residue", model="m", pool="none", dim=2) as w:
        w.write("r0", np.zeros((5, 2)))
        w.write("r1", np.zeros((8, 2)))
    with pytest.raises(DataFormatError, match=r"e.h5, record 'r1': feature array must have shape \(L=7, F\), got "
                                              r"\(8, 2\): the embedding's length differs from the sequence's"):
        SequenceDataset(recs, features=str(tmp_path / "e.h5"))
    with EmbeddingWriter(tmp_path / "p.h5", kind="per-protein", model="m", pool="mean", dim=2) as w:
        w.write("r0", np.zeros(2))
    with pytest.raises(DataFormatError, match="p.h5: --features needs per-residue embeddings"):
        SequenceDataset(recs, features=str(tmp_path / "p.h5"))


def test_multi_label_dataset_targets():
    recs = records([5, 6, 7, 8], ["b;a", "a", "c", "a;b"])
    with pytest.raises(DataFormatError, match=r"record 'r0': several labels \('b;a'\): pass --multi-label"):
        SequenceDataset(recs)
    ds = SequenceDataset(recs, multi_label=True)
    assert ds.classes == ["a", "b", "c"]
    np.testing.assert_array_equal(ds.targets, [[1, 1, 0], [1, 0, 0], [0, 0, 1], [1, 1, 0]])
    assert list(ds.labels) == [0, 1, 2, 3] and ds.label_sets == [("b", "a"), ("a",), ("c",), ("a", "b")]
    b = collate(ds.subset([3, 2]), [0, 1])
    np.testing.assert_array_equal(b.targets.numpy(), [[1, 1, 0], [0, 0, 1]])
    with pytest.raises(DataFormatError, match="unknown label 'c'"):
        SequenceDataset(recs, classes=["a", "b"], multi_label=True)
