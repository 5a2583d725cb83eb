"""LightAttention: forward/backward with variable lengths, padding invariance, the sublocal build
against its torch.nn build weight for weight, and learning a planted signal in embeddings."""

from __future__ import annotations

import pytest
import torch

from sublocal_kernels.models import LightAttention, convert_state_dict
from tests.helpers import assert_close

D = 12
SMALL = dict(num_classes=4, embedding_dim=D, kernel_size=9, hidden=6)


def batch(B=5, T=40):
    lengths = torch.tensor([1, 2, T, 17, 30][:B])
    features = torch.randn(B, T, D)
    tokens = (torch.arange(T)[None, :] < lengths[:, None]).long()
    return tokens, lengths, features


@pytest.mark.parametrize("layers", ["sublocal", "torch"])
def test_forward_backward_variable_lengths(layers):
    tokens, lengths, features = batch()
    model = LightAttention(**SMALL, layers=layers)
    out = model.forward_details(tokens, lengths, features)
    assert out.logits.shape == (5, 4) and out.representation.shape == (5, 2 * D)
    att = out.attention
    assert (att[torch.arange(att.shape[1])[None] >= lengths[:, None]] == 0).all()
    assert_close(att.sum(1), torch.ones(5), torch.float32, name="attention sums")
    torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 2, 3, 0])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # Padding invariance: a sequence alone, unpadded, gives what it gave inside the batch.
    model.eval()
    with torch.no_grad():
        full = model(tokens, lengths, features)
        for i in (0, 3):
            n = int(lengths[i])
            alone = model(tokens[i:i + 1, :n], lengths[i:i + 1], features[i:i + 1, :n])
            assert_close(alone[0], full[i], torch.float32, scale=10, name=f"seq {i} alone")


def test_sublocal_build_matches_torch_build():
    """Weights copied from the sublocal build into the torch.nn build give the same outputs and
    the same gradients (float64, dropout off)."""
    tokens, lengths, features = batch()
    features = features.double()
    torch.manual_seed(0)
    ours = LightAttention(**SMALL, dropout=0.0).double()
    peer = LightAttention(**SMALL, dropout=0.0, layers="torch").double()
    peer.load_state_dict(convert_state_dict(ours.state_dict(), peer, to="torch"))
    a, b = ours.forward_details(tokens, lengths, features), peer.forward_details(tokens, lengths, features)
    assert_close(a.logits, b.logits, torch.float64, name="logits")
    assert_close(a.representation, b.representation, torch.float64, name="representation")
    assert_close(a.attention, b.attention, torch.float64, name="attention")
    labels = torch.tensor([0, 1, 2, 3, 0])
    torch.nn.functional.cross_entropy(a.logits, labels).backward()
    torch.nn.functional.cross_entropy(b.logits, labels).backward()
    grads_peer = convert_state_dict({k: p.grad for k, p in peer.named_parameters()}, ours, to="sublocal")
    assert set(grads_peer) == {k for k, _ in ours.named_parameters()}
    for k, p in ours.named_parameters():
        assert_close(p.grad, grads_peer[k], torch.float64, name=f"grad {k}")


def test_learns_a_planted_signal():
    """Class 1 sequences carry one planted embedding vector at a random valid step; the model
    trained for 25 steps separates the classes on fresh data."""
    g = torch.Generator().manual_seed(1)
    motif = torch.randn(D, generator=g) * 2

    def data(n):
        T = 30
        lengths = torch.randint(10, T + 1, (n,), generator=g)
        features = torch.randn(n, T, D, generator=g) * 0.5
        labels = torch.arange(n) % 2
        for i in range(n):
            if labels[i]:
                features[i, int(torch.randint(0, int(lengths[i]), (1,), generator=g))] += motif
        tokens = (torch.arange(T)[None, :] < lengths[:, None]).long()
        return tokens, lengths, features, labels

    torch.manual_seed(0)
    model = LightAttention(num_classes=2, embedding_dim=D, kernel_size=3, hidden=8, dropout=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    tokens, lengths, features, labels = data(64)
    for _ in range(25):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(tokens, lengths, features), labels).backward()
        opt.step()
    model.eval()
    tokens, lengths, features, labels = data(64)
    with torch.no_grad():
        accuracy = (model(tokens, lengths, features).argmax(1) == labels).float().mean()
    assert accuracy >= 0.9, accuracy


@pytest.mark.parametrize("kw,match", [
    (dict(embedding_dim=0), r"`embedding_dim` must be a positive int"),
    (dict(kernel_size=0), r"`kernel_size` must be a positive int"),
    (dict(hidden=-1), r"`hidden` must be a positive int"),
    (dict(dropout=1.0), r"`dropout` must be in \[0, 1\)"),
    (dict(layers="keras"), r"layers must be one of"),
])
def test_bad_hyperparameters(kw, match):
    with pytest.raises(ValueError, match=match):
        LightAttention(**{**SMALL, **kw})


def test_bad_features():
    tokens, lengths, features = batch()
    model = LightAttention(**SMALL)
    with pytest.raises(ValueError, match=r"`features` must be the \(B, T, 12\) embeddings, got None"):
        model(tokens, lengths)
    with pytest.raises(ValueError, match=r"`features` must be the \(B, T, 12\) embeddings, got \(5, 40, 11\)"):
        model(tokens, lengths, features[..., :11])
    with pytest.raises(ValueError, match=r"`tokens` must have shape \(5, 40\)"):
        model(tokens[:, :39], lengths, features)


def test_config_records_the_hyperparameters():
    model = LightAttention(**SMALL, dropout=0.1)
    assert model.config == {**SMALL, "dropout": 0.1, "layers": "sublocal", "alphabet": "protein", "encoding": "none"}
    rebuilt = LightAttention(**model.config)
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in model.parameters()]


def test_encoded_residues_with_or_without_embeddings():
    # With an encoding, the residues are encoded first and the embeddings (if any) appended.
    tokens = torch.randint(1, 21, (3, 11))
    lengths = torch.tensor([11, 4, 1])
    model = LightAttention(num_classes=4, embedding_dim=0, kernel_size=3, hidden=5, encoding="onehot")
    assert model.head[0].in_features == 2 * 20 and model(tokens, lengths).shape == (3, 4)
    both = LightAttention(num_classes=4, embedding_dim=6, kernel_size=3, hidden=5, encoding="onehot")
    assert both(tokens, lengths, torch.randn(3, 11, 6)).shape == (3, 4)
    assert both.head[0].in_features == 2 * 26
    with pytest.raises(ValueError, match="embedding_dim"):
        LightAttention(num_classes=4, embedding_dim=0)


def test_one_sequence_training_batch_uses_running_statistics():
    model = LightAttention(**SMALL).train()
    x = torch.randn(1, 9, SMALL["embedding_dim"])
    out = model(torch.ones(1, 9, dtype=torch.int64), torch.tensor([9]), x)
    assert out.shape == (1, SMALL["num_classes"]) and torch.isfinite(out).all()
