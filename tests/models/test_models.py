"""Every classifier: forward and backward with variable lengths, padding invariance, and the
sublocal_kernels.nn build against the same model built from torch.nn layers, weight for weight."""

import numpy as np
import pytest
import torch

from sublocal_kernels.data import SequenceDataset, collate, make_synthetic
from sublocal_kernels.models import MODELS, Ensemble, build_model, convert_state_dict

from ..helpers import assert_close

# Small versions of every model (the defaults are the papers' sizes).
SMALL = {
    "rlstm": dict(widths=(1, 3, 5), filters_per_width=3, hidden_size=6, dense_size=5),
    "alstm": dict(widths=(1, 3, 5, 9), filters_per_width=3, hidden_size=6, attention_size=7, dense_size=5),
    "cnnlstm": dict(filters_per_width=3, second_filters=4, hidden_size=5, dense_size=6),
    "qrnn": dict(alphabet="protein", hidden_size=6, num_layers=2, window=2, attention_size=5, dense_size=5),
    "qrnn-mean": dict(alphabet="protein", hidden_size=6, num_layers=2, window=3, pooling="mean", dense_size=5,
                      bidirectional=False),
    "qrnn-mean-bi": dict(alphabet="protein", hidden_size=5, num_layers=2, window=2, pooling="mean", dense_size=5),
    "tcn": dict(alphabet="protein", channels=6, num_levels=3, kernel_size=3, dense_size=5),
    "tcn-attention": dict(alphabet="protein", channels=6, num_levels=2, kernel_size=2, pooling="attention",
                          attention_size=4, dense_size=5),
}

def make(name, layers, **extra):
    kind = name.split("-")[0]
    return build_model(kind, num_classes=4, layers=layers, **{**SMALL[name], **extra})


@pytest.fixture(scope="module")
def batch():
    data = make_synthetic(n_per_class=2, min_length=50, max_length=120, seed=5,
                          classes=("Cytoplasm", "Nucleus", "ER", "Peroxisome"))
    ds = SequenceDataset(data.records)
    b = collate(ds, np.arange(len(ds)))
    # Awkward lengths on purpose: 1, 2 and the full padded length next to the synthetic ones.
    lengths = b.lengths.clone()
    lengths[0], lengths[1] = 1, 2
    tokens = b.tokens.clone()
    T = tokens.shape[1]
    lengths[2] = T
    tokens[2] = torch.randint(1, 21, (T,))
    for i, n in enumerate(lengths.tolist()):
        tokens[i, n:] = 0
    return tokens, lengths, b.labels % 4


CASES = [pytest.param(n, layers, id=f"{n}-{layers}") for layers in ("torch", "sublocal") for n in SMALL]


@pytest.mark.parametrize("name, layers", CASES)
def test_forward_backward_variable_lengths(name, layers, batch):
    tokens, lengths, labels = batch
    model = make(name, layers)
    out = model.forward_details(tokens, lengths)
    assert out.logits.shape == (len(tokens), 4) and torch.isfinite(out.logits).all()
    if out.attention is not None:
        att = out.attention
        assert (att[torch.arange(att.shape[1])[None] >= lengths[:, None]] == 0).all()
        assert_close(att.sum(1), torch.ones(len(tokens)), torch.float32, name="attention sums")
    torch.nn.functional.cross_entropy(out.logits, labels).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    # Padding invariance: a sequence alone, unpadded, gives what it gave inside the batch.
    model.eval()
    with torch.no_grad():
        full = model(tokens, lengths)
        for i in (0, 3):
            n = int(lengths[i])
            alone = model(tokens[i:i + 1, :n], lengths[i:i + 1])
            assert_close(alone[0], full[i], torch.float32, scale=10, name=f"{name} seq {i} alone")


@pytest.mark.parametrize("name", SMALL)
def test_sublocal_build_matches_torch_build(name, batch):
    """Weights copied from the sublocal build into the torch.nn build give the same outputs and
    the same gradients (float64, dropout off)."""
    tokens, lengths, labels = batch
    torch.manual_seed(0)
    ours = make(name, "sublocal", dropout=0.0).double()
    peer = make(name, "torch", dropout=0.0).double()
    peer.load_state_dict(convert_state_dict(ours.state_dict(), peer, to="torch"))
    a, b = ours.forward_details(tokens, lengths), peer.forward_details(tokens, lengths)
    assert_close(a.logits, b.logits, torch.float64, name="logits")
    assert_close(a.representation, b.representation, torch.float64, name="representation")
    if a.attention is not None:
        assert_close(a.attention, b.attention, torch.float64, name="attention")
    torch.nn.functional.cross_entropy(a.logits, labels).backward()
    torch.nn.functional.cross_entropy(b.logits, labels).backward()
    grads_peer = convert_state_dict({k: p.grad for k, p in peer.named_parameters()}, ours, to="sublocal")
    for k, p in ours.named_parameters():
        assert_close(p.grad, grads_peer[k], torch.float64, name=f"grad {k}")


