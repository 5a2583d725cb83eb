"""Random access to FASTA files larger than memory: an on-disk index of record offsets.

:class:`FastaIndex` scans a FASTA file once, in binary and line by line (constant memory), and
records for every record the byte offset of its header, the header's line number, its length
after the alphabet's policy and whether it holds a non-canonical letter (``X``, ``B``, ``Z``,
``J``). Letters the alphabet does not accept are reported during the scan, naming the file,
line and record, so a long training run cannot stop on a bad record halfway. The arrays are
saved as ``.npy`` files in a cache directory, keyed by the file's absolute path, size and
modification time, and memory-mapped when read back: a second run over the same file does not
scan it again. :meth:`FastaIndex.record` seeks to one record and reads only it.

Gzipped FASTA cannot be indexed (a gzip stream has no random access): decompress it first.
The index itself costs 21 bytes per record (UniRef50's ~60 million records: ~1.3 GB on disk).
"""

from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np

from .alphabets import get_alphabet
from .readers import GZIP_MAGIC, DataFormatError, Record, _make_record

__all__ = ["FastaIndex", "NONCANONICAL"]

NONCANONICAL = "XBZJ"
_FIELDS = ("offsets", "lines", "lengths", "noncanonical")


def _cache_key(path: str) -> str:
    st = os.stat(path)
    return hashlib.sha256(f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:20]


class FastaIndex:
    """Offsets, header lines, cleaned lengths and the non-canonical flag of every record of
    one (uncompressed) FASTA file.

    Args:
        path: the FASTA file.
        alphabet: its alphabet (``"protein"``); the lengths and checks follow its policy.
        cache_dir: where the index is kept (``None``: built in memory only).

    Attributes ``offsets``, ``lines``, ``lengths`` (int64) and ``noncanonical`` (bool) are
    ``(N,)`` arrays, memory-mapped when they come from the cache.
    """

    def __init__(self, path, alphabet="protein", cache_dir=None):
        self.path = os.fspath(path)
        self.alphabet = get_alphabet(alphabet)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{self.path}: no such file")
        with open(self.path, "rb") as fh:
            if fh.read(2) == GZIP_MAGIC:
                raise DataFormatError(self.path, None, None, "gzip-compressed FASTA cannot be indexed for random "
                                      "access: decompress it first (gunzip -k)")
        arrays = None
        folder = None
        if cache_dir is not None:
            folder = os.path.join(os.fspath(cache_dir), f"{os.path.basename(self.path)}.{_cache_key(self.path)}")
            arrays = self._load(folder)
        if arrays is None:
            arrays = self._scan()
            if folder is not None:
                self._save(folder, arrays)
        self.offsets, self.lines, self.lengths, self.noncanonical = arrays

    def __len__(self) -> int:
        return len(self.offsets)

    @staticmethod
    def _load(folder: str):
        try:
            return tuple(np.load(os.path.join(folder, f"{name}.npy"), mmap_mode="r", allow_pickle=False)
                         for name in _FIELDS)
        except (OSError, ValueError):
            return None

    @staticmethod
    def _save(folder: str, arrays) -> None:
        """Into a temporary folder renamed into place: a reader sees all four arrays or none."""
        parent = os.path.dirname(folder)
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(folder)}.", dir=parent)
        for name, a in zip(_FIELDS, arrays):
            np.save(os.path.join(tmp, f"{name}.npy"), a, allow_pickle=False)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process saved the same index first
            for name in _FIELDS:
                os.unlink(os.path.join(tmp, f"{name}.npy"))
            os.rmdir(tmp)

    def _scan(self):
        accepted = set((self.alphabet.tokens + self.alphabet.tokens.lower() + "".join(self.alphabet.aliases)
                        + "".join(self.alphabet.aliases).lower()).encode())
        letters = bytes(sorted(accepted))
        odd = set(NONCANONICAL.encode() + NONCANONICAL.lower().encode())
        stop = self.alphabet.strip_trailing_stop
        offsets, lines, lengths, flags = [], [], [], []
        record = None  # [id, length, noncanonical, line of a '*' or None]
        pos = 0

        def finish():
            if record is not None:
                if record[1] == 0:
                    raise DataFormatError(self.path, lines[-1], record[0], f"empty {self.alphabet.name} sequence")
                lengths.append(record[1])
                flags.append(record[2])

        with open(self.path, "rb") as fh:
            for n, raw in enumerate(fh, 1):
                start, pos = pos, pos + len(raw)
                if raw.startswith(b">"):
                    finish()
                    rid = raw[1:].split(None, 1)[0].decode("utf-8", "replace") if raw[1:].strip() else ""
                    if not rid:
                        raise DataFormatError(self.path, n, None, "empty header: expected '>ID ...'")
                    offsets.append(start)
                    lines.append(n)
                    record = [rid, 0, False, None]
                    continue
                body = b"".join(raw.split())
                if not body or (record is None and raw.startswith(b";")):
                    continue  # as the FASTA reader: ';' comments only before the first record
                if record is None:
                    raise DataFormatError(self.path, n, None, f"expected a FASTA header starting with '>', got "
                                          f"{raw.strip()[:40]!r}")
                if record[3] is not None:
                    raise DataFormatError(self.path, record[3], record[0], "a '*' (stop) is only accepted as "
                                          "the last letter")
                if stop and body.endswith(b"*"):
                    body = body[:-1]
                    record[3] = n
                bad = body.translate(None, letters)
                if bad:
                    letter = chr(bad[0])
                    col = body.index(bad[:1]) + 1
                    raise DataFormatError(self.path, n, record[0], f"letter {letter!r} at position "
                                          f"{record[1] + col} is not in the {self.alphabet.name} alphabet "
                                          f"(accepted: {self.alphabet.tokens}, any case)")
                record[1] += len(body)
                if not record[2] and any(b in odd for b in body):
                    record[2] = True
            finish()
        if not offsets:
            raise DataFormatError(self.path, None, None, "no FASTA records (no line starts with '>')")
        return (np.asarray(offsets, dtype=np.int64), np.asarray(lines, dtype=np.int64),
                np.asarray(lengths, dtype=np.int64), np.asarray(flags, dtype=bool))

    def record(self, i: int, fh=None) -> Record:
        """Record ``i`` (0-based), read from its offset; ``fh``: an open binary handle to reuse."""
        own = fh is None
        if own:
            fh = open(self.path, "rb")
        try:
            fh.seek(int(self.offsets[i]))
            header = fh.readline().decode("utf-8", "replace")[1:].strip()
            parts = []
            for raw in fh:
                if raw.startswith(b">"):
                    break
                parts.append(raw.decode("ascii", "replace"))
        finally:
            if own:
                fh.close()
        rid = header.split(None, 1)[0]
        return _make_record(self.path, int(self.lines[i]), rid, header, "".join("".join(parts).split()),
                            self.alphabet, "plain", None, None)
