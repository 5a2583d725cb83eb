"""Embedding files: per-residue or per-protein language-model embeddings, one array per record.

The layout (``docs/embeddings-h5.md`` in this repository) is the one protein embedding tools
write: an HDF5 file (through h5py) with one dataset per record at the root, named by the record
id, or the same idea as a numpy ``.npz`` archive (one array per id).

- An id holding ``/`` (HDF5's path separator) is stored with ``/`` as ``%2F`` and ``%`` as
  ``%25``; HDF5 datasets keep the original id in their ``id`` attribute, and readers look a
  record up by that attribute when it is there, by the (unescaped) name otherwise.
- Shapes: ``(L, D)`` per residue (``L`` the cleaned sequence length, no start/end tokens) or
  ``(D,)`` per protein; the root attribute ``kind`` says which.
- Stored as float32 or float16; read as float32.
- Root attributes ``kind``, ``model``, ``pool``, ``dim`` and ``sublocal_version`` (an ``.npz``
  keeps them as JSON in the entry ``%attrs``, a name no escaped id can take).

Reading is lazy: :class:`EmbeddingReader` opens the file and reads one record when it is asked
for, never the whole file (20,000 proteins x 500 residues x 1024 floats is 40 GB).

Example::

    with EmbeddingWriter("emb.h5", kind="per-residue", model="prot_t5", pool="none", dim=1024) as w:
        w.write("sp|P12345|X", array)           # (L, 1024)
    with open_embeddings("emb.h5") as emb:
        x = emb["sp|P12345|X"]                  # (L, 1024) float32, read now
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile

import numpy as np

from .._optional import require
from .readers import DataFormatError

__all__ = ["EmbeddingWriter", "EmbeddingReader", "open_embeddings", "escape_id", "unescape_id", "KINDS",
           "EMBEDDING_SUFFIXES"]

KINDS = ("per-residue", "per-protein")
HDF5_SUFFIXES = (".h5", ".hdf5")
EMBEDDING_SUFFIXES = HDF5_SUFFIXES + (".npz",)
_DTYPES = {"float32": np.float32, "float16": np.float16}
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_NPZ_ATTRS = "%attrs"  # an escaped id never holds a '%' that is not followed by 25 or 2F
_UNESCAPE = re.compile("%(25|2F)")


def escape_id(record_id: str) -> str:
    """The dataset name for ``record_id``: ``%`` -> ``%25``, then ``/`` -> ``%2F``."""
    return record_id.replace("%", "%25").replace("/", "%2F")


def unescape_id(name: str) -> str:
    """The inverse of :func:`escape_id`."""
    return _UNESCAPE.sub(lambda m: "%" if m.group(1) == "25" else "/", name)


def _suffix(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in EMBEDDING_SUFFIXES:
        raise ValueError(f"{path}: embedding files must end in {', '.join(EMBEDDING_SUFFIXES)}, got {ext or 'no suffix'!r}")
    return ext


def _version() -> str:
    from .. import __version__
    return __version__


class EmbeddingWriter:
    """Write embeddings one record at a time (a context manager).

    Args:
        path: ``.h5``/``.hdf5`` (HDF5 through h5py) or ``.npz``.
        kind: ``"per-residue"`` (arrays ``(L, dim)``) or ``"per-protein"`` (arrays ``(dim,)``).
        model: the embedding model's name or checkpoint path.
        pool: how per-protein vectors were made (``mean``, ``final``, ``unirep``) or ``none``.
        dim: ``D``, the embedding width.
        dtype: ``"float32"`` or ``"float16"`` (halves the file).
        overwrite: replace an existing ``path``; without it an existing file is an error.

    The file is written under a temporary name beside ``path`` and renamed onto ``path`` only by
    a successful :meth:`close`; leaving the ``with`` block by an exception removes it, so a
    half-written file never takes the name.
    """

    def __init__(self, path, *, kind: str, model: str, pool: str, dim: int, dtype: str = "float32",
                 overwrite: bool = False):
        self.path = os.fspath(path)
        self._ext = _suffix(self.path)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if os.path.exists(self.path) and not overwrite:
            raise FileExistsError(f"{self.path}: exists; pass overwrite=True (--overwrite) to replace it")
        self.kind, self.model, self.pool, self.dim, self.dtype = kind, str(model), str(pool), int(dim), dtype
        self.attrs = {"kind": kind, "model": self.model, "pool": self.pool, "dim": self.dim,
                      "sublocal_version": _version()}
        folder = os.path.dirname(os.path.abspath(self.path))
        fd, self._tmp = tempfile.mkstemp(prefix="." + os.path.basename(self.path) + ".", suffix=".part", dir=folder)
        os.close(fd)
        self._names: set[str] = set()
        self._closed = False
        try:
            if self._ext == ".npz":
                self._zip = zipfile.ZipFile(self._tmp, "w", zipfile.ZIP_STORED, allowZip64=True)
                self._h5 = None
            else:
                h5py = require("h5py", "writing HDF5 embedding files")
                self._h5 = h5py.File(self._tmp, "w")
                self._zip = None
                for k, v in self.attrs.items():
                    self._h5.attrs[k] = v
        except BaseException:
            os.unlink(self._tmp)
            raise

    def write(self, record_id: str, array) -> None:
        """Store ``array`` (``(L, dim)`` per residue, ``(dim,)`` per protein) under ``record_id``."""
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")
        if not isinstance(record_id, str) or not record_id or record_id in (".", ".."):
            raise ValueError(f"{self.path}: record id must be a non-empty string other than '.' and '..', "
                             f"got {record_id!r}")
        name = escape_id(record_id)
        if name in self._names:
            raise ValueError(f"{self.path}: record {record_id!r} written twice")
        if hasattr(array, "detach"):
            array = array.detach().cpu().float().numpy()
        a = np.asarray(array)
        want = (None, self.dim) if self.kind == "per-residue" else (self.dim,)
        if a.ndim != len(want) or a.shape[-1] != self.dim:
            shape = "(L, D)" if self.kind == "per-residue" else "(D,)"
            raise ValueError(f"{self.path}: record {record_id!r}: a {self.kind} embedding must have shape {shape} "
                             f"with D={self.dim}, got {a.shape}")
        a = np.ascontiguousarray(a, dtype=_DTYPES[self.dtype])
        if not np.isfinite(a).all():
            raise ValueError(f"{self.path}: record {record_id!r}: embedding holds NaN or inf")
        if self._h5 is not None:
            ds = self._h5.create_dataset(name, data=a)
            ds.attrs["id"] = record_id
        else:
            with self._zip.open(name + ".npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, a, allow_pickle=False)
        self._names.add(name)

    def __len__(self) -> int:
        return len(self._names)

    def close(self) -> None:
        """Finish the file and move it onto ``path``."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._h5 is not None:
                self._h5.close()
            else:
                with self._zip.open(_NPZ_ATTRS + ".npy", "w") as fh:
                    np.lib.format.write_array(fh, np.array(json.dumps(self.attrs)), allow_pickle=False)
                self._zip.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop everything written: the temporary file is removed and ``path`` is left alone."""
        self._closed = True
        for handle in (self._h5, self._zip):
            if handle is not None:
                try:
                    handle.close()
                except Exception:
                    pass
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)

    def __enter__(self) -> "EmbeddingWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class EmbeddingReader:
    """Read an embedding file lazily: each ``reader[record_id]`` reads that record now.

    Attributes: ``path``; ``kind`` (``per-residue``/``per-protein``, from the root attribute or,
    in files without it, from the first array's rank); ``dim`` (``D``); ``attrs`` (the root
    attributes); ``ids`` (the original record ids, in file order).

    ``reader[record_id]`` is a float32 array (``(L, D)`` or ``(D,)``); a missing record, a wrong
    shape or a non-finite value is a :class:`DataFormatError` naming the file and the record.
    :meth:`get` also checks ``L`` against the sequence length.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{self.path}: no such embedding file")
        with open(self.path, "rb") as fh:
            magic = fh.read(len(_HDF5_MAGIC))
        self._h5 = self._npz = None
        # HDF5 by suffix or by signature; anything else is read as an .npz (numpy names the problem).
        if os.path.splitext(self.path)[1].lower() in HDF5_SUFFIXES or magic == _HDF5_MAGIC:
            self._open_h5()
        else:
            self._open_npz()
        if self.kind not in KINDS:
            raise DataFormatError(self.path, None, None, f"root attribute 'kind' must be one of {', '.join(KINDS)}, "
                                  f"got {self.kind!r}")

    def _open_h5(self):
        h5py = require("h5py", "reading HDF5 embedding files")
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as err:
            raise DataFormatError(self.path, None, None, f"not an HDF5 file (h5py says: {err})") from None
        self.attrs = {k: _plain(v) for k, v in self._h5.attrs.items()}
        self._names = {}
        first = None
        for name, obj in self._h5.items():
            if not isinstance(obj, h5py.Dataset):
                continue
            rid = obj.attrs.get("id")
            rid = _plain(rid) if rid is not None else unescape_id(name)
            self._names[str(rid)] = name
            if first is None:
                first = obj.shape
        self._finish(first)

    def _open_npz(self):
        try:
            npz = np.load(self.path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise DataFormatError(self.path, None, None, "not an .npz archive of per-record arrays (numpy.savez); "
                                  f"numpy says: {err}") from None
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise DataFormatError(self.path, None, None, "expected an .npz archive of per-record arrays keyed by id "
                                  "(numpy.savez), got a single .npy array")
        self._npz = npz
        keys = [k for k in npz.files if k != _NPZ_ATTRS]
        if _NPZ_ATTRS in npz.files:
            # Written by EmbeddingWriter: names are escaped ids.
            self.attrs = json.loads(str(npz[_NPZ_ATTRS]))
            self._names = {unescape_id(k): k for k in keys}
        else:
            # A plain numpy.savez archive: keys are the ids as they are.
            self.attrs = {}
            self._names = {k: k for k in keys}
        first = None
        if keys and ("kind" not in self.attrs or "dim" not in self.attrs):
            first = self._shape(keys[0])
        self._finish(first)

    def _shape(self, key):
        # The header of one member, without reading its data.
        with self._npz.zip.open(key + ".npy") as fh:
            major, _ = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            return read(fh)[0]

    def _finish(self, first_shape):
        if "kind" not in self.attrs:
            self.attrs["kind"] = "per-protein" if first_shape is not None and len(first_shape) == 1 else "per-residue"
        if "dim" not in self.attrs and first_shape:
            self.attrs["dim"] = int(first_shape[-1])
        self.kind = str(self.attrs["kind"])
        self.dim = int(self.attrs["dim"]) if "dim" in self.attrs else 0
        self.ids = list(self._names)

    def __contains__(self, record_id) -> bool:
        return record_id in self._names

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self):
        return iter(self.ids)

    def __getitem__(self, record_id) -> np.ndarray:
        name = self._names.get(record_id)
        if name is None:
            raise DataFormatError(self.path, None, record_id, "no embedding for this record id in the file")
        a = self._h5[name][()] if self._h5 is not None else self._npz[name]
        want = 2 if self.kind == "per-residue" else 1
        if a.ndim != want or a.shape[-1] != self.dim or not np.issubdtype(a.dtype, np.floating):
            shape = "(L, D)" if want == 2 else "(D,)"
            raise DataFormatError(self.path, None, record_id, f"a {self.kind} embedding must be a float array of "
                                  f"shape {shape} with D={self.dim}, got {a.dtype} {a.shape}")
        a = a.astype(np.float32, copy=False)
        if not np.isfinite(a).all():
            raise DataFormatError(self.path, None, record_id, "embedding holds NaN or inf")
        return a

    def shape(self, record_id) -> tuple[int, ...]:
        """The stored shape of ``record_id``'s array, from the file's metadata (no data read)."""
        name = self._names.get(record_id)
        if name is None:
            raise DataFormatError(self.path, None, record_id, "no embedding for this record id in the file")
        return tuple(self._h5[name].shape) if self._h5 is not None else tuple(self._shape(name))

    def get(self, record_id, length: int | None = None) -> np.ndarray:
        """``self[record_id]``, and for per-residue files a check that it has ``length`` rows."""
        a = self[record_id]
        if length is not None and self.kind == "per-residue" and a.shape[0] != length:
            raise DataFormatError(self.path, None, record_id, f"embedding has {a.shape[0]} residues but the "
                                  f"sequence has {length} (after the alphabet's cleaning)")
        return a

    def close(self) -> None:
        for handle in (self._h5, self._npz):
            if handle is not None:
                handle.close()
        self._h5 = self._npz = None

    def __enter__(self) -> "EmbeddingReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self):
        # Open handles do not pickle (e.g. into DataLoader workers): a copy reopens the file.
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])


def _plain(v):
    """An HDF5 attribute as a plain Python value."""
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def open_embeddings(path) -> EmbeddingReader:
    """An :class:`EmbeddingReader` over ``path`` (``.h5``/``.hdf5`` or ``.npz``)."""
    return EmbeddingReader(path)
