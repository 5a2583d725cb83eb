"""Learning tests: a trained ProteinLM reaches a Markov chain's entropy rate, and its mean
embeddings separate two chains that counting residues cannot. Sized for the 2-core CPU and run
on one thread (the float results, and so the thresholds, are those of one thread)."""


import numpy as np
import pytest
import torch

from sublocal_kernels.data import collate
from sublocal_kernels.lm import PretrainConfig, embed_fasta, pretrain, probe
from sublocal_kernels.lm.embed import load_pretrained
from sublocal_kernels.lm.pretrain import PretrainData
from sublocal_kernels.lm.synthetic import MarkovChain, write_fasta
from sublocal_kernels.models import ProteinLM
from sublocal_kernels.training.checkpoint import save_checkpoint


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_validation_cross_entropy_reaches_the_chains_entropy_rate(tmp_path, one_thread):
    chain = MarkovChain.random(order=2, concentration=1.0, seed=3)
    rng = np.random.default_rng(0)
    seqs = chain.sample(rng.integers(60, 141, 8000), seed=4)
    fasta = tmp_path / "chain.fasta"
    write_fasta(fasta, seqs)
    cfg = PretrainConfig(fasta=[str(fasta)], out=str(tmp_path / "run"),
                         model_args={"hidden_size": 128, "embedding_dim": 32}, epochs=5, lr=1e-2,
                         schedule="cosine", max_tokens=4000, batch_size=64, val_fraction=0.1, val_max=300,
                         device="cpu", progress=False)
    pretrain(cfg, log=lambda m: None)
    data = PretrainData(cfg, None)
    val = [seqs[i] for i in data.val]  # no filter: kept index = record index
    log_lik, n = chain.log_likelihood(val)
    true_ce = -log_lik / n
    model = load_pretrained(str(tmp_path / "run")).model
    batch = collate(data.dataset(data.val), range(len(data.val)))
    with torch.no_grad():
        nll, count, _ = model.score(batch.tokens, batch.lengths, include_end=False)  # the chain's tokens only
    assert int(count) == n
    model_ce = float(nll) / n
    train_tokens = np.concatenate([seqs[i] for i in data.train])
    freq = np.bincount(train_tokens, minlength=20) / len(train_tokens)
    baseline_ce = float(-np.log(freq[np.concatenate(val)]).mean())
    assert model_ce <= 1.03 * true_ce, (model_ce, true_ce)
    assert baseline_ce >= model_ce + 0.1, (baseline_ce, model_ce)
    assert model_ce >= true_ce - 0.05, "the model cannot beat the chain by much on held-out tokens"


def _two_chains(weight=0.3, seed=0):
    """Two order-1 chains, each a mixture of the uniform matrix and a permutation: both doubly
    stochastic, so both have uniform residue frequencies; they differ only in transitions."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(2):
        perm = np.eye(20)[rng.permutation(20)]
        out.append(MarkovChain((1 - weight) * np.full((20, 20), 1 / 20) + weight * perm))
    return out


@pytest.mark.slow
def test_probe_separates_chains_with_equal_residue_frequencies(tmp_path, one_thread):
    a, b = _two_chains()
    assert np.allclose(a.stationary(), 1 / 20) and np.allclose(b.stationary(), 1 / 20)
    rng = np.random.default_rng(1)
    n = 500
    seqs = a.sample(rng.integers(40, 100, n), seed=2) + b.sample(rng.integers(40, 100, n), seed=3)
    fasta = tmp_path / "mix.fasta"
    ids = write_fasta(fasta, seqs)
    labels = tmp_path / "labels.tsv"
    labels.write_text("id\tlabel\n" + "".join(f"{i}\t{'AB'[k >= n]}\n" for k, i in enumerate(ids)))
    cfg = PretrainConfig(fasta=[str(fasta)], out=str(tmp_path / "run"), model_args={"hidden_size": 64},
                         epochs=20, lr=1e-2, max_tokens=2000, val_fraction=0.1, device="cpu", progress=False)
    pretrain(cfg, log=lambda m: None)
    trained = tmp_path / "trained.h5"
    embed_fasta(str(tmp_path / "run"), str(fasta), str(trained), "mean")
    torch.manual_seed(0)
    untrained_dir = tmp_path / "untrained"
    save_checkpoint(str(untrained_dir), "best", ProteinLM(hidden_size=64),
                    {"classes": [], "alphabet": "protein"})
    untrained = tmp_path / "untrained.h5"
    embed_fasta(str(untrained_dir), str(fasta), str(untrained), "mean")
    got = probe(trained, labels, "classification", folds=5)
    base = probe(untrained, labels, "classification", folds=5)
    counts = np.stack([np.bincount(s, minlength=20) / len(s) for s in seqs])
    np.savez(tmp_path / "counts.npz", **{i: c.astype(np.float32) for i, c in zip(ids, counts)})
    by_counts = probe(tmp_path / "counts.npz", labels, "classification", folds=5)
    # Measured (one thread, this CPU): trained 0.995, untrained 0.961, counts about 0.5.
    assert got["accuracy"] >= 0.95 and got["mcc"] >= 0.9, got
    errors, base_errors = 1 - got["accuracy"], 1 - base["accuracy"]
    assert base["accuracy"] <= got["accuracy"] - 0.02 and base_errors >= 3 * errors, (base, got)
    assert by_counts["accuracy"] <= 0.75, "residue counts alone must not separate the chains"
