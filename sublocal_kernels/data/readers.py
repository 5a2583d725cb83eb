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
  columns ``id`` (or ``acc``/``accession``), ``sequence`` and ``label`` (any order, any case;
  an optional ``partition`` column; other columns are ignored). A label may be several,
  ``A;B``. Without a ``label`` column, every named column whose values are all 0 or 1 is a
  class (the DeepLoc 2.0 CSV layout: ``ACC, Kingdom, Partition, Membrane, Cytoplasm, Nucleus,
  ..., Sequence``; ``membrane``, DeepLoc's membrane flag, is not a class), and a row's labels
  are its columns holding 1.
- ``fasta``: FASTA without labels (prediction input); the header's first word is the id.

Several labels per record (multi-label data): a table's ``A;B`` or 0/1 columns, and, in any
format, the same id or the same sequence under different labels, which :func:`load_records`
merges into one record whose ``label`` is ``"A;B"`` (sorted; ``record.labels`` is ``("A", "B")``).
Without ``multi_label=True`` (``--multi-label``) such records are an error naming them.

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

__all__ = ["LABEL_SEP", "Record", "DataFormatError", "DataWarning", "open_text", "read_fasta", "read_deeploc", "read_directory", "read_table",
           "load_records", "detect_format", "FASTA_SUFFIXES", "TABLE_SUFFIXES", "iter_fasta"]

FASTA_SUFFIXES = (".fasta", ".fa", ".faa", ".fas", ".fna", ".ffn", ".frn", ".seq")
TABLE_SUFFIXES = (".tsv", ".tab", ".csv")
DEEPLOC_CODES = ("M", "S", "U")
LABEL_SEP = ";"
ID_COLUMNS = ("id", "acc", "accession")
NOT_CLASS_COLUMNS = ("membrane",)  # DeepLoc 2.0's 0/1 membrane flag is not a location


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


class SeveralLabelsError(DataFormatError):
    """A record carries several labels where one was expected (single-label data); ``labels``
    is the record's label field, ``hint`` says how to read it as multi-label."""

    def __init__(self, path, line: int | None, record: str | None, labels: str, hint: str):
        self.labels = labels
        super().__init__(path, line, record, f"several labels ({labels!r}): {hint}")


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

    @property
    def labels(self) -> tuple[str, ...]:
        """The record's labels: one, several (``label`` ``"A;B"``), or none (unlabelled)."""
        return tuple(self.label.split(LABEL_SEP)) if self.label else ()


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
    unknown = [c for c in (label.split(LABEL_SEP) if label else ()) if classes is not None and c not in classes]
    if unknown:
        raise DataFormatError(path, line, rec_id, f"unknown label {unknown[0]!r}; known: {', '.join(classes)}")
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


def _label_set(text: str) -> str | None:
    """``" A ; B;A"`` -> ``"A;B"``: the labels of a table cell, stripped, once each, sorted."""
    parts = sorted({t.strip() for t in text.split(LABEL_SEP) if t.strip()})
    return LABEL_SEP.join(parts) or None


def read_table(path, alphabet="protein", classes=None, delimiter: str | None = None) -> list[Record]:
    """A TSV/CSV file with a header row naming ``id``, ``sequence`` and ``label`` columns
    (optional ``partition``, or ``fold``), or ``id``, ``sequence`` and one 0/1 column per class (see the
    module docstring). ``delimiter`` defaults to comma for ``.csv`` (and ``.csv.gz``), tab
    otherwise."""
    alphabet = get_alphabet(alphabet)
    path = os.fspath(path)
    if delimiter is None:
        delimiter = "," if _stem_suffix(path)[1] == ".csv" else "\t"
    rows = []
    with open_text(path, newline="") as fh:
        reader = csv.reader(_lines(fh, path), delimiter=delimiter)
        try:
            head = next(reader)
        except StopIteration:
            raise DataFormatError(path, 1, None, "empty file: expected a header row with id, sequence, label") from None
        names = [h.strip().lower() for h in head]
        id_name = next((c for c in ID_COLUMNS if c in names), "id")
        missing = [c for c in (id_name, "sequence") if c not in names]
        if missing:
            raise DataFormatError(path, 1, None, f"header row must name the columns id, sequence and label (or one "
                                  f"0/1 column per class); missing {', '.join(missing)} (got {head!r}; delimiter "
                                  f"{delimiter!r})")
        col = {"id": names.index(id_name), "sequence": names.index("sequence")}
        # The predefined folds: DeepLoc 2.0's Partition, or a fold column (the lncRNA sets').
        part_col = next((names.index(c) for c in ("partition", "fold") if c in names), None)
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            rec_id = row[col["id"]].strip() if len(row) > col["id"] else None
            if len(row) != len(head):
                raise DataFormatError(path, line, rec_id, f"expected {len(head)} fields, got {len(row)}")
            if not rec_id:
                raise DataFormatError(path, line, None, "empty id")
            rows.append((line, rec_id, row))
    if "label" in names:
        label_col = names.index("label")
        labels = [_label_set(row[label_col]) for _, _, row in rows]
    else:
        skip = {col["id"], col["sequence"], part_col}
        class_cols = [j for j, n in enumerate(names) if n and j not in skip and n not in NOT_CLASS_COLUMNS
                      and rows and all(row[j].strip() in ("0", "1", "0.0", "1.0") for _, _, row in rows)]
        if len(class_cols) < 2:
            raise DataFormatError(path, 1, None, f"header row must name a label column, or the table must have one "
                                  f"0/1 column per class (at least two); found {len(class_cols)} such columns "
                                  f"(got {head!r}; delimiter {delimiter!r})")
        labels = [LABEL_SEP.join(sorted(head[j].strip() for j in class_cols if float(row[j]) == 1)) or None
                  for _, _, row in rows]
    records = []
    for (line, rec_id, row), label in zip(rows, labels):
        if not label:
            raise DataFormatError(path, line, rec_id, "empty label" if "label" in names else
                                  "no class column holds 1 (every record needs at least one label)")
        unknown = [c for c in label.split(LABEL_SEP) if classes is not None and c not in classes]
        if unknown:
            raise DataFormatError(path, line, rec_id, f"unknown label {unknown[0]!r}; known: {', '.join(classes)}")
        try:
            clean = alphabet.clean(row[col["sequence"]].strip())
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


def load_records(path, format: str = "auto", alphabet="protein", classes=None, multi_label: bool = False
                 ) -> list[Record]:
    """Labelled records from ``path`` in ``format`` (``auto``, ``deeploc``, ``directory``,
    ``table``, or ``fasta`` for unlabelled FASTA).

    Records sharing an id (with the same sequence) or a sequence under different labels are
    merged into one record with all their labels, sorted and joined by ``;`` (the
    first record's id, line and partition). A repeated id with the same label, or with a
    different sequence, is an error. With ``multi_label`` False (the default), a record with
    several labels is an error naming it and ``--multi-label``."""
    if not os.path.exists(os.fspath(path)):
        raise FileNotFoundError(f"{path}: no such file or directory")
    fmt = detect_format(path) if format == "auto" else format
    readers = {"deeploc": read_deeploc, "directory": read_directory, "table": read_table, "fasta": read_fasta}
    if fmt not in readers:
        raise ValueError(f"format must be one of auto, {', '.join(readers)}; got {format!r}")
    records = readers[fmt](path, alphabet, classes)
    return _merge_labels(records, path, multi_label)


def _where(r: Record, path) -> str:
    p, line = r.source or (path, None)
    return f"{p}, line {line}"


def _merge_labels(records: list[Record], path, multi_label: bool) -> list[Record]:
    """One record per id, and one per sequence among records whose labels differ (see
    :func:`load_records`)."""
    by_id: dict[str, Record] = {}
    merged_from: dict[int, list[Record]] = {}
    out: list[Record] = []
    for r in records:
        first = by_id.get(r.id)
        if first is None:
            by_id[r.id] = r
            out.append(r)
            continue
        p, line = r.source or (path, None)
        if first.sequence != r.sequence or first.label is None or set(r.labels) <= set(first.labels):
            why = " with a different sequence" if first.sequence != r.sequence else ""
            raise DataFormatError(p, line, r.id, f"duplicate id{why} (first seen at {_where(first, path)})")
        if not multi_label:
            raise DataFormatError(p, line, r.id, f"duplicate id with another label ({r.label!r}; first seen at "
                                  f"{_where(first, path)} as {first.label!r}): one record with several labels. "
                                  "Pass --multi-label (multi_label=True) to train on several labels per record")
        merged_from.setdefault(id(first), [first]).append(r)
    # Records with the same sequence but different labels (RNALocate lists a sequence once per
    # localization, under different ids) are one sequence with several labels.
    by_seq: dict[str, list[int]] = {}
    for k, r in enumerate(out):
        if r.label is not None:
            by_seq.setdefault(r.sequence, []).append(k)
    drop = set()
    for group in by_seq.values():
        labels = {lab for k in group for lab in out[k].labels}
        if len(group) < 2 or all(set(out[k].labels) == labels for k in group):
            continue
        if not multi_label:
            a, b = out[group[0]], next(out[k] for k in group if set(out[k].labels) != set(out[group[0]].labels))
            p, line = b.source or (path, None)
            raise DataFormatError(p, line, b.id, f"the same sequence as record {a.id!r} ({_where(a, path)}) under "
                                  f"another label ({b.label!r}, there {a.label!r}): one sequence with several labels. "
                                  "Pass --multi-label (multi_label=True) to merge them into one record with every "
                                  "label")
        keep = out[group[0]]
        merged_from.setdefault(id(keep), [keep]).extend(out[k] for k in group[1:])
        drop.update(group[1:])
    result = []
    for k, r in enumerate(out):
        if k in drop:
            continue
        parts = merged_from.get(id(r))
        if parts:
            partitions = {x.partition for x in parts}
            if len(partitions) > 1:
                other = next(x for x in parts if x.partition != r.partition)
                p, line = other.source or (path, None)
                raise DataFormatError(p, line, other.id, f"merged with record {r.id!r} ({_where(r, path)}: same id or "
                                      f"sequence) but in partition {other.partition!r}, not {r.partition!r}")
            labels = []
            for x in parts:
                labels.extend(lab for lab in x.labels if lab not in labels)
            r = Record(r.id, r.sequence, LABEL_SEP.join(sorted(labels)), r.partition, r.membrane, r.source)
        if not multi_label and len(r.labels) > 1:
            p, line = r.source or (path, None)
            raise SeveralLabelsError(p, line, r.id, r.label, "pass --multi-label (multi_label=True) to train on "
                                     "several labels per record")
        result.append(r)
    return result
