"""Readers: each format parsed, and a malformed file of each kind names file, line and record."""

import os

import pytest

from sublocal_kernels.data import (DataFormatError, SequenceError, get_alphabet, iter_fasta, load_records,
                                   read_deeploc, read_directory, read_fasta, read_table)

DEEPLOC = """>Q9H400 Cell.membrane-M test
MKVLAAGIVALLLAAGCSSA
KKR*
>P12345 Nucleus-S
mpkkkrkvedaaa
>Q00001 Lysosome/Vacuole-U
MAXBZJUO
"""


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_deeploc_headers(tmp_path):
    path = write(tmp_path, "d.fasta", DEEPLOC)
    recs = read_deeploc(path)
    assert [r.id for r in recs] == ["Q9H400", "P12345", "Q00001"]
    assert [r.label for r in recs] == ["Cell.membrane", "Nucleus", "Lysosome/Vacuole"]
    assert [r.membrane for r in recs] == ["M", "S", "U"]
    assert [r.partition for r in recs] == ["test", None, None]
    # Policy: sequence lines joined, trailing '*' removed, lowercase read as uppercase, U->C, O->K.
    assert recs[0].sequence == "MKVLAAGIVALLLAAGCSSAKKR"
    assert recs[1].sequence == "MPKKKRKVEDAAA"
    assert recs[2].sequence == "MAXBZJCK"
    assert [r.source[1] for r in recs] == [1, 4, 6]
    assert load_records(path)[2].label == "Lysosome/Vacuole"  # auto-detected format


@pytest.mark.parametrize("text, line, record, words", [
    pytest.param(">A1 Nucleus-S\nMKV\n>A2 Cytoplasm\nMKV\n", 3, "A2", "LOCATION-CODE", id="no-code"),
    pytest.param(">A1 Nucleus-Q\nMKV\n", 1, "A1", "LOCATION-CODE", id="bad-code"),
    pytest.param(">A1\nMKV\n", 1, "A1", "DeepLoc header", id="no-location"),
    pytest.param(">A1 Nucleus-S train\nMKV\n", 1, "A1", "'test'", id="bad-flag"),
    pytest.param(">A1 Nucleus-S\nMKV\nMK1V\n", 3, "A1", "'1'", id="bad-letter-line-3"),
    pytest.param(">A1 Nucleus-S\nMK*V\n", 2, "A1", "stop", id="inner-stop"),
    pytest.param(">A1 Nucleus-S\nMKV\n>A2 Nucleus-S\nMKV\nAA-A\n", 5, "A2", "'-'", id="gap"),
    pytest.param("MKV\n>A1 Nucleus-S\nMKV\n", 1, None, "header", id="text-before-header"),
    pytest.param(">A1 Nucleus-S\n*\n", 1, "A1", "empty", id="empty-sequence"),
])
def test_deeploc_malformed(tmp_path, text, line, record, words):
    path = write(tmp_path, "bad.fasta", text)
    with pytest.raises(DataFormatError) as err:
        read_deeploc(path)
    e = err.value
    assert e.path == path and e.line == line and e.record == record
    assert path in str(e) and f"line {line}" in str(e) and words in str(e)
    if record:
        assert repr(record) in str(e)


def test_empty_fasta(tmp_path):
    with pytest.raises(DataFormatError, match="no FASTA records"):
        read_fasta(write(tmp_path, "e.fasta", "\n"))


def test_unknown_label(tmp_path):
    path = write(tmp_path, "d.fasta", DEEPLOC)
    with pytest.raises(DataFormatError, match=r"line 4, record 'P12345': unknown label 'Nucleus'"):
        read_deeploc(path, classes=["Cell.membrane", "Lysosome/Vacuole"])


def test_duplicate_id(tmp_path):
    path = write(tmp_path, "d.fasta", ">A1 Nucleus-S\nMKV\n>A1 Cytoplasm-S\nMKV\n")
    with pytest.raises(DataFormatError, match=r"line 3, record 'A1': duplicate id"):
        load_records(path)


