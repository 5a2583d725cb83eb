"""A SYNTHETIC protein localization data set with planted sorting signals at known positions.

These are not real proteins. Each sequence has a random background (its own amino-acid
composition, drawn around the average composition of proteins) and, by class, a planted
signal modelled loosely on the real ones:

==================  ==========================================================================
class               planted signal (positions returned as 0-based, end-exclusive spans)
==================  ==========================================================================
Extracellular       N-terminal signal peptide: M, a positive n-region, a hydrophobic h-region,
                    a polar c-region ending in the A-x-A cleavage motif (secretory pathway)
ER                  the same signal peptide plus a C-terminal retrieval tail: four acidic
                    residues then ``KDEL``
Peroxisome          a C-terminal PTS1: five basic residues (the PEX5-binding context) then ``SKL``
Nucleus             an internal nuclear localisation signal (``PKKKRKV``-like, or bipartite)
Mitochondrion       an N-terminal arginine-rich amphipathic presequence (no D/E)
Cell.membrane       one to four hydrophobic transmembrane stretches (19-23 residues) flanked by
                    K/R, the first at residue 30 or later where the length allows
Cytoplasm           none
==================  ==========================================================================

Backgrounds are checked so that no class's signal occurs by chance in another class (no
C-terminal SKL/KDEL, no NLS-like K/R run, no long hydrophobic stretch), which keeps the labels
exactly determined by the planted signals.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .alphabets import AMINO_ACIDS
from .readers import Record

__all__ = ["SYNTHETIC_CLASSES", "MULTILABEL_PAIRS", "SyntheticSet", "make_synthetic", "make_multilabel_synthetic", "write_synthetic", "attention_near_signal",
           "near_signal_fraction", "read_signals"]

SYNTHETIC_CLASSES = ("Cell.membrane", "Cytoplasm", "ER", "Extracellular", "Mitochondrion", "Nucleus", "Peroxisome")

# Average amino-acid composition of proteins (UniProtKB/Swiss-Prot release statistics, rounded),
# in the order of AMINO_ACIDS.
_NATURAL = np.array([8.25, 1.38, 5.46, 6.72, 3.86, 7.07, 2.27, 5.91, 5.80, 9.65,
                     2.41, 4.06, 4.74, 3.93, 5.53, 6.63, 5.35, 6.86, 1.10, 2.92])
_NATURAL = _NATURAL / _NATURAL.sum()
_HYDROPHOBIC = "LIVFAMW"
_HYDRO_SET = set("LIVFMW")  # A is common in backgrounds; it does not count towards a TM-like run
N_TERMINAL = frozenset({"Extracellular", "ER", "Mitochondrion"})
# Pairs of classes whose signals sit in different places (N-terminus, interior, C-terminus), so
# one sequence can carry both: the multi-label set's double-signal sequences.
MULTILABEL_PAIRS = (("Mitochondrion", "Nucleus"), ("Nucleus", "Peroxisome"), ("Mitochondrion", "Peroxisome"))


@dataclass
class SyntheticSet:
    """``records`` (DeepLoc-style labels; ids ``SYN000001`` ...) and, per record, the planted
    signal spans ``[(start, end), ...]`` (0-based, end-exclusive; empty for Cytoplasm)."""

    records: list[Record]
    signals: list[list[tuple[int, int]]]
    classes: tuple[str, ...] = field(default=SYNTHETIC_CLASSES)

    def __len__(self) -> int:
        return len(self.records)


def _signal_peptide(rng) -> str:
    n = "M" + "".join(rng.choice(list("KR"), size=rng.integers(1, 3))) + "".join(
        rng.choice(list("STGAN"), size=rng.integers(1, 3)))
    h = "".join(rng.choice(list("LLLAIVFV"), size=rng.integers(8, 13)))
    c = "".join(rng.choice(list("STGQP"), size=rng.integers(2, 4))) + "A" + rng.choice(list("SLQE")) + "A"
    return n + h + c


def _presequence(rng) -> str:
    """Amphipathic helix: positions on one face (100 degrees per residue) hydrophobic, the other
    R/K-rich; no acidic residues."""
    while True:
        length = int(rng.integers(18, 30))
        out = ["M"]
        for j in range(1, length):
            if (j * 100) % 360 < 160:
                out.append(rng.choice(list("LLAFIV")))
            else:
                out.append(rng.choice(list("RRRRKSS")))
        if sum(c in "RK" for c in out) >= 5:  # a presequence carries several positive charges
            return "".join(out)


def _nls(rng) -> str:
    if rng.random() < 0.7:
        return "P" + "".join(rng.choice(list("KKKR"), size=4)) + rng.choice(list("KR")) + rng.choice(list("VIL"))
    linker = "".join(rng.choice(list(AMINO_ACIDS.replace("K", "").replace("R", "")), size=int(rng.integers(10, 13))))
    return "KR" + linker + "KKKK"


def _transmembrane(rng) -> str:
    core = "".join(rng.choice(list("LLIVVFAMLGW"), size=int(rng.integers(19, 24))))
    return rng.choice(list("KR")) + core + rng.choice(list("KR"))


def _background(rng, length: int, composition: np.ndarray) -> list[str]:
    return list(rng.choice(list(AMINO_ACIDS), size=length, p=composition))


def _scrub(seq: list[str], rng, protected: np.ndarray, composition: np.ndarray) -> None:
    """Remove chance occurrences of other classes' signals from unprotected background."""
    letters = np.array(list(AMINO_ACIDS))
    calm = composition.copy()
    for a in "KRLIVFMW":
        calm[AMINO_ACIDS.index(a)] = 0.0
    calm /= calm.sum()

    def redraw(i):
        if not protected[i]:
            seq[i] = str(rng.choice(letters, p=calm))

    n = len(seq)
    for _ in range(3):
        # K/R runs (NLS-like): at most 2 of any 4 consecutive residues K/R.
        kr = np.array([c in "KR" for c in seq], dtype=int)
        win = np.convolve(kr, np.ones(4, dtype=int), mode="valid")
        for s in np.flatnonzero(win > 2):
            for i in range(s, s + 4):
                if kr[i]:
                    redraw(i)
                    kr[i] = seq[i] in "KR"
        # Hydrophobic runs (TM- or h-region-like): at most 6 of any 8 consecutive residues.
        hy = np.array([c in _HYDRO_SET for c in seq], dtype=int)
        win = np.convolve(hy, np.ones(8, dtype=int), mode="valid")
        for s in np.flatnonzero(win > 6):
            for i in range(s, s + 8):
                if hy[i]:
                    redraw(i)
                    hy[i] = seq[i] in _HYDRO_SET
    # C-terminal targeting tails (PTS1, KDEL) belong to the planted signals only.
    tail = np.array(list("GNQTPAHY"))
    for i in range(max(0, n - 8), n):
        if not protected[i] and seq[i] in "SKLDERK":
            seq[i] = str(rng.choice(tail))


