"""Embedding files (.h5 and .npz): the shared layout, lazy reading, and errors naming file and record."""

import json
import os

import numpy as np
import pytest

from sublocal_kernels import __version__
from sublocal_kernels.data import DataFormatError
from sublocal_kernels.data.embeddings import (EmbeddingWriter, escape_id, open_embeddings,
                                              unescape_id)

h5py = pytest.importorskip("h5py")

IDS = ["plain", "sp|P12345|X_HUMAN", "a/b", "50%/x", "%2F", "x%25y"]


def _arrays(dim, rng, per_residue=True):
    return {rid: rng.standard_normal((rng.integers(1, 9), dim) if per_residue else (dim,)).astype(np.float32)
            for rid in IDS}


def test_escape_round_trips_and_matches_the_layout():
    assert escape_id("a/b") == "a%2Fb" and escape_id("50%") == "50%25"
    assert escape_id("%2F") == "%252F"
    for rid in IDS + ["%", "/", "%%//", "%252F/"]:
        assert unescape_id(escape_id(rid)) == rid
        assert "/" not in escape_id(rid)


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_round_trip(tmp_path, suffix, dtype):
    rng = np.random.default_rng(0)
    arrays = _arrays(5, rng)
    path = tmp_path / f"emb{suffix}"
    with EmbeddingWriter(path, kind="per-residue", model="m.pt", pool="none", dim=5, dtype=dtype) as w:
        for rid, a in arrays.items():
            w.write(rid, a)
    assert sorted(os.listdir(tmp_path)) == [path.name]  # no temporary left behind
    with open_embeddings(path) as emb:
        assert emb.kind == "per-residue" and emb.dim == 5 and len(emb) == len(IDS)
        assert emb.attrs["model"] == "m.pt" and emb.attrs["pool"] == "none" and emb.attrs["dim"] == 5
        assert emb.attrs["sublocal_version"] == __version__
        assert sorted(emb.ids) == sorted(IDS) and all(r in emb for r in IDS) and "nope" not in emb
        for rid, a in arrays.items():
            got = emb[rid]
            assert got.dtype == np.float32 and got.shape == a.shape
            np.testing.assert_array_equal(got, a.astype(dtype).astype(np.float32))
            if dtype == "float16":
                assert not np.array_equal(got, a)  # really stored at half precision


def test_h5_layout_is_the_documented_one(tmp_path):
    path = tmp_path / "emb.h5"
    with EmbeddingWriter(path, kind="per-protein", model="esm", pool="mean", dim=3, dtype="float16") as w:
        w.write("a/b", np.ones(3))
        w.write("50%", np.zeros(3))
    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == ["50%25", "a%2Fb"]
        assert f["a%2Fb"].attrs["id"] == "a/b" and f["a%2Fb"].dtype == np.float16 and f["a%2Fb"].shape == (3,)
        assert {k: f.attrs[k] for k in ("kind", "model", "pool", "dim")} == {
            "kind": "per-protein", "model": "esm", "pool": "mean", "dim": 3}
        assert f.attrs["sublocal_version"] == __version__


def test_reads_files_written_by_other_tools(tmp_path):
    # A ProtT5-style file: datasets named by id, no `id` attribute, no root attributes.
    path = tmp_path / "t5.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("P1", data=np.ones((4, 6), np.float16))
        f.create_dataset("Q%2F2", data=np.zeros((2, 6), np.float32))
        f.create_dataset("named", data=np.zeros((3, 6))).attrs["id"] = "real id"
    with open_embeddings(path) as emb:
        assert emb.kind == "per-residue" and emb.dim == 6
        assert set(emb.ids) == {"P1", "Q/2", "real id"}
        assert emb["P1"].dtype == np.float32 and emb["Q/2"].shape == (2, 6) and emb["real id"].shape == (3, 6)
    # A plain numpy.savez archive: keys are ids as they are.
    np.savez(tmp_path / "plain.npz", **{"a%2Fb": np.ones((2, 4)), "c": np.ones((5, 4))})
    with open_embeddings(tmp_path / "plain.npz") as emb:
        assert set(emb.ids) == {"a%2Fb", "c"} and emb.dim == 4 and emb.kind == "per-residue"
    np.savez(tmp_path / "vec.npz", a=np.ones(7))
    with open_embeddings(tmp_path / "vec.npz") as emb:
        assert emb.kind == "per-protein" and emb.dim == 7


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
def test_missing_record_and_length_mismatch_name_record_and_file(tmp_path, suffix):
    path = tmp_path / f"emb{suffix}"
    with EmbeddingWriter(path, kind="per-residue", model="m", pool="none", dim=2) as w:
        w.write("r1", np.zeros((4, 2)))
    with open_embeddings(path) as emb:
        with pytest.raises(DataFormatError, match=rf"emb{suffix}, record 'r2': no embedding for this record"):
            emb["r2"]
        with pytest.raises(DataFormatError, match=rf"emb{suffix}, record 'r1': embedding has 4 residues but the "
                                                  r"sequence has 5"):
            emb.get("r1", 5)
        assert emb.get("r1", 4).shape == (4, 2)