def test_plain_fasta_streams(tmp_path):
    path = write(tmp_path, "p.fa", ">x1 some description\nMKV\n>x2\nAAAA\n")
    it = iter_fasta(path)
    first = next(it)
    assert (first.id, first.sequence, first.label) == ("x1", "MKV", None)
    assert [r.id for r in read_fasta(path)] == ["x1", "x2"]


def test_directory(tmp_path):
    d = tmp_path / "multiloc"
    d.mkdir()
    (d / "nuclear.fasta").write_text(">n1 whatever\nMPKKKRKV\n>n2\nMKKR\n")
    (d / "cytoplasmic.fa").write_text(">c1\nMAAAG\n")
    (d / "README").write_text("not a fasta file: ignored")
    recs = read_directory(str(d))
    assert [(r.id, r.label) for r in recs] == [("c1", "cytoplasmic"), ("n1", "nuclear"), ("n2", "nuclear")]
    assert load_records(str(d))[0].label == "cytoplasmic"


def test_directory_malformed(tmp_path):
    d = tmp_path / "multiloc"
    d.mkdir()
    (d / "nuclear.fasta").write_text(">n1\nMPKKKRKV\n>n2\nMK#R\n")
    with pytest.raises(DataFormatError) as err:
        read_directory(str(d))
    assert err.value.path == str(d / "nuclear.fasta") and err.value.line == 4 and err.value.record == "n2"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFormatError, match="no FASTA files"):
        read_directory(str(empty))


@pytest.mark.parametrize("name, sep", [("t.tsv", "\t"), ("t.csv", ",")])
def test_table(tmp_path, name, sep):
    rows = [["Label", "ID", "extra", "sequence"], ["Nucleus", "a1", "x", "MPKKKRKV"], ["Cytoplasm", "a2", "y", "maag*"]]
    path = write(tmp_path, name, "\n".join(sep.join(r) for r in rows) + "\n\n")
    recs = read_table(path)
    assert [(r.id, r.label, r.sequence) for r in recs] == [("a1", "Nucleus", "MPKKKRKV"), ("a2", "Cytoplasm", "MAAG")]
    assert [r.source[1] for r in recs] == [2, 3]
    assert len(load_records(path)) == 2


@pytest.mark.parametrize("text, line, record, words", [
    pytest.param("id\tseq\tlabel\na\tMKV\tN\n", 1, None, "missing sequence", id="missing-column"),
    pytest.param("id\tsequence\tlabel\na\tMKV\tN\nb\tMKV\n", 3, "b", "expected 3 fields", id="short-row"),
    pytest.param("id\tsequence\tlabel\na\tMKV\tN\nb\tMK V\tN\n", 3, "b", "' '", id="bad-letter"),
    pytest.param("id\tsequence\tlabel\na\tMKV\t\n", 2, "a", "empty label", id="empty-label"),
    pytest.param("", 1, None, "empty file", id="empty"),
])
def test_table_malformed(tmp_path, text, line, record, words):
    path = write(tmp_path, "bad.tsv", text)
    with pytest.raises(DataFormatError) as err:
        read_table(path)
    assert (err.value.path, err.value.line, err.value.record) == (path, line, record)
    assert words in str(err.value)


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_records(str(tmp_path / "nope.fasta"))
    with pytest.raises(ValueError, match="format must be one of"):
        load_records(write(tmp_path, "d.fasta", DEEPLOC), format="genbank")


def test_protein_policy():
    p = get_alphabet("protein")
    assert p.clean("acdefghiklmnpqrstvwy*") == "ACDEFGHIKLMNPQRSTVWY"
    assert p.clean("XBZJUO") == "XBZJCK"
    assert p.vocab_size == 25
    for bad, pos in (("MK*K", 3), ("MK.K", 3), ("MK1", 3), ("MKé", 3)):
        with pytest.raises(SequenceError) as err:
            p.encode(bad)
        assert err.value.position == pos - 1 and f"position {pos}" in str(err.value)
    with pytest.raises(SequenceError, match="empty"):
        p.encode("*")


def test_nucleotide_policy():
    n = get_alphabet("rna")
    assert n.clean("acgtuNRY") == "ACGUUNNN"
    assert list(n.encode("ACGUN")) == [1, 2, 3, 4, 5]
    with pytest.raises(SequenceError, match="'X'"):
        n.encode("ACGX")
    with pytest.raises(SequenceError):
        n.encode("ACG*")  # no stop-codon policy for RNA
    with pytest.raises(ValueError, match="alphabet must be one of"):
        get_alphabet("klingon")


