"""`models.KmerClassifier` (`--model kmer`): the k-mer frequencies against a plain Python count,
the fitted layer against scikit-learn's `predict_proba` (also after a safetensors round trip),
a planted motif, multi-label fitting, class weights, and argument errors. Generated data only."""

import numpy as np
import pytest
import torch

from sublocal_kernels.data import SequenceDataset
from sublocal_kernels.data.alphabets import AMINO_ACIDS, NUCLEOTIDES, get_alphabet
from sublocal_kernels.data.readers import Record
from sublocal_kernels.models.kmer import ABSENT_LOGIT, KmerClassifier

pytest.importorskip("sklearn")


def _reference(tokens, length, k, size):
    """k-mer frequencies of one sequence, counted window by window."""
    out = []
    for j in range(1, k + 1):
        counts = np.zeros(size ** j)
        for p in range(length - j + 1):
            window = tokens[p:p + j]
            if all(1 <= t <= size for t in window):
                code = 0
                for t in window:
                    code = code * size + (t - 1)
                counts[code] += 1
        out.append(counts / max(counts.sum(), 1))
    return np.concatenate(out)


def _random_sequence(rng, letters, length, motif=None, copies=0):
    seq = list(rng.choice(list(letters), size=length))
    for _ in range(copies):
        p = int(rng.integers(0, length - len(motif) + 1))
        seq[p:p + len(motif)] = motif
    return "".join(seq)


def _planted(rng, n_per_class, motifs, length=(40, 90), copies=3):
    """Records of class i carry `copies` of motif i (None: background only)."""
    records = []
    for c, motif in enumerate(motifs):
        for i in range(n_per_class[c] if isinstance(n_per_class, (list, tuple)) else n_per_class):
            L = int(rng.integers(*length))
            seq = _random_sequence(rng, AMINO_ACIDS, L, motif, copies if motif else 0)
            records.append(Record(f"c{c}_{i}", seq, f"class{c}"))
    return records


def _probs(model, ds, indices):
    from sublocal_kernels.data.dataset import collate

    batch = collate(ds, indices)
    with torch.no_grad():
        logits = model(batch.tokens, batch.lengths).double()
    return torch.sigmoid(logits).numpy() if model.multi_label else torch.softmax(logits, 1).numpy()


def test_feature_layout_and_config_round_trip():
    model = KmerClassifier(num_classes=4, k=3)
    assert model.num_features == 20 + 400 + 8000 == len(model.feature_names())
    assert model.feature_names()[:2] == ["A", "C"] and model.feature_names()[20:22] == ["AA", "AC"]
    assert model.feature_names()[-1] == "YYY"
    rna = KmerClassifier(num_classes=2, alphabet="rna", encoding="onehot", k=4)
    assert rna.num_features == 4 + 16 + 64 + 256 and rna.size == 4
    again = KmerClassifier(**rna.config)
    assert again.config == rna.config == {"num_classes": 2, "alphabet": "rna", "k": 4, "multi_label": False,
                                          "extra_features": 0, "C": 1.0, "standardize": True}
    assert sorted(again.state_dict()) == sorted(rna.state_dict()) == ["linear.bias", "linear.weight", "mean", "std"]
    assert rna.first_conv() is None


@pytest.mark.parametrize("alphabet,k", [("protein", 3), ("nucleotide", 4)])
def test_frequencies_match_python_reference(alphabet, k):
    rng = np.random.default_rng(1)
    vocab = get_alphabet(alphabet).vocab_size  # includes the ambiguous letters (X B Z J; N)
    size = len(AMINO_ACIDS if alphabet == "protein" else NUCLEOTIDES)
    B, T = 12, 40
    lengths = rng.integers(1, T + 1, size=B)
    lengths[:4] = [1, 2, k - 1, k]  # shorter than k, and exactly k
    tokens = rng.integers(1, size + 1, size=(B, T))
    ambiguous = rng.random((B, T)) < 0.08
    tokens[ambiguous] = rng.integers(size + 1, vocab, size=ambiguous.sum())
    tokens[5, T // 2:] = 0  # padding inside the stated length: skipped too
    junk = tokens.copy()  # residues past each length are not read (whatever they hold)
    for b, L in enumerate(lengths):
        tokens[b, L:] = 0
    model = KmerClassifier(num_classes=2, alphabet=alphabet, k=k)
    got = model.kmer_frequencies(torch.from_numpy(junk), torch.from_numpy(lengths))
    assert got.dtype == torch.float32 and got.shape == (B, model.num_features)
    want = np.stack([_reference(tokens[b].tolist(), int(lengths[b]), k, size) for b in range(B)])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-7)
    assert (got[0, size:] == 0).all()  # one residue: no 2-mers, no 3-mers
    # Each length's block sums to 1 where it has a window.
    block = got[:, size:size + size ** 2].sum(1)
    assert torch.allclose(block[block > 0], torch.ones(int((block > 0).sum())))
    # A batch's padding does not change a sequence's frequencies.
    one = model.kmer_frequencies(torch.from_numpy(tokens[6:7, :lengths[6]]), torch.from_numpy(lengths[6:7]))
    torch.testing.assert_close(one, got[6:7])


