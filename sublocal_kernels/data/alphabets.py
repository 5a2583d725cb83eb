"""Alphabets: which letters a sequence may hold, how each becomes a token, and the policy for
the letters that are not one of the standard residues.

Tokens are small integers; ``0`` is padding, so a padded batch of tokens is unambiguous and
every encoding maps token 0 to a zero vector.

Protein policy (``PROTEIN``):

- lowercase letters are read as uppercase (soft-masking carries no localization meaning);
- one trailing ``*`` (a translated stop codon) is removed; a ``*`` anywhere else is an error;
- ``U`` (selenocysteine) is read as ``C`` and ``O`` (pyrrolysine) as ``K``: the standard residue
  each is derived from (BLOSUM80 has no row for either);
- ``B`` (D or N), ``Z`` (E or Q), ``J`` (I or L) and ``X`` (unknown) keep tokens of their own;
  one-hot spreads them over their candidates (B, Z, J: 0.5 each; X: 0.05 on each of the 20),
  BLOSUM80 uses biopython's B, Z and X rows and the mean of the I and L rows for J;
- anything else (digits, gaps ``-``/``.``, other symbols) is an error naming the letter and its
  position; so is a sequence that is empty after the policy.

``PROTEIN_FULL`` (``"protein-full"``) is the same policy with ``U`` and ``O`` kept as residues of
their own (tokens after ``J``), for models that have rows for them (UniRep's language model).

Nucleotide policy (``NUCLEOTIDE``, for RNA): ``A C G U`` and ``N``; ``T`` is read as ``U``;
lowercase as uppercase; the IUPAC ambiguity codes ``R Y S W K M B D H V`` as ``N``; anything
else is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
NUCLEOTIDES = "ACGU"

__all__ = ["Alphabet", "PROTEIN", "PROTEIN_FULL", "NUCLEOTIDE", "AMINO_ACIDS", "NUCLEOTIDES", "SequenceError", "get_alphabet"]


class SequenceError(ValueError):
    """A sequence holds a letter its alphabet does not accept. ``position`` is 0-based in the
    sequence as given (before the policy removes a trailing ``*``)."""

    def __init__(self, message: str, position: int | None = None, letter: str | None = None):
        super().__init__(message)
        self.position = position
        self.letter = letter


@dataclass(frozen=True)
class Alphabet:
    """Letters, their tokens (1-based; 0 is padding) and the cleaning policy.

    ``letters``: the standard letters (one-hot channels), tokens ``1..len(letters)``.
    ``extra``: further letters with tokens of their own after the standard ones.
    ``aliases``: letters read as another letter.
    ``spread``: for each extra letter, the standard letters its one-hot row is spread over.
    """

    name: str
    letters: str
    extra: str
    aliases: dict = field(default_factory=dict)
    spread: dict = field(default_factory=dict)
    strip_trailing_stop: bool = False

    @property
    def tokens(self) -> str:
        """Every letter that has a token, in token order (token = index + 1)."""
        return self.letters + self.extra

    @property
    def vocab_size(self) -> int:
        """Number of token values including padding (0)."""
        return len(self.tokens) + 1

    def _lookup(self) -> np.ndarray:
        table = getattr(self, "_table", None)
        if table is None:
            table = np.full(256, 255, dtype=np.uint8)  # 255: not accepted
            for i, letter in enumerate(self.tokens):
                for c in (letter, letter.lower()):
                    table[ord(c)] = i + 1
            for src, dst in self.aliases.items():
                for c in (src, src.lower()):
                    table[ord(c)] = self.tokens.index(dst) + 1
            object.__setattr__(self, "_table", table)
        return table

    def clean(self, sequence: str) -> str:
        """The sequence after the policy (uppercase, aliases applied, trailing stop removed)."""
        tokens = self.encode(sequence)
        return "".join(self.tokens[t - 1] for t in tokens)

    def encode(self, sequence: str) -> np.ndarray:
        """Tokens ``(L,) uint8`` of ``sequence`` under this alphabet's policy.

        Raises :class:`SequenceError` naming the first letter that is not accepted.
        """
        if not isinstance(sequence, str):
            raise TypeError(f"sequence must be a str, got {type(sequence).__name__}")
        seq = sequence.strip()
        if self.strip_trailing_stop and seq.endswith("*"):
            seq = seq[:-1]
        try:
            raw = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
        except UnicodeEncodeError:
            pos = next(i for i, c in enumerate(seq) if ord(c) > 127)
            raise SequenceError(f"letter {seq[pos]!r} at position {pos + 1} is not in the {self.name} alphabet",
                                pos, seq[pos]) from None
        tokens = self._lookup()[raw]
        bad = np.flatnonzero(tokens == 255)
        if bad.size:
            pos = int(bad[0])
            letter = seq[pos]
            what = ("a '*' (stop) is only accepted as the last letter" if letter == "*" and self.strip_trailing_stop
                    else f"accepted: {self.tokens} (any case), {''.join(self.aliases)} as documented")
            raise SequenceError(f"letter {letter!r} at position {pos + 1} is not in the {self.name} alphabet ({what})",
                                pos, letter)
        if tokens.size == 0:
            raise SequenceError(f"empty {self.name} sequence")
        return tokens

    def decode(self, tokens) -> str:
        return "".join(self.tokens[int(t) - 1] for t in tokens if int(t) > 0)

    def onehot_table(self) -> np.ndarray:
        """``(vocab_size, len(letters)) float32``: the one-hot row of every token; row 0 (padding)
        is zero; extra letters spread evenly over their candidates."""
        n = len(self.letters)
        table = np.zeros((self.vocab_size, n), dtype=np.float32)
        table[1:n + 1] = np.eye(n, dtype=np.float32)
        for i, letter in enumerate(self.extra):
            cands = self.spread[letter]
            for c in cands:
                table[n + 1 + i, self.letters.index(c)] = 1.0 / len(cands)
        return table


PROTEIN = Alphabet(
    name="protein",
    letters=AMINO_ACIDS,
    extra="XBZJ",
    aliases={"U": "C", "O": "K"},
    spread={"X": AMINO_ACIDS, "B": "DN", "Z": "EQ", "J": "IL"},
    strip_trailing_stop=True,
)

# PROTEIN with selenocysteine (U) and pyrrolysine (O) kept as residues of their own, for models
# that have rows for them (UniRep's language model): one-hot still reads U as C and O as K.
PROTEIN_FULL = Alphabet(
    name="protein-full",
    letters=AMINO_ACIDS,
    extra="XBZJUO",
    spread={"X": AMINO_ACIDS, "B": "DN", "Z": "EQ", "J": "IL", "U": "C", "O": "K"},
    strip_trailing_stop=True,
)

# N is a letter (channel) of its own for RNA: the `rna` shape's 5 input channels are A, C, G, U, N.
NUCLEOTIDE = Alphabet(
    name="nucleotide",
    letters=NUCLEOTIDES + "N",
    extra="",
    aliases={"T": "U", **{c: "N" for c in "RYSWKMBDHV"}},
)

_ALPHABETS = {"protein": PROTEIN, "protein-full": PROTEIN_FULL, "nucleotide": NUCLEOTIDE, "rna": NUCLEOTIDE,
              "dna": NUCLEOTIDE}


def get_alphabet(name) -> Alphabet:
    """``"protein"`` or ``"nucleotide"`` (also ``"rna"``, ``"dna"``), or an :class:`Alphabet`."""
    if isinstance(name, Alphabet):
        return name
    try:
        return _ALPHABETS[str(name).lower()]
    except KeyError:
        raise ValueError(f"alphabet must be one of {sorted(_ALPHABETS)}, got {name!r}") from None