def test_nucleotide_fasta(tmp_path):
    path = write(tmp_path, "r.fa", ">t1\nacgtn\n")
    assert read_fasta(path, alphabet="nucleotide")[0].sequence == "ACGUN"
    assert os.path.exists(path)


def _gzip(path, text: bytes):
    import gzip

    with gzip.open(path, "wb") as fh:
        fh.write(text)
    return str(path)


def test_gzip_and_byte_order_mark_read_like_plain_text(tmp_path):
    plain = read_deeploc(write(tmp_path, "d.fasta", DEEPLOC))
    bom = b"\xef\xbb\xbf"
    gz = load_records(_gzip(tmp_path / "d.fasta.gz", DEEPLOC.encode()))
    gz_name_free = load_records(_gzip(tmp_path / "d.data", bom + DEEPLOC.encode()), format="deeploc")
    (tmp_path / "b.fasta").write_bytes(bom + DEEPLOC.encode())
    with_bom = load_records(str(tmp_path / "b.fasta"))
    for recs in (gz, gz_name_free, with_bom):
        assert [(r.id, r.sequence, r.label, r.partition) for r in recs] == \
            [(r.id, r.sequence, r.label, r.partition) for r in plain]
    table = b"id,sequence,label\nA1,MKV,Nucleus\nA2,MKL,Cytoplasm\n"
    for path in (_gzip(tmp_path / "t.csv.gz", table), _gzip(tmp_path / "t2.csv.gz", bom + table)):
        recs = load_records(path)  # .csv.gz: a table, comma-separated
        assert [(r.id, r.label) for r in recs] == [("A1", "Nucleus"), ("A2", "Cytoplasm")]
    d = tmp_path / "dir"
    d.mkdir()
    _gzip(d / "Nucleus.fasta.gz", b">n1\nMKV\n")
    (d / "Cytoplasm.fa").write_bytes(bom + b">c1\nMKL\n")
    assert [(r.id, r.label) for r in load_records(str(d))] == [("c1", "Cytoplasm"), ("n1", "Nucleus")]


def test_gzip_errors_name_the_file(tmp_path):
    whole = _gzip(tmp_path / "d.fasta.gz", DEEPLOC.encode() * 50)
    cut = tmp_path / "cut.fasta.gz"
    cut.write_bytes(open(whole, "rb").read()[:60])
    with pytest.raises(DataFormatError, match=r"cut.fasta.gz: damaged gzip file"):
        read_deeploc(str(cut))
    bad = _gzip(tmp_path / "bad.fasta.gz", b">A1 Nucleus-S\nMKV\nMK1V\n")
    with pytest.raises(DataFormatError, match=r"bad.fasta.gz, line 3, record 'A1'"):
        read_deeploc(bad)
    other = tmp_path / "x.fasta"
    other.write_bytes(b"BZh91AY&SY\xa5\x9c\xff\x00\x13")
    with pytest.raises(DataFormatError, match=r"x.fasta, line 1: not UTF-8 text"):
        read_deeploc(str(other))


# --------------------------------------------------------------------------------------------
# Several labels per record


def test_table_label_column_with_several_labels(tmp_path):
    path = write(tmp_path, "m.tsv", "id\tsequence\tlabel\na\tMKV\tNucleus; Cytoplasm\nb\tMKKV\tNucleus\n")
    recs = load_records(path, multi_label=True)
    assert [(r.id, r.label, r.labels) for r in recs] == [("a", "Cytoplasm;Nucleus", ("Cytoplasm", "Nucleus")),
                                                         ("b", "Nucleus", ("Nucleus",))]
    with pytest.raises(DataFormatError, match=r"m.tsv, line 2, record 'a': several labels \('Cytoplasm;Nucleus'\): "
                                              r"pass --multi-label"):
        load_records(path)
    with pytest.raises(DataFormatError, match=r"line 2, record 'a': unknown label 'Cytoplasm'"):
        read_table(path, classes=["Nucleus"])


