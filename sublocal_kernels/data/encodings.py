"""Residue encodings: tokens ``(B, T)`` in, features ``(B, T, C)`` out, inside the model.

Batches carry tokens (one byte per residue) and the model's first module,
:class:`ResidueEncoder`, turns them into features, so fixed encodings (one-hot, BLOSUM80) cost
no memory in the data path and a learned embedding is just another choice.

- ``onehot``: one channel per standard letter (20 for proteins, 5 for RNA: A, C, G, U, N);
  ambiguous letters spread over their candidates (see the alphabet's policy).
- ``blosum80``: the residue's BLOSUM80 row over the 20 standard amino acids, from
  ``Bio.Align.substitution_matrices.load("BLOSUM80")``, times ``blosum_scale`` (default 1: the
  matrix's own integers). ``J`` takes the mean of the I and L rows.
- ``onehot+blosum80``: the two concatenated (40 channels), one-hot first.
- ``embedding``: a learned ``nn.Embedding(vocab_size, embedding_dim, padding_idx=0)``.
- ``none``: no encoding of the residues: the precomputed features alone (e.g. per-residue
  language-model embeddings, ``--encoding none --features emb.h5``).

Precomputed per-residue features (``.npz``, e.g. HSDM or PSI-BLAST profiles: the paper's
80-feature encoding) are concatenated after the encoding.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from .._optional import require
from .alphabets import AMINO_ACIDS, Alphabet, get_alphabet

__all__ = ["ENCODINGS", "ResidueEncoder", "blosum80_table", "onehot_table", "encoding_table"]

ENCODINGS = ("onehot", "blosum80", "onehot+blosum80", "embedding", "none")


@functools.lru_cache(maxsize=None)
def _blosum80():
    return require("Bio.Align.substitution_matrices", "the BLOSUM80 encoding").load("BLOSUM80")


def blosum80_table(alphabet="protein") -> np.ndarray:
    """``(vocab_size, 20) float32``: row ``t`` is the BLOSUM80 row of token ``t``'s letter over
    the 20 standard amino acids (order :data:`AMINO_ACIDS`); row 0 (padding) is zero."""
    alphabet = get_alphabet(alphabet)
    if alphabet.letters != AMINO_ACIDS:
        raise ValueError(f"BLOSUM80 is a protein encoding; the {alphabet.name} alphabet has none")
    m = _blosum80()
    table = np.zeros((alphabet.vocab_size, len(AMINO_ACIDS)), dtype=np.float32)
    for t, letter in enumerate(alphabet.tokens, 1):
        if letter == "J":
            table[t] = [(m["I", a] + m["L", a]) / 2 for a in AMINO_ACIDS]
        else:
            table[t] = [m[letter, a] for a in AMINO_ACIDS]
    return table


def onehot_table(alphabet="protein") -> np.ndarray:
    """``(vocab_size, len(letters)) float32`` one-hot rows (row 0, padding, is zero)."""
    return get_alphabet(alphabet).onehot_table()


def encoding_table(kind: str, alphabet="protein", blosum_scale: float = 1.0) -> np.ndarray:
    """The fixed table of a non-learned encoding ``kind``."""
    if kind == "onehot":
        return onehot_table(alphabet)
    if kind == "blosum80":
        return blosum80_table(alphabet) * np.float32(blosum_scale)
    if kind == "onehot+blosum80":
        return np.concatenate([onehot_table(alphabet), blosum80_table(alphabet) * np.float32(blosum_scale)], axis=1)
    raise ValueError(f"encoding must be one of {ENCODINGS}, got {kind!r}")


class ResidueEncoder(nn.Module):
    """Tokens to per-residue features.

    Args:
        alphabet: ``"protein"``, ``"nucleotide"`` or an :class:`Alphabet`.
        encoding: one of :data:`ENCODINGS`.
        embedding_dim: width of the learned embedding (``encoding="embedding"`` only).
        extra_features: number of precomputed per-residue features appended (0: none).
        blosum_scale: factor on the BLOSUM80 integers.

    ``forward(tokens, features=None)``: ``tokens (B, T)`` int (0 = padding), ``features
    (B, T, extra_features)`` float or None; returns ``(B, T, out_channels)`` float32, zero at
    padded positions.
    """

    def __init__(self, alphabet="protein", encoding: str = "onehot", embedding_dim: int = 32,
                 extra_features: int = 0, blosum_scale: float = 1.0):
        super().__init__()
        self.alphabet: Alphabet = get_alphabet(alphabet)
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        if extra_features < 0:
            raise ValueError(f"extra_features must be >= 0, got {extra_features}")
        self.encoding, self.extra_features = encoding, int(extra_features)
        if encoding == "none":
            if not self.extra_features:
                raise ValueError("encoding 'none' reads precomputed features only: it needs extra_features > 0 "
                                 "(--features FILE)")
            width = 0
        elif encoding == "embedding":
            self.embedding = nn.Embedding(self.alphabet.vocab_size, embedding_dim, padding_idx=0)
            width = embedding_dim
        else:
            table = torch.from_numpy(encoding_table(encoding, self.alphabet, blosum_scale))
            # Not persistent: derived from (alphabet, encoding), which the checkpoint's config holds.
            self.register_buffer("table", table, persistent=False)
            width = table.shape[1]
        self.out_channels = width + self.extra_features

    def forward(self, tokens: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        if self.encoding == "none":
            x = None
        elif self.encoding == "embedding":
            x = self.embedding(tokens)
        else:
            x = self.table[tokens]
        if self.extra_features:
            if features is None:
                raise ValueError(f"this encoder expects `features` of shape (B, T, {self.extra_features}) "
                                 "(precomputed per-residue features), got None")
            if features.shape != (*tokens.shape, self.extra_features):
                raise ValueError(f"`features` must have shape {(*tokens.shape, self.extra_features)}, "
                                 f"got {tuple(features.shape)}")
            extra = features.to(torch.float32 if x is None else x.dtype) * (tokens > 0).unsqueeze(-1)
            x = extra if x is None else torch.cat([x, extra], dim=-1)
        elif features is not None:
            raise ValueError("this encoder takes no precomputed `features` (extra_features=0)")
        return x

    def extra_repr(self) -> str:
        return f"{self.alphabet.name}, {self.encoding}, out_channels={self.out_channels}"
