"""sublocal pretrain / embed / probe from the command line: tiny runs end to end, and one-line
errors for bad flags, files and checkpoints."""

import numpy as np
import pytest

from sublocal_kernels.data.embeddings import open_embeddings
from sublocal_kernels.lm.embed import load_pretrained
from sublocal_kernels.lm.synthetic import write_fasta
from tests.lm import chain_sequences
from tests.cli.conftest import one_error, run_cli, run_torchrun, tiny_fasta  # noqa: F401 (a fixture)

TINY = ["--hidden-size", "8", "--embedding-dim", "4", "--max-tokens", "800", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def lm_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("lmcli")
    seqs = chain_sequences(40, 3, 60)
    fasta = d / "x.fasta"
    ids = write_fasta(fasta, seqs)
    labels = d / "labels.tsv"
    labels.write_text("id\tvalue\tlabel\n" + "".join(f"{i}\t{len(s)}\t{'long' if len(s) > 30 else 'short'}\n"
                                                     for i, s in zip(ids, seqs)))
    return d, fasta, labels, ids, seqs


def test_pretrain_embed_probe_end_to_end(lm_data, tmp_path, capsys):
    d, fasta, labels, ids, seqs = lm_data
    run = tmp_path / "run"
    status, out, err = run_cli(capsys, "pretrain", fasta, "--out", run, "--epochs", "2", *TINY)
    assert status == 0, err
    assert "val loss" in out and "perplexity" in out and "accuracy" in out
    ck = load_pretrained(str(run))
    assert ck.meta["pretrain_state"]["epoch"] == 2
    for pool, dim in (("mean", 8), ("unirep", 24)):
        emb = tmp_path / f"{pool}.h5"
        status, _, err = run_cli(capsys, "embed", run, fasta, "-o", emb, "--pool", pool)
        assert status == 0, err
        with open_embeddings(str(emb)) as e:
            assert e.kind == "per-protein" and e.dim == dim and sorted(e.ids) == sorted(ids)
            assert e.attrs["pool"] == pool
    res = tmp_path / "res.npz"
    status, _, err = run_cli(capsys, "embed", run, fasta, "-o", res, "--per-residue", "--chunk", "7",
                             "--max-tokens", "50")
    assert status == 0, err
    with open_embeddings(str(res)) as e:
        assert e.kind == "per-residue"
        for i, s in zip(ids, seqs):
            assert e[i].shape == (len(s), 8)
    status, out, err = run_cli(capsys, "probe", tmp_path / "mean.h5", labels, "--task", "regression", "--folds", "3")
    assert status == 0, err
    assert "Spearman rho" in out
    status, out, err = run_cli(capsys, "probe", res, labels, "--task", "classification", "--folds", "3",
                               "--tsne", tmp_path / "t.png", "--json", tmp_path / "m.json")
    assert status == 0, err
    assert "accuracy" in out and "MCC" in out and (tmp_path / "t.png").stat().st_size > 0


def test_embed_values_are_the_models_representation(lm_data, tmp_path, capsys):
    import torch

    from sublocal_kernels.data import SequenceDataset, collate
    from sublocal_kernels.data.readers import read_fasta

    d, fasta, labels, ids, seqs = lm_data
    run = tmp_path / "run"
    assert run_cli(capsys, "pretrain", fasta, "--out", run, "--max-steps", "2", *TINY)[0] == 0
    emb = tmp_path / "final.npz"
    assert run_cli(capsys, "embed", run, fasta, "-o", emb, "--pool", "final", "--max-tokens", "64")[0] == 0
    model = load_pretrained(str(run)).model
    ds = SequenceDataset(read_fasta(fasta), classes=[])
    with torch.no_grad():
        b = collate(ds, range(len(ds)))
        want = model.represent(b.tokens, b.lengths, "final").numpy()
    with open_embeddings(str(emb)) as e:
        got = np.stack([e[i] for i in ids])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_conv_autoencoder_pretrains_embeds_and_probes(lm_data, tmp_path, capsys):
    d, fasta, labels, ids, seqs = lm_data
    run = tmp_path / "ae"
    status, out, err = run_cli(capsys, "pretrain", fasta, "--out", run, "--model", "conv-autoencoder", "--latent",
                               "2x5", "--channels", "6", "--kernel-size", "3", "--epochs", "1", "--no-progress",
                               "--device", "cpu")
    assert status == 0, err
    emb = tmp_path / "ae.npz"
    assert run_cli(capsys, "embed", run, fasta, "-o", emb)[0] == 0
    with open_embeddings(str(emb)) as e:
        assert e.dim == 10
    status, out, err = run_cli(capsys, "probe", emb, labels, "--task", "classification", "--folds", "3")
    assert status == 0, err


def test_errors_are_one_line(lm_data, tmp_path, capsys):
    d, fasta, labels, ids, seqs = lm_data
    run = tmp_path / "run"
    assert run_cli(capsys, "pretrain", fasta, "--out", run, "--max-steps", "1", *TINY)[0] == 0
    cases = [
        (("pretrain", fasta, "--out", run, *TINY), 1, "is not empty"),
        (("pretrain", fasta, "--out", run, "--resume", "--lr", "0.5", *TINY), 1, "--lr 0.5 (checkpoint: 0.001)"),
        (("pretrain", fasta, "--out", tmp_path / "x", "--latent", "2x5", *TINY), 2,
         "--latent does not apply to --model protein-lm"),
        (("pretrain", fasta, "--out", tmp_path / "x", "--model", "conv-autoencoder", "--kernel-size", "4"), 2,
         "--kernel-size must be odd"),
        (("pretrain", tmp_path / "nope.fasta", "--out", tmp_path / "x"), 1, "no such file"),
        (("embed", run, fasta, "-o", tmp_path / "e.txt"), 2, "must end in .h5, .hdf5 or .npz"),
        (("embed", run, fasta, "-o", tmp_path / "e.h5", "--per-residue", "--pool", "mean"), 2,
         "--pool does not apply with --per-residue"),
        (("embed", tmp_path, fasta, "-o", tmp_path / "e.h5"), 1, "no such checkpoint"),
        (("probe", tmp_path / "missing.h5", labels, "--task", "regression"), 1, "no such file"),
        (("predict", run, fasta), 1, "a pretrained 'protein-lm' model, not a classifier"),
        (("evaluate", run, fasta), 1, "a pretrained 'protein-lm' model, not a classifier"),
    ]
    for argv, status, message in cases:
        got, _, err = run_cli(capsys, *argv)
        assert got == status, (argv, err)
        assert message in one_error(err, argv[0]), (argv, err)
    emb = tmp_path / "e.npz"
    assert run_cli(capsys, "embed", run, fasta, "-o", emb)[0] == 0
    got, _, err = run_cli(capsys, "embed", run, fasta, "-o", emb)
    assert got == 1 and "exists; pass --overwrite" in one_error(err, "embed")
    extra = tmp_path / "extra.tsv"
    extra.write_text("id\tvalue\n" + "".join(f"{i}\t1\n" for i in ids) + "ghost1\t2\nghost2\t3\n")
    got, _, err = run_cli(capsys, "probe", emb, extra, "--task", "regression")
    assert got == 1 and "no embedding for 2 of the 42 ids" in one_error(err, "probe") and "'ghost1'" in err
    got, _, err = run_cli(capsys, "probe", emb, extra, "--task", "classification")
    assert got == 1 and "needs columns id and label" in one_error(err, "probe")
    dup = tmp_path / "dup.fasta"
    dup.write_text(">a\nMKV\n>a\nMKL\n")
    got, _, err = run_cli(capsys, "embed", run, dup, "-o", tmp_path / "dup.npz")
    assert got == 1 and "line 3, record 'a': duplicate id (first at line 1)" in one_error(err, "embed")
    assert not (tmp_path / "dup.npz").exists()


def test_embed_per_residue_feeds_train_features(tiny_fasta, tmp_path, capsys):
    """The round trip of the shared layout: embed writes per-residue states, train --features reads them."""
    run = tmp_path / "lm"
    assert run_cli(capsys, "pretrain", tiny_fasta, "--out", run, "--max-steps", "2", *TINY)[0] == 0
    emb = tmp_path / "res.h5"
    status, _, err = run_cli(capsys, "embed", run, tiny_fasta, "-o", emb, "--per-residue")
    assert status == 0, err
    clf = tmp_path / "clf"
    status, out, err = run_cli(capsys, "train", tiny_fasta, "--model", "rlstm", "--features", emb, "--out", clf,
                               "--epochs", "1", "--widths", "1,3", "--filters-per-width", "2", "--hidden-size", "4",
                               "--batch-size", "8", "--no-progress", "--device", "cpu")
    assert status == 0, err
    from sublocal_kernels.training import load_checkpoint

    assert load_checkpoint(str(clf / "best.json")).meta["num_features"] == 8


@pytest.mark.slow
def test_pretrain_ddp_two_processes_equal_one(lm_data, tmp_path, capsys):
    """Two gloo processes under torchrun, each reading its own share of every batch, and one
    process: the same weights up to float32 summation order (per-rank sums, then the all-reduce)."""
    import torch

    d, fasta, labels, ids, seqs = lm_data
    common = [str(fasta), "--max-steps", "6", "--batch-size", "8", "--max-tokens", "100000", "--lr", "3e-3",
              "--val-every", "3", *TINY]
    assert run_cli(capsys, "pretrain", *common, "--out", tmp_path / "one")[0] == 0
    run_torchrun("pretrain", *common, "--out", tmp_path / "two")
    a = load_pretrained(str(tmp_path / "one" / "last.json")).model.state_dict()
    b = load_pretrained(str(tmp_path / "two" / "last.json")).model.state_dict()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=2e-5, rtol=1e-4, msg=lambda m: f"{k}: {m}")
    import json

    h1 = json.load(open(tmp_path / "one" / "summary.json"))["history"]
    h2 = json.load(open(tmp_path / "two" / "summary.json"))["history"]
    assert [r["step"] for r in h1] == [r["step"] for r in h2] == [3, 5, 6]  # every 3, epoch end (5 batches)
    for r1, r2 in zip(h1, h2):
        assert r1["val_loss"] == pytest.approx(r2["val_loss"], rel=1e-5)
