"""sublocal pretrain's library side: the FASTA index, the filters, the schedules, and a resumed
run that repeats the uninterrupted one bit for bit."""

import math
import os

import numpy as np
import pytest
import torch

from sublocal_kernels.data.fasta_index import FastaIndex
from sublocal_kernels.data.readers import DataFormatError, read_fasta
from sublocal_kernels.lm.pretrain import PretrainConfig, PretrainData, learning_rate, pretrain
from sublocal_kernels.lm.synthetic import write_fasta
from tests.lm import chain_sequences
from sublocal_kernels.training.checkpoint import load_checkpoint
from sublocal_kernels.training.rundir import RunDirError


@pytest.fixture(scope="module")
def chain_fasta(tmp_path_factory):
    d = tmp_path_factory.mktemp("lm")
    seqs = chain_sequences(120, 5, 80)
    path = d / "chain.fasta"
    write_fasta(path, seqs)
    return str(path)


def test_index_reads_each_record_as_the_fasta_reader_does(tmp_path):
    path = tmp_path / "x.fasta"
    path.write_text(">a first\nACDXB\nuuk\n\n>b/2 second\nMKV*\n>c\n" + "W" * 130 + "\n")
    ix = FastaIndex(path, cache_dir=tmp_path / "cache")
    expected = read_fasta(path)
    assert len(ix) == 3
    assert ix.lengths.tolist() == [len(r.sequence) for r in expected] == [8, 3, 130]
    assert ix.noncanonical.tolist() == [True, False, False]
    for i, rec in enumerate(expected):
        got = ix.record(i)
        assert (got.id, got.sequence, got.source[1]) == (rec.id, rec.sequence, rec.source[1])
    again = FastaIndex(path, cache_dir=tmp_path / "cache")  # from the cache, memory-mapped
    assert isinstance(again.offsets, np.memmap) and again.offsets.tolist() == ix.offsets.tolist()


@pytest.mark.parametrize("text, message", [
    (">a\nAC1D\n", r"line 2, record 'a': letter '1' at position 3"),
    (">a\nAC*\nD\n", r"line 2, record 'a': a '\*' \(stop\) is only accepted as the last letter"),
    ("ACD\n>a\nA\n", r"line 1: expected a FASTA header"),
    (">a\n>b\nA\n", r"record 'a': empty protein sequence"),
])
def test_index_reports_bad_records_with_file_line_and_record(tmp_path, text, message):
    path = tmp_path / "bad.fasta"
    path.write_text(text)
    with pytest.raises(DataFormatError, match=message):
        FastaIndex(path)


def test_gzip_is_refused_with_what_to_do(tmp_path):
    import gzip

    path = tmp_path / "x.fasta.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(">a\nACD\n")
    with pytest.raises(DataFormatError, match="decompress it first"):
        FastaIndex(path)


def test_filters_drop_noncanonical_and_long_records(tmp_path):
    path = tmp_path / "x.fasta"
    path.write_text(">a\nACDX\n>b\nMKV\n>c\nMKVLLLLL\n>d\nMZ\n")
    cfg = PretrainConfig(fasta=[str(path)], drop_noncanonical=True, max_length=5, val_fraction=0.0)
    data = PretrainData(cfg, None)
    assert data.dropped == {"noncanonical": 2, "too_long": 1}
    assert [data.record(i).id for i in data.train] == ["b"]
    with pytest.raises(DataFormatError, match="no sequences left"):
        PretrainData(PretrainConfig(fasta=[str(path)], max_length=1), None)


def test_learning_rate_schedules():
    cfg = PretrainConfig(lr=1.0, schedule="step", lr_step_epochs=5, lr_gamma=0.2)
    assert [learning_rate(cfg, 0, e, 100) for e in (0, 4, 5, 10)] == pytest.approx([1, 1, 0.2, 0.04])
    cfg = PretrainConfig(lr=2.0, schedule="cosine", warmup_steps=10)
    assert learning_rate(cfg, 0, 0, 110) == pytest.approx(0.2)
    assert learning_rate(cfg, 10, 0, 110) == pytest.approx(2.0)
    assert learning_rate(cfg, 60, 0, 110) == pytest.approx(1.0)
    assert learning_rate(cfg, 110, 0, 110) == pytest.approx(0.0, abs=1e-12)


def _cfg(fasta, out, **kw):
    base = dict(fasta=[fasta], out=str(out), model_args={"hidden_size": 12, "num_layers": 2, "dropout": 0.3,
                                                         "embedding_dim": 6},
                epochs=3, max_tokens=600, batch_size=16, lr=3e-3, schedule="cosine", warmup_steps=3,
                val_fraction=0.1, val_every=4, device="cpu", progress=False)
    base.update(kw)
    return PretrainConfig(**base)


@pytest.mark.parametrize("model, args", [("protein-lm", None),
                                         ("conv-autoencoder", {"latent_channels": 2, "latent_length": 5,
                                                               "channels": 8, "kernel_size": 3, "dropout": 0.2})])
def test_resume_from_last_equals_the_uninterrupted_run_bit_for_bit(chain_fasta, tmp_path, model, args):
    kw = {"model": model} if args is None else {"model": model, "model_args": args}
    whole = pretrain(_cfg(chain_fasta, tmp_path / "whole", **kw), log=lambda m: None)
    cut = pretrain(_cfg(chain_fasta, tmp_path / "cut", **kw), log=lambda m: None, stop_after_steps=7)
    assert cut["interrupted"] and cut["steps"] == 7 < whole["steps"]
    rest = pretrain(_cfg(chain_fasta, tmp_path / "cut", **kw), resume=True, log=lambda m: None)
    assert rest["steps"] == whole["steps"]
    a = load_checkpoint(tmp_path / "whole" / "last.json")
    b = load_checkpoint(tmp_path / "cut" / "last.json")
    for (name, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(p, q), f"parameter {name} differs after resuming"
    assert a.optim_tensors.keys() == b.optim_tensors.keys()
    for k in a.optim_tensors:
        assert torch.equal(a.optim_tensors[k], b.optim_tensors[k]), f"optimizer {k} differs"
    val = lambda s: [(r["step"], r["val_loss"]) for r in s["history"]]  # noqa: E731
    assert val(rest) == val(whole) and val(cut) == val(whole)[:1]  # history carried over
    assert rest["best_val_loss"] == whole["best_val_loss"] and math.isfinite(whole["best_val_loss"])
    assert os.path.isfile(tmp_path / "whole" / "best.json")


def test_run_directory_is_refused_unless_resumed_or_overwritten(chain_fasta, tmp_path):
    cfg = _cfg(chain_fasta, tmp_path / "r", max_steps=2, val_every=0)
    pretrain(cfg, log=lambda m: None)
    with pytest.raises(RunDirError, match="is not empty"):
        pretrain(cfg, log=lambda m: None)
    other = _cfg(chain_fasta, tmp_path / "r", max_steps=2, val_every=0, lr=1e-2)
    with pytest.raises(ValueError, match=r"--lr 0.01 \(checkpoint: 0.003\)"):
        pretrain(other, resume=True, log=lambda m: None)
    pretrain(other, overwrite=True, log=lambda m: None)
    assert load_checkpoint(tmp_path / "r" / "last.json").meta["pretrain_config"]["lr"] == 1e-2
