"""Generated protein-like data with a known entropy rate: Markov chains over the 20 residues.

:class:`MarkovChain` of order ``k`` draws the first ``k`` residues from ``initial`` (uniform by
default) and every later one from ``transitions[context]``, the row of the ``k`` residues
before it. :meth:`MarkovChain.log_likelihood` is the chain's own log-probability of sequences,
the floor that a language model trained on the chain's output can approach (its cross-entropy
per residue is the entropy rate). Used by the learning tests, the example and the docs.
"""

from __future__ import annotations

import numpy as np

from ..data.alphabets import AMINO_ACIDS

__all__ = ["MarkovChain", "write_fasta"]


class MarkovChain:
    """An order-``order`` chain over ``n = 20`` residues.

    Args:
        transitions: ``(n ** order, n)`` rows summing to 1; row ``sum(context[j] * n **
            (order - 1 - j))`` is the next-residue distribution after ``context``.
        initial: ``(n,)`` distribution of each of the first ``order`` residues (default uniform).
    """

    def __init__(self, transitions, initial=None):
        t = np.asarray(transitions, dtype=np.float64)
        n = t.shape[1]
        order = int(round(np.log(t.shape[0]) / np.log(n))) if t.shape[0] > 1 else 0
        if n ** order != t.shape[0] or not np.allclose(t.sum(1), 1.0):
            raise ValueError(f"transitions must be (n**order, n) with rows summing to 1, got {t.shape}")
        self.transitions, self.order, self.n = t, order, n
        self.initial = np.full(n, 1.0 / n) if initial is None else np.asarray(initial, dtype=np.float64)

    @classmethod
    def random(cls, order: int = 2, concentration: float = 1.0, seed: int = 0, n: int = 20) -> "MarkovChain":
        """Transition rows drawn from a symmetric Dirichlet(``concentration``)."""
        rng = np.random.default_rng(seed)
        return cls(rng.dirichlet(np.full(n, concentration), size=n ** order))

    def _context(self, seq: np.ndarray, t: int) -> int:
        c = 0
        for j in range(t - self.order, t):
            c = c * self.n + int(seq[j])
        return c

    def sample(self, lengths, seed: int = 0) -> list[np.ndarray]:
        """One sequence of residue indices ``0..n-1`` per length."""
        rng = np.random.default_rng(seed)
        cdf = np.cumsum(self.transitions, 1)
        out = []
        for L in lengths:
            s = np.empty(int(L), dtype=np.int64)
            u = rng.random(int(L))
            for t in range(int(L)):
                if t < self.order:
                    s[t] = min(int(np.searchsorted(np.cumsum(self.initial), u[t])), self.n - 1)
                else:
                    s[t] = min(int(np.searchsorted(cdf[self._context(s, t)], u[t])), self.n - 1)
            out.append(s)
        return out

    def log_likelihood(self, seqs) -> tuple[float, int]:
        """``(sum of log p(residue | context), number of residues)`` over ``seqs``, in nats."""
        total, n = 0.0, 0
        for s in seqs:
            for t in range(len(s)):
                p = self.initial[s[t]] if t < self.order else self.transitions[self._context(s, t), s[t]]
                total += float(np.log(p))
            n += len(s)
        return total, n

    def stationary(self, steps: int = 200) -> np.ndarray:
        """The residue frequencies in long sequences (from a long power iteration over contexts)."""
        k, n = self.order, self.n
        if k == 0:
            return self.transitions[0]
        p = np.full(n ** k, 1.0 / n ** k)
        for _ in range(steps):
            nxt = np.zeros_like(p)
            for c in range(n ** k):
                shifted = (c % n ** (k - 1)) * n if k > 1 else 0
                nxt[shifted:shifted + n] += p[c] * self.transitions[c]
            p = nxt
        return p.reshape(-1, n).sum(0)


def to_letters(seq) -> str:
    return "".join(AMINO_ACIDS[int(i)] for i in seq)


def write_fasta(path, seqs, prefix: str = "seq") -> list[str]:
    """Write residue-index sequences as FASTA (60 letters a line); returns the ids."""
    ids = []
    with open(path, "w") as fh:
        for i, s in enumerate(seqs):
            rid = f"{prefix}{i}"
            ids.append(rid)
            letters = to_letters(s)
            fh.write(f">{rid}\n" + "".join(letters[j:j + 60] + "\n" for j in range(0, len(letters), 60)))
    return ids
