"""Reading labelled sequences: FASTA (through ``Bio.SeqIO``) with DeepLoc-style headers, a
directory of per-class FASTA files, or a TSV/CSV table.

Every reader returns :class:`Record` objects whose sequences are already cleaned by the
alphabet's policy (see :mod:`sublocal_kernels.data.alphabets`). Anything malformed raises
:class:`DataFormatError`, whose message names the file, the 1-based line and the record.

Formats:

- ``deeploc``: FASTA whose header is ``>ACCESSION LOCATION-CODE [test]``, e.g.
  ``>Q9H400 Cell.membrane-M test``: the location is the label, ``CODE`` is ``M`` (membrane),
  ``S`` (soluble) or ``U`` (unknown), and a trailing ``test`` puts the record in the test
  partition.
- ``directory``: a directory of FASTA files, one per class (the MultiLoc distribution); the
  file name without its extension is the label; the header's first word is the id.
- ``table``: a ``.tsv``/``.tab`` (tab) or ``.csv`` (comma) file with a header row naming the
  columns ``id``, ``sequence`` and ``label`` (any order, any case; an optional ``partition``
  column; other columns are ignored).
- ``fasta``: FASTA without labels (prediction input); the header's first word is the id.

Any of these files may be gzip-compressed (recognised by its first bytes, whatever its name;
``.fasta.gz`` and ``.tsv.gz`` names count as ``.fasta`` and ``.tsv``): it is decompressed as it
is read, never in full. A UTF-8 byte-order mark at the start of a file is ignored.
"""

from __future__ import annotations

import csv
import gzip
import os
from dataclasses import dataclass
from typing import Iterator

from .._optional import require
from .alphabets import Alphabet, SequenceError, get_alphabet

__all__ = ["Record", "DataFormatError", "DataWarning", "open_text", "read_fasta", "read_deeploc", "read_directory", "read_table",
           "load_records", "detect_format", "FASTA_SUFFIXES", "TABLE_SUFFIXES", "iter_fasta"]

FASTA_SUFFIXES = (".fasta", ".fa", ".faa", ".fas", ".fna", ".ffn", ".frn", ".seq")
TABLE_SUFFIXES = (".tsv", ".tab", ".csv")
DEEPLOC_CODES = ("M", "S", "U")


class DataFormatError(ValueError):
    """A data file is malformed. ``path``, ``line`` (1-based) and ``record`` say where."""

    def __init__(self, path, line: int | None, record: str | None, message: str):
        self.path, self.line, self.record, self.reason = str(path), line, record, message
        where = f"{path}"
        if line is not None:
            where += f", line {line}"
        if record is not None:
            where += f", record {record!r}"
        super().__init__(f"{where}: {message}")


class DataWarning(UserWarning):
    """The data can be used, but not quite as asked (e.g. a class too small for the split)."""


GZIP_MAGIC = b"\x1f\x8b"


