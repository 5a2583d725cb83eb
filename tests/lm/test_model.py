"""ProteinLM and ConvAutoencoder: the objective scores valid targets only, and a sequence's loss
and embeddings do not depend on the batch it shares (float64, tight)."""

import pytest
import torch

from sublocal_kernels.models import ConvAutoencoder, ProteinLM, build_model
from sublocal_kernels.models.language_model import END, START, VOCAB_SIZE
from tests.helpers import assert_close

LENGTHS = [23, 1, 9, 17, 2]  # odd sizes, a single residue, unsorted


def _batch(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    tokens = torch.randint(1, 25, (len(lengths), T), generator=g)
    for b, n in enumerate(lengths):
        tokens[b, n:] = 0
    return tokens, torch.tensor(lengths)


MODELS = {
    "lm-1x": lambda: ProteinLM(hidden_size=13, num_layers=1, embedding_dim=5),
    "lm-2x-dropout": lambda: ProteinLM(hidden_size=11, num_layers=2, dropout=0.5, embedding_dim=7),
    "lm-mlstm-2x": lambda: ProteinLM(hidden_size=9, num_layers=2, embedding_dim=5, cell="mlstm"),
    "conv-ae": lambda: ConvAutoencoder(latent_channels=2, latent_length=4, channels=6, kernel_size=3, embedding_dim=5),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_packed_batch_loss_is_token_weighted_mean_of_single_sequences(name):
    model = MODELS[name]().double().eval()
    tokens, lengths = _batch(LENGTHS)
    loss, n, _ = model.score(tokens, lengths)
    per_loss, per_n = [], []
    for b, L in enumerate(LENGTHS):
        s, k, _ = model.score(tokens[b:b + 1, :L], lengths[b:b + 1])
        per_loss.append(s)
        per_n.append(k)
    per_loss, per_n = torch.stack(per_loss), torch.stack(per_n)
    expected_targets = sum(LENGTHS) + (len(LENGTHS) if name.startswith("lm") else 0)
    assert int(n) == int(per_n.sum()) == expected_targets
    token_mean = loss / n
    weighted = (per_loss / per_n * per_n).sum() / per_n.sum()
    assert_close(token_mean, weighted, name="token-averaged loss")
    s2, n2, _ = model.score(tokens, lengths, per_sequence=True)
    assert_close(s2, per_loss, name="per-sequence losses")


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("pool", ["mean", "final", "unirep"])
def test_embeddings_do_not_depend_on_batch_companions(name, pool):
    model = MODELS[name]().double().eval()
    tokens, lengths = _batch(LENGTHS)
    other, other_len = _batch([40, 3], seed=1)
    pooled, residues = model.represent(tokens, lengths, pool, per_residue=True)
    # The same sequences, in another order and beside longer companions (more padding).
    mixed = torch.zeros(7, 40, dtype=torch.long)
    order = [4, 0, 3, 1, 2]
    for row, b in enumerate(order):
        mixed[row + 2, :LENGTHS[b]] = tokens[b, :LENGTHS[b]]
    mixed[:2] = other
    mixed_len = torch.tensor([40, 3] + [LENGTHS[b] for b in order])
    p2, r2 = model.represent(mixed, mixed_len, pool, per_residue=True)
    for row, b in enumerate(order):
        assert_close(p2[row + 2], pooled[b], name=f"pooled {pool} of sequence {b}")
        L = LENGTHS[b]
        assert_close(r2[row + 2, :L], residues[b, :L], name=f"per-residue states of sequence {b}")
        assert bool((r2[row + 2, L:] == 0).all()), "per-residue states past L are zero"
    assert pooled.shape == (len(LENGTHS), model.dim(pool))
    assert residues.shape == (len(LENGTHS), max(LENGTHS), model.residue_dim)


def test_padding_is_never_scored_and_end_is_the_last_target():
    model = ProteinLM(hidden_size=8, embedding_dim=4).double()
    tokens, lengths = _batch([6, 3])
    tgt = ProteinLM.targets(tokens, lengths)
    assert tgt[0].tolist() == tokens[0].tolist() + [END]
    assert tgt[1].tolist() == tokens[1, :3].tolist() + [END, 0, 0, 0]
    garbage = tokens.clone()
    garbage[1, 3:] = 17  # values in the padding must change nothing
    with torch.no_grad():
        a = model.score(tokens, lengths)
        b = model.score(garbage, lengths)
    assert float(a[0]) == float(b[0]) and int(a[1]) == int(b[1]) == 11
    _, n_res, _ = model.score(tokens, lengths, include_end=False)
    assert int(n_res) == 9
    logits = model(tokens, lengths)
    assert logits.shape == (2, 7, VOCAB_SIZE)


def test_mean_pool_averages_start_and_residue_states_final_is_last_state():
    model = ProteinLM(hidden_size=6, embedding_dim=3).double()
    tokens, lengths = _batch([5, 2])
    s = model.states(tokens, lengths)
    mean = model.represent(tokens, lengths, "mean")
    assert_close(mean[1], s.out[1, :3].mean(0), name="mean over START + 2 residues")
    assert_close(model.represent(tokens, lengths, "final")[1], s.out[1, 2], name="final = state after r_L")
    u = model.represent(tokens, lengths, "unirep")
    assert_close(u, torch.cat([mean, s.h, s.c], 1), name="unirep = mean || h || c")
    assert START not in tokens.tolist()


def test_torch_layers_build_is_the_same_model():
    ours = ProteinLM(hidden_size=9, num_layers=2, embedding_dim=4).double()
    theirs = ProteinLM(hidden_size=9, num_layers=2, embedding_dim=4, layers="torch").double()
    theirs.load_state_dict(ours.state_dict())
    tokens, lengths = _batch(LENGTHS)
    assert_close(ours(tokens, lengths), theirs(tokens, lengths), name="logits")
    a, _, _ = ours.score(tokens, lengths)
    a.backward()
    b, _, _ = theirs.score(tokens, lengths)
    b.backward()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        assert_close(p.grad, q.grad, name=f"grad {name}")


def test_config_round_trips_and_bad_arguments_name_themselves():
    for make in MODELS.values():
        m = make()
        again = build_model(m.name, **m.config)
        assert again.config == m.config
    with pytest.raises(ValueError, match="`hidden_size`"):
        ProteinLM(hidden_size=0)
    with pytest.raises(ValueError, match="`cell`"):
        ProteinLM(cell="gru")
    with pytest.raises(ValueError, match="`dropout`"):
        ProteinLM(dropout=1.5)
    with pytest.raises(ValueError, match="`kernel_size`"):
        ConvAutoencoder(kernel_size=4)
    with pytest.raises(ValueError, match="`pool`"):
        ProteinLM(hidden_size=4).represent(*_batch([3]), pool="max")


def test_mlstm_cell_is_unireps_layer_and_trains():
    """cell="mlstm" builds sublocal_kernels.nn.LSTM's multiplicative cell in every layer (UniRep's
    weight_mx / weight_mh beside nn.LSTM's names), and a gradient reaches every parameter."""
    model = ProteinLM(hidden_size=8, num_layers=2, embedding_dim=4, cell="mlstm").double()
    names = set(model.state_dict())
    for k in (0, 1):
        assert {f"lstm.weight_mx_l{k}", f"lstm.weight_mh_l{k}", f"lstm.weight_ih_l{k}", f"lstm.weight_hh_l{k}"} <= names
    assert model.lstm.weight_mh_l0.shape == (8, 8) and model.lstm.weight_hh_l0.shape == (32, 8)
    tokens, lengths = _batch(LENGTHS)
    loss, n, _ = model.score(tokens, lengths)
    (loss / n).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert float(model.lstm.weight_mx_l1.grad.abs().sum()) > 0
    again = build_model("protein-lm", **model.config)
    assert again.config["cell"] == "mlstm" and set(again.state_dict()) == names
    with pytest.raises(ValueError, match="no multiplicative cell"):
        ProteinLM(hidden_size=8, cell="mlstm", layers="torch")