DEEPLOC2 = """,ACC,Kingdom,Partition,Membrane,Cytoplasm,Nucleus,Extracellular,Cell membrane,Sequence
0,Q9H400,Eukaryota,0,1,0,0,0,1,MKVLAAG
1,P12345,Eukaryota,1,0,1,1,0,0,MPKKKRKV
2,Q00001,Eukaryota,3,0,0.0,0.0,1.0,0.0,MAAGLLA
"""


def test_deeploc2_csv_with_one_column_per_class(tmp_path):
    path = write(tmp_path, "deeploc2.csv", DEEPLOC2)
    recs = load_records(path, multi_label=True)
    assert [(r.id, r.labels, r.partition) for r in recs] == [
        ("Q9H400", ("Cell membrane",), "0"), ("P12345", ("Cytoplasm", "Nucleus"), "1"),
        ("Q00001", ("Extracellular",), "3")]
    assert recs[1].sequence == "MPKKKRKV" and recs[1].source == (path, 3)
    with pytest.raises(DataFormatError, match=r"line 3, record 'P12345': several labels"):
        load_records(path)
    # A row with no class set, and a table with neither a label column nor 0/1 columns.
    bad = write(tmp_path, "none.csv", "acc,sequence,a,b\nx,MKV,0,0\n")
    with pytest.raises(DataFormatError, match=r"none.csv, line 2, record 'x': no class column holds 1"):
        read_table(bad)
    with pytest.raises(DataFormatError, match=r"line 1: header row must name a label column, or the table must have "
                                              r"one 0/1 column per class"):
        read_table(write(tmp_path, "few.csv", "id,sequence,kingdom\nx,MKV,Eukaryota\n"))


def test_same_id_in_two_class_files_is_one_record_with_both_labels(tmp_path):
    d = tmp_path / "rnalocate"
    d.mkdir()
    (d / "Nucleus.fasta").write_text(">r1\nMKV\n>r2\nMKKV\n")
    (d / "Cytosol.fasta").write_text(">r1\nMKV\n>r3\nMAAV\n")
    recs = load_records(str(d), multi_label=True)
    assert [(r.id, r.label) for r in recs] == [("r1", "Cytosol;Nucleus"), ("r3", "Cytosol"), ("r2", "Nucleus")]
    with pytest.raises(DataFormatError) as err:
        load_records(str(d))
    assert err.value.path == str(d / "Nucleus.fasta") and err.value.line == 1 and err.value.record == "r1"
    assert "duplicate id with another label ('Nucleus'" in str(err.value) and "--multi-label" in str(err.value)
    (d / "Cytosol.fasta").write_text(">r1\nMKVA\n")
    with pytest.raises(DataFormatError, match=r"record 'r1': duplicate id with a different sequence"):
        load_records(str(d), multi_label=True)


def test_same_sequence_under_two_ids_and_labels_is_merged(tmp_path):
    # RNALocate lists a sequence once per localization, under different ids.
    path = write(tmp_path, "r.tsv", "id\tsequence\tlabel\nx1\tACGU\tNucleus\nx2\tACGU\tCytosol\nx3\tAAAA\tNucleus\n"
                                    "x4\tAAAA\tNucleus\n")
    recs = load_records(path, alphabet="nucleotide", multi_label=True)
    # Same sequence with the same label twice (x3, x4) stays as it was.
    assert [(r.id, r.label) for r in recs] == [("x1", "Cytosol;Nucleus"), ("x3", "Nucleus"), ("x4", "Nucleus")]
    with pytest.raises(DataFormatError, match=r"r.tsv, line 3, record 'x2': the same sequence as record 'x1' "
                                              r"\(.*r.tsv, line 2\) under another label \('Cytosol', there "
                                              r"'Nucleus'\).*--multi-label"):
        load_records(path, alphabet="nucleotide")
    parts = write(tmp_path, "p.tsv", "id\tsequence\tlabel\tpartition\nx1\tMKV\tA\ttest\nx2\tMKV\tB\t\n")
    with pytest.raises(DataFormatError, match=r"record 'x2': merged with record 'x1'.*in partition None, not 'test'"):
        load_records(parts, multi_label=True)