def open_text(path, newline: str | None = None):
    """``path`` as a text stream: gzip files (by their magic bytes) are decompressed as they are
    read; a UTF-8 byte-order mark is dropped; bytes that are not UTF-8 read as U+FFFD, which the
    alphabets then report with their position."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == GZIP_MAGIC:
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="replace", newline=newline)
    return open(path, "r", encoding="utf-8-sig", errors="replace", newline=newline)


def _lines(fh, path):
    """The lines of ``fh``, with a truncated or damaged gzip stream reported against ``path``."""
    try:
        yield from fh
    except (EOFError, gzip.BadGzipFile) as err:
        raise DataFormatError(path, None, None, f"damaged gzip file ({err})") from None


def _stem_suffix(name: str) -> tuple[str, str]:
    """``("x", ".fasta")`` for ``x.fasta`` and ``x.fasta.gz``: the name without ``.gz`` split."""
    base = name[:-3] if name.lower().endswith(".gz") else name
    stem, ext = os.path.splitext(base)
    return stem, ext.lower()


@dataclass
class Record:
    """One sequence. ``sequence`` is cleaned (see the alphabet's policy); ``label`` is None for
    unlabelled input; ``partition`` is ``"test"`` for DeepLoc records flagged ``test`` (or the
    table's partition column), else None; ``membrane`` is DeepLoc's ``M``/``S``/``U`` code;
    ``source`` is ``(path, line)`` of the header or row."""

    id: str
    sequence: str
    label: str | None = None
    partition: str | None = None
    membrane: str | None = None
    source: tuple[str, int] | None = None

    def __len__(self) -> int:
        return len(self.sequence)


def _header_lines(path) -> tuple[list[int], int]:
    """1-based line numbers of every ``>`` header, and the number of lines. Raises when
    non-blank text comes before the first header (``Bio.SeqIO`` would skip it silently)."""
    headers = []
    n = 0
    with open_text(path) as fh:
        for n, line in enumerate(_lines(fh, path), 1):
            if line.startswith(">"):
                headers.append(n)
            elif not headers and line.strip() and not line.startswith(";"):
                raise not_a_header(path, n, line)
    return headers, n


def not_a_header(path, n: int, line: str) -> DataFormatError:
    """The error for non-blank text on line ``n`` before a FASTA file's first header."""
    if "\ufffd" in line:
        return DataFormatError(path, n, None, "not UTF-8 text: a compressed file other than gzip? "
                               "Decompress it (gzip is read as it is)")
    return DataFormatError(path, n, None, f"expected a FASTA header starting with '>', got {line.strip()[:40]!r}")


def _locate(path, header_line: int, position: int) -> int:
    """The 1-based line holding residue ``position`` (0-based) of the record whose header is on
    ``header_line``; only called to report an error."""
    seen = 0
    with open_text(path) as fh:
        for n, line in enumerate(fh, 1):
            if n <= header_line:
                continue
            width = len("".join(line.split()))
            if seen + width > position:
                return n
            seen += width
    return header_line


def iter_fasta(path, alphabet="protein", header: str = "plain", classes=None, label: str | None = None
               ) -> Iterator[Record]:
    """Stream the records of one FASTA file (constant memory; ``sublocal predict`` uses this).

    ``header``: ``"plain"`` (id = first word, no label; ``label`` is given to every record) or
    ``"deeploc"`` (see the module docstring). ``classes``: when given, a label outside it is an
    error.
    """
    alphabet = get_alphabet(alphabet)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    headers, _ = _header_lines(path)
    if not headers:
        raise DataFormatError(path, None, None, "no FASTA records (no line starts with '>')")
    with open_text(path) as fh:
        for i, rec in enumerate(require("Bio.SeqIO", "reading FASTA").parse(fh, "fasta")):
            line = headers[i]
            yield _make_record(path, line, rec.id, rec.description, str(rec.seq), alphabet, header, classes, label)


def _make_record(path, line, rec_id, description, seq, alphabet: Alphabet, header, classes, label) -> Record:
    if not rec_id:
        raise DataFormatError(path, line, None, "empty header: expected '>ID ...'")
    partition = membrane = None
    if header == "deeploc":
        fields = description.split()
        if len(fields) < 2 or len(fields) > 3:
            raise DataFormatError(path, line, rec_id, "DeepLoc header must be '>ACCESSION LOCATION-CODE [test]' "
                                  f"(e.g. '>Q9H400 Cell.membrane-M test'), got {description!r}")
        loc, sep, code = fields[1].rpartition("-")
        if not sep or not loc or code not in DEEPLOC_CODES:
            raise DataFormatError(path, line, rec_id, f"DeepLoc location field must be LOCATION-CODE with CODE in "
                                  f"{'/'.join(DEEPLOC_CODES)}, got {fields[1]!r}")
        if len(fields) == 3:
            if fields[2].lower() != "test":
                raise DataFormatError(path, line, rec_id, f"the third DeepLoc header field may only be 'test', "
                                      f"got {fields[2]!r}")
            partition = "test"
        label, membrane = loc, code
    elif header != "plain":
        raise ValueError(f"header must be 'plain' or 'deeploc', got {header!r}")
    if classes is not None and label is not None and label not in classes:
        raise DataFormatError(path, line, rec_id, f"unknown label {label!r}; known: {', '.join(classes)}")
    try:
        clean = alphabet.clean(seq)
    except SequenceError as err:
        at = line if err.position is None else _locate(path, line, err.position)
        raise DataFormatError(path, at, rec_id, str(err)) from None
    return Record(rec_id, clean, label, partition, membrane, (path, line))


def read_fasta(path, alphabet="protein", classes=None) -> list[Record]:
    """Unlabelled FASTA: id = the header's first word, ``label`` None."""
    return list(iter_fasta(path, alphabet, "plain", classes))


def read_deeploc(path, alphabet="protein", classes=None) -> list[Record]:
    """FASTA with DeepLoc-style headers (``>Q9H400 Cell.membrane-M test``)."""
    return list(iter_fasta(path, alphabet, "deeploc", classes))


def read_directory(path, alphabet="protein", classes=None) -> list[Record]:
    """A directory of per-class FASTA files: ``<label><suffix>`` for suffixes in
    :data:`FASTA_SUFFIXES` (optionally followed by ``.gz``); records of all files, in sorted
    file-name order."""
    path = os.fspath(path)
    files = sorted(f for f in os.listdir(path) if _stem_suffix(f)[1] in FASTA_SUFFIXES and not f.startswith("."))
    if not files:
        raise DataFormatError(path, None, None, f"no FASTA files (suffixes {', '.join(FASTA_SUFFIXES)}, "
                              "optionally .gz) in directory")
    records = []
    for f in files:
        label = _stem_suffix(f)[0]
        full = os.path.join(path, f)
        if classes is not None and label not in classes:
            raise DataFormatError(full, None, None, f"unknown label {label!r} (from the file name); known: "
                                  f"{', '.join(classes)}")
        records.extend(iter_fasta(full, alphabet, "plain", None, label=label))
    return records


def read_table(path, alphabet="protein", classes=None, delimiter: str | None = None) -> list[Record]:
    """A TSV/CSV file with a header row naming ``id``, ``sequence`` and ``label`` columns
    (optional ``partition``). ``delimiter`` defaults to comma for ``.csv`` (and ``.csv.gz``), tab
    otherwise."""
    alphabet = get_alphabet(alphabet)
    path = os.fspath(path)
    if delimiter is None:
        delimiter = "," if _stem_suffix(path)[1] == ".csv" else "\t"
    records = []
    with open_text(path, newline="") as fh:
        reader = csv.reader(_lines(fh, path), delimiter=delimiter)
        try:
            head = next(reader)
        except StopIteration:
            raise DataFormatError(path, 1, None, "empty file: expected a header row with id, sequence, label") from None
        names = [h.strip().lower() for h in head]
        missing = [c for c in ("id", "sequence", "label") if c not in names]
        if missing:
            raise DataFormatError(path, 1, None, f"header row must name the columns id, sequence and label; "
                                  f"missing {', '.join(missing)} (got {head!r}; delimiter {delimiter!r})")
        col = {c: names.index(c) for c in ("id", "sequence", "label")}
        part_col = names.index("partition") if "partition" in names else None
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            rec_id = row[col["id"]].strip() if len(row) > col["id"] else None
            if len(row) != len(head):
                raise DataFormatError(path, line, rec_id, f"expected {len(head)} fields, got {len(row)}")
            seq, label = row[col["sequence"]].strip(), row[col["label"]].strip()
            if not rec_id:
                raise DataFormatError(path, line, None, "empty id")
            if not label:
                raise DataFormatError(path, line, rec_id, "empty label")
            if classes is not None and label not in classes:
                raise DataFormatError(path, line, rec_id, f"unknown label {label!r}; known: {', '.join(classes)}")
            try:
                clean = alphabet.clean(seq)
            except SequenceError as err:
                raise DataFormatError(path, line, rec_id, str(err)) from None
            partition = row[part_col].strip() or None if part_col is not None else None
            records.append(Record(rec_id, clean, label, partition, None, (path, line)))
    if not records:
        raise DataFormatError(path, None, None, "no records after the header row")
    return records


def detect_format(path) -> str:
    """``"directory"`` for a directory, ``"table"`` for ``.tsv``/``.tab``/``.csv`` (also with
    ``.gz``), else ``"deeploc"``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return "directory"
    if _stem_suffix(os.path.basename(path))[1] in TABLE_SUFFIXES:
        return "table"
    return "deeploc"


def load_records(path, format: str = "auto", alphabet="protein", classes=None) -> list[Record]:
    """Labelled records from ``path`` in ``format`` (``auto``, ``deeploc``, ``directory``,
    ``table``, or ``fasta`` for unlabelled FASTA)."""
    if not os.path.exists(os.fspath(path)):
        raise FileNotFoundError(f"{path}: no such file or directory")
    fmt = detect_format(path) if format == "auto" else format
    readers = {"deeploc": read_deeploc, "directory": read_directory, "table": read_table, "fasta": read_fasta}
    if fmt not in readers:
        raise ValueError(f"format must be one of auto, {', '.join(readers)}; got {format!r}")
    records = readers[fmt](path, alphabet, classes)
    seen = {}
    for r in records:
        if r.id in seen:
            p, line = r.source or (path, None)
            raise DataFormatError(p, line, r.id, f"duplicate id (first seen at {seen[r.id][0]}, line {seen[r.id][1]})")
        seen[r.id] = r.source or (path, None)
    return records
