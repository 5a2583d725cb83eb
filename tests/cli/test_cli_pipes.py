"""Pipeline manners: gzip and byte-order marks, streaming predict output, a closed stdout, a
failed predict keeping only whole rows, duplicate ids, and missing optional packages."""

import gzip
import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from .conftest import TINY, one_error, run_cli, warnings_of


def test_gzip_and_bom_input(tiny_fasta, tiny_run, tmp_path, capsys):
    text = open(tiny_fasta, "rb").read()
    gz = tmp_path / "tiny.fasta.gz"
    gz.write_bytes(gzip.compress(text))
    bom = tmp_path / "bom.fasta"
    bom.write_bytes(b"\xef\xbb\xbf" + text)
    assert run_cli(capsys, "train", gz, "--out", tmp_path / "run", "--epochs", "1", *TINY)[0] == 0
    outs = []
    for path in (tiny_fasta, gz, bom):
        got, out, err = run_cli(capsys, "predict", tiny_run, path)
        assert got == 0, err
        outs.append(out)
    assert outs[0] == outs[1] == outs[2] and len(outs[0].splitlines()) == 43


class Recorder(io.StringIO):
    """A stdout that records how many rows it held at each flush."""

    def __init__(self):
        super().__init__()
        self.flushes = []

    def flush(self):
        self.flushes.append(self.getvalue().count("\n"))


def test_predict_streams_rows_in_input_order(tiny_run, tiny_fasta, capsys, monkeypatch):
    got, reference, _ = run_cli(capsys, "predict", tiny_run, tiny_fasta)
    ids = [line.split()[0][1:] for line in open(tiny_fasta) if line.startswith(">")]
    assert [row.split("\t")[0] for row in reference.splitlines()[1:]] == ids
    for chunk in (["--window", "4"], ["--chunk", "12"]):  # --chunk: the old name of --window
        out = Recorder()
        monkeypatch.setattr(sys, "stdout", out)
        assert run_cli(capsys, "predict", tiny_run, tiny_fasta, "--batch-size", "4", *chunk)[0] == 0
        got_rows, want_rows = out.getvalue().splitlines(), reference.splitlines()
        assert [r.split("\t")[:2] for r in got_rows] == [r.split("\t")[:2] for r in want_rows], \
            "same ids and predictions, same order, whatever the chunk"
        np.testing.assert_allclose([[float(v) for v in r.split("\t")[2:]] for r in got_rows[1:]],
                                   [[float(v) for v in r.split("\t")[2:]] for r in want_rows[1:]], atol=1e-5)
        rows = out.flushes
        assert rows == sorted(rows) and rows[-1] == 43
        if chunk[0] == "--window":  # every window's rows are written when it is done
            assert all(b - a <= 4 for a, b in zip([1] + rows, rows)), rows
            assert len(set(rows)) >= 11


