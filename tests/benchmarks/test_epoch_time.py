"""benchmarks/epoch_time.py: one epoch of `sublocal train` per build on generated proteins."""

import json

import numpy as np
import pytest

pytest.importorskip("safetensors")

from benchmarks import epoch_time  # noqa: E402


def test_lengths_follow_the_protein_distribution(tmp_path):
    path = tmp_path / "p.fasta"
    residues = epoch_time.write_fasta(str(path), 2000, seed=1)
    lines = path.read_text().splitlines()
    lengths = np.array([len(s) for s in lines[1::2]])
    assert len(lengths) == 2000 and lengths.sum() == residues
    assert 400 < np.median(lengths) < 500 and lengths.min() >= 20 and lengths.max() <= 5000
    assert lines[0].startswith(">P000000 Class0-U")


def test_one_epoch_per_build_with_the_ratio(tmp_path, capsys):
    log = tmp_path / "rows.jsonl"
    status = epoch_time.main(["--proteins", "40", "--layers", "sublocal,torch", "--threads", "1", "--json", str(log),
                              "--hidden-size", "4", "--filters-per-width", "2", "--dense-size", "4"])
    out = capsys.readouterr().out
    assert status == 0
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["layers"] for r in rows] == ["sublocal", "torch"]
    for r in rows:
        assert r["model"] == "rlstm" and 30 <= r["train_sequences"] <= 44 and r["epoch_s"] > 0
    assert "torch / sublocal epoch time:" in out
