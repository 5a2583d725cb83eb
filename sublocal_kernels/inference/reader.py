"""Reading a FASTA file of any size for prediction: one record at a time, a bad record reported
(file, line, id) without ending the stream, and the cheap passes over the file's bytes (its
SHA-256 and size for ``--resume``, its record count for the progress bar).

The records are cleaned by the same code as the training readers
(:mod:`sublocal_kernels.data.readers`), so a record predicts exactly as it would train; only the
splitting into records lives here, because :func:`~sublocal_kernels.data.readers.iter_fasta`
lists every header's line first (memory per record) and cannot continue past a bad record.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from typing import Iterator

from ..data.alphabets import get_alphabet
from ..data.readers import GZIP_MAGIC, DataFormatError, Record, _lines, _make_record, not_a_header, open_text

__all__ = ["RawRecord", "raw_records", "records_from", "file_digest", "count_records"]

_BLOCK = 1 << 20


@dataclass
class RawRecord:
    """One FASTA record as written: ``position`` (0-based, counting every record of the file,
    bad ones too), the header's 1-based ``line``, the header text after ``>`` and the residues
    with white space removed (not yet checked against an alphabet)."""

    position: int
    line: int
    description: str
    sequence: str


def raw_records(path) -> Iterator[RawRecord]:
    """The records of ``path`` (plain or gzip) in order, holding one at a time. Text before the
    first header, or a file without a header, raises :class:`DataFormatError`."""
    path = os.fspath(path)
    position = 0
    header = None
    description = ""
    parts: list[str] = []
    with open_text(path) as fh:
        for n, line in enumerate(_lines(fh, path), 1):
            if line.startswith(">"):
                if header is not None:
                    yield RawRecord(position, header, description, "".join(parts))
                    position += 1
                header, description, parts = n, line[1:].strip(), []
            elif header is None:
                if line.strip() and not line.startswith(";"):
                    raise not_a_header(path, n, line)
            else:
                parts.append("".join(line.split()))
    if header is None:
        raise DataFormatError(path, None, None, "no FASTA records (no line starts with '>')")
    yield RawRecord(position, header, description, "".join(parts))


def records_from(path, alphabet, start: int = 0) -> Iterator[tuple[int, Record | DataFormatError]]:
    """``(position, Record)`` for each record from ``start`` on, or ``(position, error)`` for a
    malformed one (the :class:`DataFormatError` names the file, line and id); the stream goes on
    after a bad record. Records before ``start`` are split but not checked (a resumed run)."""
    alphabet = get_alphabet(alphabet)
    path = os.fspath(path)
    for raw in raw_records(path):
        if raw.position < start:
            continue
        rec_id = raw.description.split(None, 1)[0] if raw.description else ""
        try:
            yield raw.position, _make_record(path, raw.line, rec_id, raw.description, raw.sequence, alphabet,
                                             "plain", None, None)
        except DataFormatError as err:
            yield raw.position, err


def file_digest(path) -> tuple[int, str]:
    """``(size in bytes, SHA-256 hex of the bytes)`` of ``path`` as stored (compressed, for gzip)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def count_records(path) -> int | None:
    """The number of lines starting with ``>`` (a FASTA file's records), by a pass over the bytes
    (decompressed for gzip); None for something that is not a regular file (a pipe)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as probe:
        gz = probe.read(2) == GZIP_MAGIC
    opener = gzip.open if gz else open
    count, previous = 0, b"\n"
    try:
        with opener(path, "rb") as fh:
            first = True
            while block := fh.read(_BLOCK):
                if first and block.startswith(b"\xef\xbb\xbf"):  # a byte-order mark before the first '>'
                    block = b"\n" + block[3:]
                    previous = b""
                first = False
                count += (previous + block).count(b"\n>")
                previous = block[-1:]
    except (OSError, EOFError):  # a damaged gzip stream: the reader reports it with its context
        return None
    return count
