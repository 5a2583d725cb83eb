"""Encodings against biopython's BLOSUM80 and the documented one-hot policy."""

import numpy as np
import pytest
import torch
substitution_matrices = pytest.importorskip("Bio.Align.substitution_matrices")

from sublocal_kernels.data import AMINO_ACIDS, ResidueEncoder, blosum80_table, get_alphabet, onehot_table


def test_blosum80_rows_match_biopython():
    m = substitution_matrices.load("BLOSUM80")
    p = get_alphabet("protein")
    table = blosum80_table()
    assert table.shape == (p.vocab_size, 20)
    assert (table[0] == 0).all()
    for t, letter in enumerate(p.tokens, 1):
        if letter == "J":
            expected = [(m["I", a] + m["L", a]) / 2 for a in AMINO_ACIDS]
        else:
            expected = [m[letter, a] for a in AMINO_ACIDS]
        np.testing.assert_array_equal(table[t], np.array(expected, dtype=np.float32), err_msg=letter)
    # Spot checks straight from the published matrix.
    a = p.encode("W")[0]
    assert table[a][AMINO_ACIDS.index("W")] == 16 and table[a][AMINO_ACIDS.index("A")] == -5


def test_onehot_policy():
    p = get_alphabet("protein")
    t = onehot_table()
    tok = {c: int(p.encode(c)[0]) for c in p.tokens}
    np.testing.assert_array_equal(t[tok["K"]], np.eye(20)[AMINO_ACIDS.index("K")])
    assert t[tok["X"]].sum() == pytest.approx(1) and (t[tok["X"]] == 0.05).all()
    assert t[tok["B"]][AMINO_ACIDS.index("D")] == 0.5 and t[tok["B"]][AMINO_ACIDS.index("N")] == 0.5
    assert t[tok["J"]][AMINO_ACIDS.index("I")] == 0.5 and t[tok["J"]][AMINO_ACIDS.index("L")] == 0.5
    assert (t[0] == 0).all()
    rna = onehot_table("nucleotide")
    assert rna.shape == (6, 5) and (rna[1:] == np.eye(5)).all()
    with pytest.raises(ValueError, match="protein encoding"):
        blosum80_table("nucleotide")


@pytest.mark.parametrize("encoding, width", [("onehot", 20), ("blosum80", 20), ("onehot+blosum80", 40),
                                             ("embedding", 7)])
def test_encoder(encoding, width):
    p = get_alphabet("protein")
    enc = ResidueEncoder(p, encoding, embedding_dim=7, extra_features=3)
    assert enc.out_channels == width + 3
    tokens = torch.zeros(2, 5, dtype=torch.long)
    tokens[0, :5] = torch.from_numpy(p.encode("MKWAX").astype(np.int64))
    tokens[1, :2] = torch.from_numpy(p.encode("WA").astype(np.int64))
    feats = torch.randn(2, 5, 3)
    x = enc(tokens, feats)
    assert x.shape == (2, 5, width + 3)
    assert (x[1, 2:] == 0).all(), "padded positions must be zero"
    torch.testing.assert_close(x[0, :, width:], feats[0])
    if encoding == "onehot+blosum80":
        np.testing.assert_array_equal(x[0, 2, 20:width].numpy(), blosum80_table()[tokens[0, 2]])
        assert x[0, 2, AMINO_ACIDS.index("W")] == 1
    with pytest.raises(ValueError, match="expects `features`"):
        enc(tokens)
    with pytest.raises(ValueError, match="must have shape"):
        enc(tokens, feats[:, :, :2])


def test_encoder_bad_args():
    with pytest.raises(ValueError, match="encoding must be one of"):
        ResidueEncoder("protein", "word2vec")
    with pytest.raises(ValueError, match="protein encoding"):
        ResidueEncoder("nucleotide", "blosum80")
    with pytest.raises(ValueError, match="takes no precomputed"):
        ResidueEncoder()(torch.ones(1, 2, dtype=torch.long), torch.zeros(1, 2, 1))
