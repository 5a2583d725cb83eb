"""The `sublocal` command line: checkpoints, resume, evaluate, predict, plot, DDP."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
load_file = pytest.importorskip("safetensors.torch").load_file

from sublocal_kernels.cli import main
from sublocal_kernels.data import SequenceDataset, collate, load_records
from sublocal_kernels.models import ALSTM
from sublocal_kernels.training import load_checkpoint, save_checkpoint

from .conftest import TINY, run_torchrun


def train(fasta, out, *extra):
    assert main(["train", fasta, "--out", str(out), "--epochs", "2", *TINY, *extra]) == 0


def weights(path):
    return {k: v for k, v in load_file(path).items() if k.startswith("model.")}


def test_train_writes_safetensors_and_json(tiny_fasta, tmp_path, capsys):
    train(tiny_fasta, tmp_path)
    out = capsys.readouterr().out
    assert "epoch 2/2: train loss" in out and "seq/s" in out and "val loss" in out and "test (best" in out
    for name in ("best", "last"):
        doc = json.load(open(tmp_path / f"{name}.json"))
        assert doc["format"] == "sublocal-checkpoint" and doc["model"] == "alstm"
        assert doc["classes"] == sorted(doc["classes"]) and len(doc["classes"]) == 7
        tensors = load_file(tmp_path / f"{name}.safetensors")
        assert any(k.startswith("model.") for k in tensors)
        assert any(k.startswith("optim.") for k in tensors) == (name == "last")
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")], "temporary files left behind"
    summary = json.load(open(tmp_path / "summary.json"))
    assert len(summary["history"]) == 2 and 0 <= summary["test"]["accuracy"] <= 1


def test_checkpoint_round_trip_identical_predictions(tiny_fasta, tmp_path):
    records = load_records(tiny_fasta)
    ds = SequenceDataset(records)
    model = ALSTM(len(ds.classes), widths=(1, 3), filters_per_width=2, hidden_size=6, attention_size=5,
                  dense_size=4).eval()
    path = save_checkpoint(str(tmp_path), "m", model, {"classes": ds.classes, "alphabet": "protein",
                                                        "max_length": None})
    loaded = load_checkpoint(path).model
    batch = collate(ds, np.arange(len(ds)))
    with torch.no_grad():
        a, b = model(batch.tokens, batch.lengths), loaded(batch.tokens, batch.lengths)
    assert torch.equal(a, b)
    for (ka, va), (kb, vb) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_corrupt_checkpoint_is_refused(tiny_fasta, tmp_path):
    model = ALSTM(3, widths=(1,), filters_per_width=2, hidden_size=4, attention_size=3, dense_size=4)
    path = save_checkpoint(str(tmp_path), "m", model, {"classes": ["a", "b", "c"], "alphabet": "protein"})
    blob = bytearray(open(tmp_path / "m.safetensors", "rb").read())
    blob[-1] ^= 1
    open(tmp_path / "m.safetensors", "wb").write(bytes(blob))
    with pytest.raises(ValueError, match="SHA-256"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(str(tmp_path / "nope"))


def test_resume_reproduces_uninterrupted_run(tiny_fasta, tmp_path):
    from sublocal_kernels.cli import build_parser, train_config_from_args
    from sublocal_kernels.training import train as train_fn

    def cfg(out):
        args = build_parser().parse_args(["train", tiny_fasta, "--out", str(out), "--epochs", "3",
                                          "--checkpoint-every", "2", "--dropout", "0.3", *TINY])
        return train_config_from_args(args)

    full = train_fn(cfg(tmp_path / "full"))
    # 42 sequences, 28 for training -> 4 batches of 8 per epoch: stop after step 4 of epoch 2,
    # whose last checkpoint is the mid-epoch one after its step 2.
    part = train_fn(cfg(tmp_path / "cut"), stop_after_steps=8)
    assert part["interrupted"]
    state = json.load(open(tmp_path / "cut" / "last.json"))["train_state"]
    assert (state["epoch"], state["step"]) == (1, 2), "the mid-epoch checkpoint after step 2 of epoch 2"
    resumed = train_fn(cfg(tmp_path / "cut"), resume=True)
    a, b = weights(tmp_path / "full" / "last.safetensors"), weights(tmp_path / "cut" / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed["history"] == full["history"] or all(
        {k: v for k, v in r.items() if k not in ("seq_per_s", "time_s")} ==
        {k: v for k, v in s.items() if k not in ("seq_per_s", "time_s")}
        for r, s in zip(resumed["history"], full["history"]))
    assert len(resumed["history"]) == 3


def test_resume_without_checkpoint(tiny_fasta, tmp_path):
    from sublocal_kernels.training import train as train_fn
    from sublocal_kernels.training import TrainConfig

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume"):
        train_fn(TrainConfig(data=tiny_fasta, out=str(tmp_path / "empty")), resume=True)


def test_evaluate_predict_plot(tiny_fasta, tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_fasta, run)
    capsys.readouterr()
    assert main(["evaluate", str(run), tiny_fasta, "--split", "test", "--out", str(tmp_path / "ev")]) == 0
    text = capsys.readouterr().out
    assert "accuracy=" in text and "macro MCC=" in text and "confusion matrix" in text
    report = json.load(open(tmp_path / "ev" / "report.json"))
    assert report["n"] == 7 and set(report["per_class"]) == set(report["classes"])
    assert os.path.getsize(tmp_path / "ev" / "confusion.png") > 1000

    out1, out2 = tmp_path / "p1.tsv", tmp_path / "p2.tsv"
    assert main(["predict", str(run / "best.json"), tiny_fasta, "-o", str(out1), "--chunk", "5"]) == 0
    assert main(["predict", str(run), tiny_fasta, "-o", str(out2), "--chunk", "1000"]) == 0
    rows = open(out1).read().splitlines()
    assert rows == open(out2).read().splitlines(), "streaming in chunks must not change predictions"
    head = rows[0].split("\t")
    assert head[:2] == ["id", "prediction"] and len(head) == 9
    assert len(rows) == 43
    probs = np.array([[float(v) for v in r.split("\t")[2:]] for r in rows[1:]])
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-4)
    assert [r.split("\t")[1] for r in rows[1:]] == [head[2 + i][2:] for i in probs.argmax(1)]

    # An ensemble of the best and last checkpoints evaluates too.
    assert main(["evaluate", f"{run / 'best.json'},{run / 'last.json'}", tiny_fasta]) == 0

    assert main(["plot", str(run), tiny_fasta, "--out", str(tmp_path / "plots"), "--window", "30"]) == 0
    for name in ("attention.png", "filters.png", "tsne.png"):
        assert os.path.getsize(tmp_path / "plots" / name) > 1000, name


def test_cli_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == ("sublocal train: error: the following arguments are required: data "
                                       "(see sublocal train --help)\n")
    bad = tmp_path / "bad.fasta"
    bad.write_text(">A1 Nucleus-S\nMK1V\n")
    assert main(["train", str(bad), "--out", str(tmp_path / "o"), *TINY]) == 1
    assert capsys.readouterr().err.startswith(f"sublocal train: error: {bad}, line 2, record 'A1'")


def test_console_entry_point():
    out = subprocess.run([sys.executable, "-m", "sublocal_kernels.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("train", "evaluate", "predict", "plot", "demo"):
        assert cmd in out.stdout


@pytest.mark.slow
def test_ddp_two_processes_equal_one(tiny_fasta, tmp_path):
    """Two gloo processes under torchrun and one process, same global batches: same weights.

    The trainer's data sharding, loss scaling and all-reduce are under test here, on the stock
    torch.nn build: the A-LSTM's attention-bias gradient is near zero by structure (the softmax
    weights' gradients sum to zero over the steps), so float32 rounding decides its sign and
    Adam turns that into whole steps; with the fused layers' other summation order that reached
    2e-4 on two of its eight entries after 8 steps. That the fused layers' gradients over shards
    add up to the global batch's exactly (what DDP relies on) is tested in float64 in
    tests/models/test_models.py::test_shard_gradients_add_up."""
    stock = ["--layers", "torch"]
    common = [tiny_fasta, "--epochs", "2", "--dropout", "0", "--device", "cpu", *TINY, *stock]
    train(tiny_fasta, tmp_path / "one", "--dropout", "0", "--device", "cpu", *stock)
    run_torchrun("train", *common, "--out", tmp_path / "two")
    a, b = weights(tmp_path / "one" / "last.safetensors"), weights(tmp_path / "two" / "last.safetensors")
    for k in a:
        # Same math, different summation order (per-rank sums, then the all-reduce): gradients
        # agree to float32 rounding, which Adam's g / sqrt(v) can magnify for gradients near
        # zero; 2e-5 is under 1% of one step (lr 3e-3), measured 4e-6 at most here.
        torch.testing.assert_close(b[k], a[k], atol=2e-5, rtol=1e-4, msg=lambda m: f"{k}: {m}")
    h1 = json.load(open(tmp_path / "one" / "summary.json"))["history"]
    h2 = json.load(open(tmp_path / "two" / "summary.json"))["history"]
    for r1, r2 in zip(h1, h2):
        assert r1["train_loss"] == pytest.approx(r2["train_loss"], rel=1e-5)
        assert r1["val_loss"] == pytest.approx(r2["val_loss"], rel=1e-5)


def test_bench_is_not_a_subcommand(capsys):
    """The benchmarks live in the checkout (python -m benchmarks.run), not in the installed package."""
    with pytest.raises(SystemExit) as exc:
        main(["bench"])
    assert exc.value.code == 2
    assert "invalid choice: 'bench'" in capsys.readouterr().err