@pytest.mark.parametrize("name", SMALL)
def test_shard_gradients_add_up(name, batch):
    """What DistributedDataParallel relies on: the fused build's gradients of two shards' loss
    sums add up to the gradient of the whole batch's loss sum (float64, dropout off)."""
    tokens, lengths, labels = batch
    torch.manual_seed(0)
    model = make(name, "sublocal", dropout=0.0).double()

    def grads(rows):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(tokens[rows], lengths[rows]), labels[rows], reduction="sum").backward()
        return {k: p.grad.clone() for k, p in model.named_parameters()}

    rows = torch.arange(len(tokens))
    whole, first, second = grads(rows), grads(rows[::2]), grads(rows[1::2])
    for k in whole:
        assert_close(first[k] + second[k], whole[k], torch.float64, name=f"grad {k}")


def test_ensemble_averages_probabilities(batch):
    tokens, lengths, _ = batch
    members = [make("rlstm", "torch").eval() for _ in range(3)]
    ens = Ensemble(members).eval()
    with torch.no_grad():
        expected = torch.stack([torch.softmax(m(tokens, lengths), -1) for m in members]).mean(0)
        assert_close(ens.predict_proba(tokens, lengths), expected, torch.float32)
        assert_close(torch.softmax(ens(tokens, lengths), -1), expected, torch.float32)
    with pytest.raises(ValueError, match="at least one"):
        Ensemble([])
    with pytest.raises(ValueError, match="same number of classes"):
        Ensemble([members[0], build_model("rlstm", num_classes=3, layers="torch", **SMALL["rlstm"])])


def test_config_round_trip():
    for name in SMALL:
        model = make(name, "torch")
        again = build_model(model.name, **model.config)
        assert again.config == model.config
        assert [k for k in again.state_dict()] == [k for k in model.state_dict()]


@pytest.mark.parametrize("kw, match", [
    (dict(hidden_size=0), "hidden_size"), (dict(dropout=1.0), "dropout"), (dict(layers="jax"), "layers"),
    (dict(encoding="word2vec"), "encoding"), (dict(widths=(1, 3), filters_per_width=-1), "filters_per_width"),
])
def test_bad_hyperparameters(kw, match):
    with pytest.raises(ValueError, match=match):
        build_model("alstm", num_classes=3, **{"layers": "torch", **kw})
    with pytest.raises(ValueError, match="model must be one of"):
        build_model("transformer", num_classes=3)


def test_registry_names():
    assert set(MODELS) == {"rlstm", "alstm", "cnnlstm", "qrnn", "tcn", "light-attention", "mlp", "kmer"}


@pytest.mark.parametrize("num_layers", [1, 2])
def test_torch_bilstm_equals_packed_nn_lstm(num_layers):
    """The torch build's LSTM (padded, per-length reversal) is nn.LSTM on a PackedSequence."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from sublocal_kernels.models.convert import _lstm_names
    from sublocal_kernels.models.layers import TorchBiLSTM

    ref = torch.nn.LSTM(5, 4, num_layers=num_layers, batch_first=True, bidirectional=True).double()
    ours = TorchBiLSTM(5, 4, num_layers).double()
    theirs = ref.state_dict()
    ours.load_state_dict({a: theirs[b] for a, b in _lstm_names(num_layers, 2)})
    lengths = torch.tensor([9, 1, 4, 9, 6])
    x = torch.randn(5, 9, 5, dtype=torch.float64)
    out, h_n = ours(x, lengths)
    packed, (h_ref, _) = ref(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    out_ref, _ = pad_packed_sequence(packed, batch_first=True, total_length=9)
    assert_close(out, out_ref, torch.float64, name="output")
    assert_close(h_n, h_ref, torch.float64, name="h_n")


def test_forget_bias_added_at_initialisation():
    torch.manual_seed(1)
    plain = make("alstm", "torch")
    torch.manual_seed(1)
    biased = make("alstm", "torch", forget_bias=3.0)
    for (name, a), (_, b) in zip(plain.named_parameters(), biased.named_parameters()):
        if name.endswith("bias_ih_l0") and ".lstm." in f".{name}":
            h = a.shape[0] // 4
            assert torch.equal(b[h:2 * h], a[h:2 * h] + 3.0) and torch.equal(b[:h], a[:h]), name
        else:
            assert torch.equal(a, b), name


def test_convert_state_dict_leaves_a_stock_lstm_alone():
    """Modules are recognised by class: a stock torch.nn.LSTM next to ours keeps its keys."""
    from sublocal_kernels import nn as snn
    from sublocal_kernels.models.layers import TorchBiLSTM

    torch.manual_seed(0)
    ours = torch.nn.ModuleDict({"lstm": snn.LSTM(3, 4, batch_first=True, bidirectional=True),
                                "stock": torch.nn.LSTM(3, 4, batch_first=True, bidirectional=True)})
    peer = torch.nn.ModuleDict({"lstm": TorchBiLSTM(3, 4), "stock": torch.nn.LSTM(3, 4, batch_first=True,
                                                                                  bidirectional=True)})
    converted = convert_state_dict(peer.state_dict(), ours, to="sublocal")
    ours.load_state_dict(converted)  # strict: every key of both modules present, no extra ones
    for k, v in peer["stock"].state_dict().items():
        assert torch.equal(ours["stock"].state_dict()[k], v), k
    assert torch.equal(ours["lstm"].weight_hh_l0_reverse, peer["lstm"].directions[0][1].weight_hh_l0)