def test_long_rna_sequence():
    model = KmerClassifier(num_classes=2, alphabet="nucleotide", k=6)
    L = 91_671
    tokens = torch.randint(1, 6, (2, L), generator=torch.Generator().manual_seed(0))
    freqs = model.kmer_frequencies(tokens, torch.tensor([L, 1000]))
    assert freqs.shape == (2, 4 + 16 + 64 + 256 + 1024 + 4096)
    assert torch.allclose(freqs[:, :4].sum(1), torch.ones(2))


def test_fit_matches_sklearn_predict_proba(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(2)
    records = _planted(rng, 20, ["WCW", "KKR", None], copies=1)
    ds = SequenceDataset(records)
    idx = np.arange(len(ds))
    train, test = idx[idx % 4 != 0], idx[idx % 4 == 0]
    model = KmerClassifier(num_classes=3, k=2, C=0.5).fit(ds, train, batch_size=7)
    freqs = model.frequencies_of(ds, test)
    x = (freqs.astype(np.float64) - model.mean.double().numpy()) / model.std.double().numpy()
    probs = _probs(model, ds, test)
    np.testing.assert_allclose(probs, model.estimator_.predict_proba(x), atol=1e-5)
    # The same as a StandardScaler + LogisticRegression pipeline fitted on the same frequencies.
    scaler = StandardScaler().fit(model.frequencies_of(ds, train).astype(np.float64))
    ref = LogisticRegression(C=0.5, max_iter=5000, tol=1e-6).fit(
        scaler.transform(model.frequencies_of(ds, train).astype(np.float64)), ds.labels[train])
    np.testing.assert_allclose(probs, ref.predict_proba(scaler.transform(freqs.astype(np.float64))), atol=1e-4)
    out = model.forward_details(*_batch(ds, test))
    assert out.attention is None and out.representation.shape == (len(test), model.num_features)
    torch.testing.assert_close(out.representation, torch.from_numpy(x).float(), rtol=1e-4, atol=1e-4)

    # safetensors round trip: rebuilt from the config, the same logits.
    safetensors = pytest.importorskip("safetensors.torch")
    path = str(tmp_path / "kmer.safetensors")
    safetensors.save_file(model.state_dict(), path)
    again = KmerClassifier(**model.config)
    again.load_state_dict(safetensors.load_file(path))
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(*_batch(ds, test)), model(*_batch(ds, test)), rtol=0, atol=0)


def _batch(ds, indices):
    from sublocal_kernels.data.dataset import collate

    b = collate(ds, indices)
    return b.tokens, b.lengths


def test_planted_motif_is_learned():
    # Measured (seeds 0-5): test accuracy 0.90-0.97 at k=2 (chance 1/3). At k=3 the same split
    # reaches only ~0.77: standardising 8,000 sparse 3-mer frequencies scales a rare 3-mer's
    # value by about sqrt(N / count), so the noise 3-mers outweigh the motif on 300 proteins.
    rng = np.random.default_rng(0)
    records = _planted(rng, 150, ["WCW", "HMH", None], length=(40, 80), copies=3)
    ds = SequenceDataset(records)
    idx = rng.permutation(len(ds))
    train, test = idx[:300], idx[300:]
    model = KmerClassifier(num_classes=3, k=2).fit(ds, train)
    accuracy = (_probs(model, ds, test).argmax(1) == ds.labels[test]).mean()
    assert accuracy >= 0.85, accuracy  # measured 0.947
    names = model.feature_names()
    assert {names[i] for i in model.linear.weight[0].argsort(descending=True)[:2].tolist()} == {"WC", "CW"}
    model3 = KmerClassifier(num_classes=3, k=3).fit(ds, train)
    assert model3.feature_names()[int(model3.linear.weight[0].argmax())] == "WCW"