def make_synthetic(n_per_class: int = 100, min_length: int = 50, max_length: int = 3000, seed: int = 0,
                   classes=SYNTHETIC_CLASSES, composition_concentration: float = 60.0) -> SyntheticSet:
    """Generate ``n_per_class`` SYNTHETIC proteins of each class in ``classes`` (a subset of
    :data:`SYNTHETIC_CLASSES`).

    Lengths are log-uniform in ``[min_length, max_length]`` (most real proteins are short, a
    few are long). Each sequence's background composition is Dirichlet around the natural one
    (``composition_concentration``: larger is closer). Records are shuffled; partitions are not
    set (use :func:`~sublocal_kernels.data.stratified_split`).
    """
    unknown = [c for c in classes if c not in SYNTHETIC_CLASSES]
    if unknown:
        raise ValueError(f"classes must be among {SYNTHETIC_CLASSES}, got unknown {unknown}")
    if not 50 <= min_length <= max_length:
        raise ValueError(f"need 50 <= min_length <= max_length (signals need room), got {min_length}, {max_length}")
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    rng = np.random.default_rng(seed)
    items = []
    for cls in classes:
        for _ in range(n_per_class):
            items.append((cls, *_one(rng, cls, min_length, max_length, composition_concentration)))
    order = rng.permutation(len(items))
    records, signals = [], []
    for k, i in enumerate(order):
        cls, seq, spans = items[i]
        records.append(Record(f"SYN{k + 1:06d}", seq, cls, None, "U", None))
        signals.append(spans)
    return SyntheticSet(records, signals, tuple(classes))