def test_bad_arrays_are_errors(tmp_path):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f.attrs["kind"] = "per-residue"
        f.attrs["dim"] = 3
        f.create_dataset("wide", data=np.zeros((2, 4)))
        f.create_dataset("nan", data=np.full((2, 3), np.nan))
    with open_embeddings(path) as emb:
        with pytest.raises(DataFormatError, match=r"record 'wide': a per-residue embedding must be a float array "
                                                  r"of shape \(L, D\) with D=3, got float64 \(2, 4\)"):
            emb["wide"]
        with pytest.raises(DataFormatError, match="record 'nan': embedding holds NaN or inf"):
            emb["nan"]
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(DataFormatError, match="junk.h5: not an HDF5 file"):
        open_embeddings(tmp_path / "junk.h5")
    with pytest.raises(FileNotFoundError, match="no such embedding file"):
        open_embeddings(tmp_path / "none.h5")
    with pytest.raises(ValueError, match="must end in .h5, .hdf5, .npz"):
        EmbeddingWriter(tmp_path / "x.txt", kind="per-residue", model="m", pool="none", dim=2)
    (tmp_path / "x.txt").write_text("text")
    with pytest.raises(DataFormatError, match="x.txt: not an .npz archive"):
        open_embeddings(tmp_path / "x.txt")


def test_writer_refuses_to_overwrite_and_leaves_nothing_on_error(tmp_path):
    path = tmp_path / "e.npz"
    path.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="e.npz: exists; pass overwrite=True"):
        EmbeddingWriter(path, kind="per-residue", model="m", pool="none", dim=2)
    assert path.read_bytes() == b"keep me"
    with pytest.raises(RuntimeError):
        with EmbeddingWriter(path, kind="per-residue", model="m", pool="none", dim=2, overwrite=True) as w:
            w.write("a", np.zeros((1, 2)))
            raise RuntimeError("interrupted")
    assert path.read_bytes() == b"keep me" and os.listdir(tmp_path) == ["e.npz"]
    with EmbeddingWriter(path, kind="per-residue", model="m", pool="none", dim=2, overwrite=True) as w:
        w.write("a", np.zeros((1, 2)))
        with pytest.raises(ValueError, match="record 'a' written twice"):
            w.write("a", np.zeros((1, 2)))
        with pytest.raises(ValueError, match=r"record 'b': a per-residue embedding must have shape \(L, D\) with "
                                             r"D=2, got \(3,\)"):
            w.write("b", np.zeros(3))
        with pytest.raises(ValueError, match="record 'c': embedding holds NaN"):
            w.write("c", np.full((1, 2), np.inf))
    assert len(open_embeddings(path)) == 1
    with pytest.raises(ValueError, match="kind must be one of"):
        EmbeddingWriter(tmp_path / "k.h5", kind="residue", model="m", pool="none", dim=2)
    with pytest.raises(ValueError, match="dtype must be one of"):
        EmbeddingWriter(tmp_path / "k.h5", kind="per-residue", model="m", pool="none", dim=2, dtype="float64")


def test_reading_is_lazy(tmp_path, monkeypatch):
    # Opening the file and listing ids reads no array; each item reads exactly its own record.
    path = tmp_path / "lazy.npz"
    with EmbeddingWriter(path, kind="per-residue", model="m", pool="none", dim=2) as w:
        for i in range(20):
            w.write(f"r{i}", np.full((3, 2), i))
    reads = []
    original = np.lib.format.read_array

    def counting(*a, **k):
        out = original(*a, **k)
        reads.append(out.shape)
        return out

    monkeypatch.setattr(np.lib.format, "read_array", counting)
    with open_embeddings(path) as emb:
        assert len(emb.ids) == 20
        assert reads == [()]  # only the %attrs entry
        assert emb["r7"][0, 0] == 7
        assert reads == [(), (3, 2)]


def test_reader_pickles_by_reopening(tmp_path):
    import pickle
    path = tmp_path / "p.h5"
    with EmbeddingWriter(path, kind="per-residue", model="m", pool="none", dim=2) as w:
        w.write("x", np.ones((2, 2)))
    emb = pickle.loads(pickle.dumps(open_embeddings(path)))
    assert emb["x"].shape == (2, 2)
    emb.close()
    assert json.loads(json.dumps(emb.attrs))["dim"] == 2