def test_closed_stdout_ends_quietly(tiny_run, tmp_path):
    # Enough rows (1000, 72 KB) to overflow the pipe's 64 KiB buffer after the reader has gone.
    fasta = tmp_path / "many.fasta"
    fasta.write_text("".join(f">SYN{i}\nMKVLAAGIVALLLAGC\n" for i in range(1000)))
    # Windows of 10 records: rows keep coming after the reader has gone.
    proc = subprocess.Popen([sys.executable, "-m", "sublocal_kernels.cli", "predict", tiny_run, fasta,
                             "--device", "cpu", "--window", "10"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b"id\tprediction")
    first = proc.stdout.readline()
    proc.stdout.close()  # what `| head -2` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert first.startswith(b"SYN") and err == "", err


def test_failed_predict_keeps_only_whole_rows(tiny_run, tiny_fasta, tmp_path, capsys):
    # A bad first record leaves nothing; a bad later one keeps the rows before it, resumable
    # (tests/cli/test_predict_scale.py resumes it), and never touches p.tsv itself.
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    first = tmp_path / "first.fasta"
    first.write_text(">early\nMK1V\n" + open(tiny_fasta).read())
    got, out, err = run_cli(capsys, "predict", tiny_run, first, "-o", out_dir / "p.tsv")
    assert got == 1 and one_error(err, "predict").startswith(f"{first}, line 2, record 'early'")
    assert os.listdir(out_dir) == []
    bad = tmp_path / "bad.fasta"
    bad.write_text(open(tiny_fasta).read() + ">late\nMK1V\n")
    got, out, err = run_cli(capsys, "predict", tiny_run, bad, "-o", out_dir / "p.tsv", "--batch-size", "4")
    line = len(open(tiny_fasta).read().splitlines()) + 2
    message = one_error(err, "predict")
    assert got == 1 and message.startswith(f"{bad}, line {line}, record 'late'")
    assert f"the 42 rows of records 1-42 are kept in {out_dir / 'p.tsv.partial'}" in message
    assert sorted(os.listdir(out_dir)) == ["p.tsv.partial", "p.tsv.partial.json"]
    assert len(open(out_dir / "p.tsv.partial").read().splitlines()) == 43
    got, out, err = run_cli(capsys, "predict", tiny_run, tiny_fasta, "-o", out_dir / "p.tsv", "--overwrite")
    assert got == 0 and os.listdir(out_dir) == ["p.tsv"] and err == f"wrote 42 predictions to {out_dir / 'p.tsv'}\n"


def test_predict_warns_on_duplicate_ids(tiny_run, tmp_path, capsys):
    fasta = tmp_path / "dup.fasta"
    fasta.write_text(">a\nMKVLA\n>b\nMKVLL\n>a\nMKKKK\n>b\nMKKKL\n>c\nMAAAA\n")
    got, out, err = run_cli(capsys, "predict", tiny_run, fasta)
    assert got == 0
    assert warnings_of(err, "predict") == [f"{fasta}: duplicate id 'a' (lines 1 and 5) and 1 more: each record has "
                                           "its own row, in input order"]
    assert [row.split("\t")[0] for row in out.splitlines()[1:]] == ["a", "b", "a", "b", "c"]


BLOCKED = """
import json, sys
for m in sys.argv[1].split(","):
    sys.modules[m] = None
from sublocal_kernels.cli import main
results = []
for argv in json.loads(sys.argv[2]):
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    print(json.dumps(status), flush=True)
    print("--", file=sys.stderr, flush=True)
"""


def _blocked(modules, commands):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(BLOCKED), ",".join(modules), json.dumps(commands)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    statuses = [json.loads(line) for line in proc.stdout.splitlines() if line and line[0].isdigit()]
    errs = proc.stderr.split("--\n")[:-1]
    assert len(statuses) == len(errs) == len(commands), (proc.stdout, proc.stderr)
    return list(zip(statuses, errs))


def test_missing_optional_packages_are_one_line_errors(tiny_run, tiny_fasta, tmp_path):
    extra = "install sublocal-kernels with the 'models' extra (pip install --no-build-isolation \".[models]\")"
    every = ["Bio", "safetensors", "matplotlib", "logomaker", "sklearn", "tqdm"]
    results = _blocked(every, [
        ["--help"],
        ["train", tiny_fasta, "--out", str(tmp_path / "r1"), *TINY],
        ["predict", tiny_run, tiny_fasta],
        ["plot", tiny_run, tiny_fasta, "--out", str(tmp_path / "plots")],
    ])
    assert results[0] == (0, "")
    for (status, err), (command, package) in zip(results[1:], [("train", "safetensors"), ("predict", "safetensors"),
                                                               ("plot", "matplotlib")]):
        assert status == 1
        message = one_error(err, command)
        assert message.startswith(f"{package} is needed") and message.endswith(extra), message


def test_evaluate_out_checks_matplotlib_first_and_progress_needs_tqdm(tiny_run, tiny_fasta, tmp_path, capsys,
                                                                      monkeypatch):
    from sublocal_kernels.training import trainer

    for module in ("matplotlib", "tqdm"):
        monkeypatch.setitem(sys.modules, module, None)
    got, _, err = run_cli(capsys, "evaluate", tiny_run, tiny_fasta, "--out", tmp_path / "ev")
    assert got == 1 and one_error(err, "evaluate").startswith("matplotlib is needed (the confusion-matrix plot")
    assert not os.path.exists(tmp_path / "ev"), "nothing written before the error"
    got, _, err = run_cli(capsys, "train", tiny_fasta, "--out", tmp_path / "r", *TINY[:-1], "--progress")
    assert got == 1 and one_error(err, "train").startswith("tqdm is needed (the progress bar (--progress))")
    assert not os.path.exists(tmp_path / "r")
    # On a terminal, the default (a bar when possible) goes without one when tqdm is missing.
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert trainer._progress(None) is None
    with pytest.raises(ImportError, match="tqdm is needed"):
        trainer._progress(True)