def _one(rng, cls, min_length: int, max_length: int, concentration: float):
    """One sequence with the signals of ``cls`` (a class, or a tuple of classes whose signals
    sit in different places: each is planted, in the order below, so a single class draws
    exactly what it always drew)."""
    has = {cls} if isinstance(cls, str) else set(cls)
    length = int(round(np.exp(rng.uniform(np.log(min_length), np.log(max_length)))))
    composition = rng.dirichlet(_NATURAL * concentration)
    seq = _background(rng, length, composition)
    protected = np.zeros(length, dtype=bool)
    spans: list[tuple[int, int]] = []

    def plant(start: int, motif: str):
        seq[start:start + len(motif)] = list(motif)
        protected[start:start + len(motif)] = True
        spans.append((start, start + len(motif)))

    if has & {"Extracellular", "ER"}:
        plant(0, _signal_peptide(rng))
    if "ER" in has:
        # The short motifs (KDEL, SKL) come with a few residues of context: a 3-4 residue needle
        # alone left an A-LSTM on a plateau for ~15 epochs (measured, 2-core CPU).
        plant(length - 8, "".join(rng.choice(list("EEDDT"), size=4)) + "KDEL")
    if "Peroxisome" in has:
        plant(length - 8, "".join(rng.choice(list("KRKRA"), size=5)) + "SKL")
    if "Nucleus" in has:
        motif = _nls(rng)
        # Past any N-terminal signal (a presequence is at most 29 residues, a signal peptide 23).
        low = int(0.2 * length) if not has & N_TERMINAL else max(int(0.2 * length), 35)
        plant(int(rng.integers(low, int(0.8 * length) - len(motif))), motif)
    if "Mitochondrion" in has:
        plant(0, _presequence(rng))
    if "Cell.membrane" in has:
        n_tm = int(rng.integers(1, 5))
        pos = 30
        for k in range(n_tm):
            tm = _transmembrane(rng)
            last = length - 4 - len(tm)  # keep the C-terminus free of the stretch
            if k == 0:
                plant(min(pos + int(rng.integers(0, 20)), last), tm)
            elif pos + 10 <= last:
                plant(pos + int(rng.integers(0, min(150, last - pos) + 1)), tm)
            else:
                break
            pos = spans[-1][1] + 10
    if not has & N_TERMINAL:
        # Neither an SP- nor a presequence-like start: a plain M then background.
        seq[0] = "M"
    _scrub(seq, rng, protected, composition)
    spans.sort()
    return "".join(seq), spans


def make_multilabel_synthetic(n_per_class: int = 60, n_per_pair: int = 60, min_length: int = 100,
                              max_length: int = 1000, seed: int = 0, classes=("Cytoplasm", "Mitochondrion", "Nucleus",
                                                                              "Peroxisome"),
                              pairs=MULTILABEL_PAIRS, composition_concentration: float = 60.0) -> SyntheticSet:
    """A SYNTHETIC multi-label set: ``n_per_class`` sequences with one planted signal for each of
    ``classes`` (Cytoplasm: none), and ``n_per_pair`` sequences for each pair in ``pairs`` that
    carry **both** classes' signals and both labels (``record.label`` ``"A;B"``). ``signals``
    holds every planted span. Lengths are log-uniform in ``[min_length, max_length]``
    (``min_length >= 100`` leaves room for an N-terminal signal and an NLS after it)."""
    for pair in pairs:
        if len(set(pair)) != 2 or any(c not in SYNTHETIC_CLASSES for c in pair):
            raise ValueError(f"pairs must be two different classes of {SYNTHETIC_CLASSES}, got {pair}")
        if "Cytoplasm" in pair or len(set(pair) & N_TERMINAL) > 1 or set(pair) == {"ER", "Peroxisome"} \
                or "Cell.membrane" in pair:
            raise ValueError(f"the signals of {pair} do not fit in one sequence (Cytoplasm has none; two N- or "
                             "C-terminal signals, or transmembrane stretches, would overlap)")
    if min_length < 100 and pairs:
        raise ValueError(f"min_length must be >= 100 for double-signal sequences, got {min_length}")
    single = make_synthetic(n_per_class, min_length, max_length, seed, classes, composition_concentration) \
        if n_per_class else SyntheticSet([], [], ())
    rng = np.random.default_rng([seed, 1])
    items = [(r.label, r.sequence, sp) for r, sp in zip(single.records, single.signals)]
    for pair in pairs:
        for _ in range(n_per_pair):
            seq, spans = _one(rng, tuple(pair), min_length, max_length, composition_concentration)
            items.append((";".join(sorted(pair)), seq, spans))
    order = rng.permutation(len(items))
    records, signals = [], []
    for k, i in enumerate(order):
        label, seq, spans = items[i]
        records.append(Record(f"SYN{k + 1:06d}", seq, label, None, "U", None))
        signals.append(spans)
    names = tuple(sorted(set(classes) | {c for pair in pairs for c in pair}))
    return SyntheticSet(records, signals, names)