def test_binary_and_unseen_class():
    rng = np.random.default_rng(4)
    records = _planted(rng, 25, ["WCW", None], copies=2)
    ds = SequenceDataset(records, classes=["class0", "class1", "never"])
    model = KmerClassifier(num_classes=3, k=2).fit(ds, np.arange(len(ds)))
    probs = _probs(model, ds, np.arange(len(ds)))
    assert (probs[:, 2] == 0).all()
    x = model.standardize(torch.from_numpy(model.frequencies_of(ds, np.arange(len(ds))))).double().numpy()
    np.testing.assert_allclose(probs[:, :2], model.estimator_.predict_proba(x), atol=1e-5)
    with pytest.raises(ValueError, match="at least 2"):
        model.fit(ds, np.arange(25))


def test_multilabel_fit():
    rng = np.random.default_rng(5)
    records = []
    for i in range(300):
        has = [rng.random() < 0.5, rng.random() < 0.5]
        seq = list(_random_sequence(rng, AMINO_ACIDS, int(rng.integers(40, 80))))
        for motif, on in zip(["WCW", "HMH"], has):
            for _ in range(3 * on):
                p = int(rng.integers(0, len(seq) - 2))
                seq[p:p + 3] = motif
        labels = [c for c, on in zip(["a", "b"], has) if on] or ["none"]
        records.append(Record(f"r{i}", "".join(seq), ";".join(labels)))
    ds = SequenceDataset(records, classes=["a", "b", "none", "empty"], multi_label=True)
    train, test = np.arange(200), np.arange(200, 300)
    model = KmerClassifier(num_classes=4, k=2, multi_label=True).fit(ds, train, class_weight=[1.0, 1.0, 2.0, 1.0])
    assert model.linear.bias[3].item() == ABSENT_LOGIT and (model.linear.weight[3] == 0).all()
    probs = _probs(model, ds, test)
    predicted = probs[:, :2] > 0.5
    assert (predicted == (ds.targets[test, :2] > 0.5)).mean() >= 0.85  # measured 0.93
    x = model.standardize(torch.from_numpy(model.frequencies_of(ds, test))).double().numpy()
    for c in range(3):
        np.testing.assert_allclose(probs[:, c], model.estimator_[c].predict_proba(x)[:, 1], atol=1e-5)
    assert model.estimator_[2].class_weight == {0: 1.0, 1: 2.0} and model.estimator_[3] is None
    inferred = KmerClassifier(num_classes=4, k=1).fit(ds, train)  # multi-label from the data set
    assert inferred.multi_label and inferred.config["multi_label"] and len(inferred.estimator_) == 4
    with pytest.raises(ValueError, match="multi_label=True"):
        KmerClassifier(num_classes=4, k=1).fit(ds, train, multi_label=False)


def test_balanced_class_weight_raises_minority_recall():
    rng = np.random.default_rng(6)
    # A weak signal (one motif copy) and a small minority class: unweighted, the model leans on
    # the majority class.
    records = _planted(rng, [200, 30], [None, "WCW"], length=(80, 120), copies=1)
    ds = SequenceDataset(records)
    idx = rng.permutation(len(ds))
    train, test = idx[: len(idx) // 2], idx[len(idx) // 2:]
    recall = {}
    for cw in (None, "balanced"):
        model = KmerClassifier(num_classes=2, k=2, C=0.05).fit(ds, train, class_weight=cw)
        predicted = _probs(model, ds, test).argmax(1)
        minority = ds.labels[test] == 1
        recall[cw] = (predicted[minority] == 1).mean()
    assert recall["balanced"] > recall[None], recall  # measured 0.31 against 0.06


def test_argument_errors():
    with pytest.raises(ValueError, match="--features"):
        KmerClassifier(num_classes=2, extra_features=5)
    model = KmerClassifier(num_classes=2, k=1)
    with pytest.raises(ValueError, match="--features"):
        model(torch.ones(1, 3, dtype=torch.int64), torch.tensor([3]), torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match="`k` must be a positive int"):
        KmerClassifier(num_classes=2, k=0)
    with pytest.raises(ValueError, match="use a smaller k"):
        KmerClassifier(num_classes=2, k=6)
    with pytest.raises(ValueError, match="`C` must be positive"):
        KmerClassifier(num_classes=2, C=0)
    ds = SequenceDataset(_planted(np.random.default_rng(7), 5, ["WCW", None]))
    with pytest.raises(ValueError, match="one weight per class"):
        model.fit(ds, np.arange(10), class_weight=[1.0])
    with pytest.raises(ValueError, match="class_weight must be None"):
        model.fit(ds, np.arange(10), class_weight="auto")