def write_synthetic(data: SyntheticSet, directory, name: str = "synthetic") -> tuple[str, str]:
    """Write ``<name>.fasta`` (DeepLoc-style headers: ``>SYN000001 Nucleus-U``) and
    ``<name>.signals.tsv`` (id, label, spans as ``start-end;start-end``) into ``directory``."""
    os.makedirs(directory, exist_ok=True)
    fasta = os.path.join(directory, f"{name}.fasta")
    tsv = os.path.join(directory, f"{name}.signals.tsv")
    with open(fasta, "w") as fh:
        for r in data.records:
            fh.write(f">{r.id} {r.label}-{r.membrane or 'U'}\n")
            for s in range(0, len(r.sequence), 60):
                fh.write(r.sequence[s:s + 60] + "\n")
    with open(tsv, "w") as fh:
        fh.write("id\tlabel\tsignals\n")
        for r, spans in zip(data.records, data.signals):
            fh.write(f"{r.id}\t{r.label}\t{';'.join(f'{a}-{b}' for a, b in spans)}\n")
    return fasta, tsv


def attention_near_signal(alpha, lengths, spans, window: int = 10, threshold: float = 0.5):
    """For each sequence with a planted signal: the fraction of its attention mass within
    ``window`` residues of any span, and whether it is at least ``threshold``.

    ``alpha``: ``(B, T)`` attention weights (rows sum to 1 over valid positions), or a list of
    per-sequence 1-D arrays; ``lengths``: ``(B,)``; ``spans``: per sequence a list of
    ``(start, end)``. Sequences without spans are skipped. Returns ``(masses, hits)`` as numpy
    arrays over the sequences with spans.
    """
    if hasattr(alpha, "detach"):
        alpha = alpha.detach().cpu().numpy()
    lengths = np.asarray(lengths.cpu() if hasattr(lengths, "cpu") else lengths)
    masses = []
    for b, sp in enumerate(spans):
        if not sp:
            continue
        n = int(lengths[b])
        near = np.zeros(n, dtype=bool)
        for s, e in sp:
            near[max(0, s - window):min(n, e + window)] = True
        masses.append(float(np.asarray(alpha[b], dtype=np.float64)[:n][near].sum()))
    masses = np.asarray(masses)
    return masses, masses >= threshold


def near_signal_fraction(lengths, spans, window: int = 10) -> np.ndarray:
    """Per sequence with spans: the fraction of its positions within ``window`` residues of a
    span, i.e. the attention mass a uniform attention would put there (the chance baseline)."""
    out = []
    for n, sp in zip(lengths, spans):
        if not sp:
            continue
        near = np.zeros(int(n), dtype=bool)
        for s, e in sp:
            near[max(0, s - window):min(int(n), e + window)] = True
        out.append(near.mean())
    return np.asarray(out)


def read_signals(path) -> dict[str, list[tuple[int, int]]]:
    """The spans written by :func:`write_synthetic` (``<name>.signals.tsv``), by record id."""
    out = {}
    with open(path) as fh:
        next(fh)
        for line in fh:
            rid, _, spans = line.rstrip("\n").split("\t")
            out[rid] = [tuple(int(v) for v in s.split("-")) for s in spans.split(";") if s]
    return out
