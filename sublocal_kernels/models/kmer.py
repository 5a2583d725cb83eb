"""A k-mer frequency + logistic regression baseline (``sublocal train --model kmer``).

Each sequence becomes the vector of its k-mer frequencies for every length ``j = 1..k``
(:meth:`KmerClassifier.kmer_frequencies`), standardised with the training split's per-feature
mean and standard deviation, and one linear layer maps it to class logits: multinomial logistic
regression, or one binary logistic regression per class with ``multi_label``. The model is
fitted in closed form by scikit-learn (:meth:`KmerClassifier.fit`, L-BFGS), not by gradient
descent; the fitted coefficients are copied into the ``nn.Linear`` layer, so the checkpoint
(``mean``/``std`` buffers and the layer; ``standardize=False``: the raw frequencies, mean 0 and
std 1) reproduces scikit-learn's ``predict_proba``: the
softmax of the logits (single-label) or their sigmoid (multi-label).

Features (``F`` of them): over the alphabet's ``S`` standard letters (the 20 amino acids for
``protein``; ``A C G U`` for ``nucleotide``), block ``j`` holds the ``S**j`` j-mers in
lexicographic order of the letters (first letter most significant, as
:meth:`KmerClassifier.feature_names` lists them), so ``F = S + S**2 + ... + S**k``: 8,420 for
protein at ``k=3``, 340 for nucleotide at ``k=4``. A window that holds padding, an ambiguous
letter (``X B Z J``, ``N``) or any other non-standard token is skipped; each block is divided by
the number of windows counted (so it sums to 1), and is zero for a sequence with no such window
(e.g. shorter than ``j``).

Standardising sparse frequencies scales a rare k-mer's value by about ``sqrt(N / count)``: on
small training sets (hundreds of proteins) the many rare 3-mers then outweigh a real signal, and
``k=2`` (or a smaller ``C``) generalises better than ``k=3``.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .._optional import require
from ..data.alphabets import AMINO_ACIDS, NUCLEOTIDES, get_alphabet
from .classifiers import ClassifierOutput, _positive

__all__ = ["KmerClassifier", "MAX_FEATURES"]

#: the largest feature count accepted (``S + ... + S**k``): 20 amino acids at k=5 is 3.4 million
MAX_FEATURES = 1 << 22
#: the logit of a class that has no positive training example (multi-label; sigmoid ~2e-9), or no
#: negative one (its opposite)
ABSENT_LOGIT = -20.0
#: the logit of a class missing from a single-label training split (its softmax probability is 0,
#: as scikit-learn, which never saw the class, gives it)
UNSEEN_LOGIT = -1.0e4


#: ``k`` when none is given, per alphabet
DEFAULT_K = {"protein": 2, "protein-full": 2, "nucleotide": 3}


def _physical_memory() -> int | None:
    """This machine's physical memory in bytes (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _standard_letters(alphabet) -> str:
    for letters in (AMINO_ACIDS, NUCLEOTIDES):
        if alphabet.letters.startswith(letters):
            return letters
    raise ValueError(f"KmerClassifier: alphabet {alphabet.name!r} has no standard letters to count k-mers over")


class KmerClassifier(nn.Module):
    """Logistic regression over the k-mer frequencies (all lengths ``1..k``) of a sequence.

    Args:
        num_classes: output classes.
        alphabet: ``"protein"`` (20 standard letters) or ``"nucleotide"`` (4: ``A C G U``).
        encoding: accepted and ignored (the trainer passes every sequence model one).
        k: the longest k-mer; lengths ``1..k`` are all used.
        multi_label: :meth:`fit` one binary logistic regression per class (on ``ds.targets``)
            instead of a multinomial one.
        extra_features: must be 0: the model reads no precomputed features (``--features``).
        C: inverse L2 regularisation strength (scikit-learn's ``C``).

    ``model(tokens, lengths)`` returns the logits; ``forward_details`` also the standardised
    frequencies ``(B, F)`` as ``representation`` (``attention`` is None). Until :meth:`fit` the
    standardisation is the identity and the layer is ``nn.Linear``'s random initialisation.

    Example::

        >>> model = KmerClassifier(num_classes=3, alphabet="nucleotide", k=2)
        >>> model.num_features, model.feature_names()[:6]
        (20, ['A', 'C', 'G', 'U', 'AA', 'AC'])
        >>> model(torch.tensor([[1, 2, 3, 0]]), torch.tensor([3])).shape
        torch.Size([1, 3])
    """

    name = "kmer"

    def __init__(self, num_classes: int, alphabet: str = "protein", encoding: str | None = None, k: int | None = None,
                 multi_label: bool = False, extra_features: int = 0, C: float = 1.0, standardize: bool = True):
        super().__init__()
        del encoding  # no residue encoding: the k-mers are counted on the tokens
        if extra_features:
            raise ValueError(f"--model kmer reads no precomputed features (extra_features={extra_features!r}): "
                             "leave out --features")
        if not float(C) > 0:
            raise ValueError(f"`C` must be positive, got {C!r}")
        self.num_classes = _positive("num_classes", num_classes)
        if k is None:
            # Measured on the real sets by 5-fold cross-validation (README, "Accuracy"): on DeepLoc
            # 2.0, k=2 beat k=3 (macro F1 0.337 against 0.286); on the lncRNA set k=3..5 tied.
            k = DEFAULT_K.get(get_alphabet(alphabet).name, 3)
        self.k = _positive("k", k)
        self.alphabet = get_alphabet(alphabet)
        self.letters = _standard_letters(self.alphabet)
        self.size = len(self.letters)
        self.num_features = sum(self.size ** j for j in range(1, self.k + 1))
        if self.num_features > MAX_FEATURES:
            raise ValueError(f"KmerClassifier: k={k} gives {self.num_features:,} features over {self.size} letters "
                             f"(at most {MAX_FEATURES:,}): use a smaller k")
        self.multi_label = bool(multi_label)
        self.C = float(C)
        self.config = {"num_classes": num_classes, "alphabet": alphabet if isinstance(alphabet, str)
                       else self.alphabet.name, "k": k, "multi_label": self.multi_label, "extra_features": 0,
                       "C": self.C, "standardize": bool(standardize)}
        self.standardize_features = bool(standardize)
        self.register_buffer("mean", torch.zeros(self.num_features))
        self.register_buffer("std", torch.ones(self.num_features))
        self.linear = nn.Linear(self.num_features, num_classes)
        #: the fitted scikit-learn estimator (single-label) or list of them (multi-label), kept
        #: after :meth:`fit` for inspection; not part of the checkpoint
        self.estimator_ = None

    def feature_names(self) -> list[str]:
        """The ``F`` k-mers, in feature order (by length, then lexicographic in the letters' order)."""
        names = []
        block = [""]
        for _ in range(self.k):
            block = [p + c for p in block for c in self.letters]
            names.extend(block)
        return names

    @torch.no_grad()
    def kmer_frequencies(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``tokens (B, T)`` int64, ``lengths (B,)`` -> ``(B, F)`` float32 k-mer frequencies
        (see the module's documentation), on ``tokens``' device. Memory is ``O(B * T)`` per
        length ``j`` besides the ``(B, S**j)`` counts: the windows are coded as base-``S``
        integers and counted with one ``bincount``."""
        if tokens.dim() != 2:
            raise ValueError(f"KmerClassifier: `tokens` must be (B, T), got {tuple(tokens.shape)}")
        B, T = tokens.shape
        device = tokens.device
        lengths = torch.as_tensor(lengths, device=device).reshape(-1)
        if lengths.shape[0] != B:
            raise ValueError(f"KmerClassifier: `tokens` holds {B} sequences but `lengths` {lengths.shape[0]}")
        tokens = tokens.long()
        valid = (tokens >= 1) & (tokens <= self.size)
        valid &= torch.arange(T, device=device) < lengths[:, None]
        letter = torch.where(valid, tokens - 1, torch.zeros_like(tokens))
        rows = torch.arange(B, device=device)[:, None]
        blocks = []
        code, ok = None, None
        for j in range(1, self.k + 1):
            n = self.size ** j
            if T < j:
                blocks.append(torch.zeros(B, n, device=device))
                continue
            # windows starting at 0..T-j: extend the (j-1)-mers by the letter at p + j - 1
            if code is None:
                code, ok = letter, valid
            else:
                code = code[:, :-1] * self.size + letter[:, j - 1:]
                ok = ok[:, :-1] & valid[:, j - 1:]
            counts = torch.bincount((rows * n + code)[ok], minlength=B * n).view(B, n)
            total = ok.sum(1, keepdim=True)
            blocks.append((counts.double() / total.clamp(min=1)).float())
        return torch.cat(blocks, dim=1)

    def standardize(self, frequencies: torch.Tensor) -> torch.Tensor:
        """``(frequencies - mean) / std`` with the stored training-split moments."""
        return (frequencies - self.mean) / self.std

    def _represent(self, tokens, lengths, features):
        if features is not None:
            raise ValueError("KmerClassifier: the k-mer model reads no precomputed features: leave out --features")
        return self.standardize(self.kmer_frequencies(tokens, lengths).to(self.mean.device))

    def forward_details(self, tokens: torch.Tensor, lengths: torch.Tensor,
                        features: torch.Tensor | None = None) -> ClassifierOutput:
        x = self._represent(tokens, lengths, features)
        return ClassifierOutput(self.linear(x), x, None)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor,
                features: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(self._represent(tokens, lengths, features))

    def first_conv(self) -> None:
        """No convolution reads residues here (no filter logos)."""
        return None

    def frequencies_of(self, ds, indices: Sequence[int], batch_size: int = 256,
                       max_tokens: int = 1 << 22) -> np.ndarray:
        """``(len(indices), F)`` float32: the k-mer frequencies of ``ds``'s items ``indices`` (in
        that order), computed in length-sorted batches of at most ``batch_size`` items and
        ``max_tokens`` padded residues (a longer sequence goes alone), on the model's device."""
        from ..data.dataset import LengthBucketSampler, collate

        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.zeros((len(indices), self.num_features), dtype=np.float32)
        device = self.mean.device
        sampler = LengthBucketSampler(ds.lengths[indices], batch_size=batch_size, shuffle=False,
                                      max_tokens=max_tokens)
        for rows in sampler.batches():
            batch = collate(ds, indices[rows])
            out[rows] = self.kmer_frequencies(batch.tokens.to(device), batch.lengths.to(device)).cpu().numpy()
        return out

    def fit(self, ds, indices: Sequence[int], batch_size: int = 256, class_weight=None,
            multi_label: bool | None = None, max_iter: int = 5000, tol: float = 1e-6) -> "KmerClassifier":
        """Fit the standardisation and the logistic regression on ``ds``'s items ``indices``.

        Args:
            ds: a :class:`~sublocal_kernels.data.SequenceDataset` (``labels``; ``targets`` when
                multi-label).
            indices: the training items.
            batch_size: items per batch while counting k-mers.
            class_weight: None, ``"balanced"``, or per-class weights (list/array of
                ``num_classes``, or a dict class index -> weight). Single-label: scikit-learn's
                ``class_weight`` of the multinomial model. Multi-label: ``"balanced"`` balances
                each class's binary problem; a weight ``w_c`` per class weighs its positives
                (``{0: 1, 1: w_c}``).
            multi_label: default: the constructor's ``multi_label``, or True for a multi-label
                data set (``ds.multi_label``); ``model.multi_label`` and ``config`` follow it.
            max_iter, tol: L-BFGS's iteration limit and tolerance.

        The features are standardised as scikit-learn's ``StandardScaler`` does (population
        standard deviation; a constant feature is only centred). Single-label: a class absent
        from ``indices`` gets weights 0 and bias ``UNSEEN_LOGIT`` (probability 0), and two
        present classes get logits ``-z/2, z/2`` from scikit-learn's binary ``z``. Multi-label:
        a class with no positive (no negative) gets weights 0 and bias ``ABSENT_LOGIT``
        (``-ABSENT_LOGIT``). Memory: the ``(N, F)`` features in float32 and their standardised
        float64 copy. Returns ``self`` (in eval mode)."""
        linear_model = require("sklearn.linear_model", "the k-mer baseline (--model kmer)")
        if multi_label is None:
            multi_label = self.multi_label or bool(getattr(ds, "multi_label", False))
        multi = bool(multi_label)
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if not len(indices):
            raise ValueError("KmerClassifier.fit: no training items")
        K = self.num_classes
        if multi:
            if getattr(ds, "targets", None) is None:
                raise ValueError("KmerClassifier.fit: multi-label fitting needs a multi-label data set "
                                 "(SequenceDataset(..., multi_label=True))")
            Y = np.asarray(ds.targets[indices]) > 0.5
            if Y.shape[1] != K:
                raise ValueError(f"KmerClassifier.fit: the data set has {Y.shape[1]} classes, the model {K}")
        else:
            if getattr(ds, "multi_label", False):
                raise ValueError("KmerClassifier.fit: the data set is multi-label: fit it with multi_label=True")
            y = np.asarray(ds.labels[indices], dtype=np.int64)
            if (y < 0).any() or (y >= K).any():
                raise ValueError(f"KmerClassifier.fit: labels must be in [0, {K}) (unlabelled items cannot be fitted)")
            present = np.unique(y)
            if len(present) < 2:
                raise ValueError(f"KmerClassifier.fit: the training items hold {len(present)} class; "
                                 "logistic regression needs at least 2")
        weights = self._class_weights(class_weight, K)

        need = len(indices) * self.num_features * 12  # the float32 frequencies and their float64 scaled copy
        have = _physical_memory()
        if have and need > 0.8 * have:
            raise ValueError(f"--k {self.k}: {len(indices):,} training sequences x {self.num_features:,} k-mer "
                             f"features need about {need / 2**30:.1f} GiB, more than this machine's "
                             f"{have / 2**30:.1f} GiB allows: use a smaller --k")
        X = self.frequencies_of(ds, indices, batch_size)
        if self.standardize_features:
            mean = X.mean(0, dtype=np.float64)
            # The variance a block of rows at a time: no (N, F) float64 temporaries beside Xs.
            var = sum(((X[i:i + 4096] - mean) ** 2).sum(0) for i in range(0, len(X), 4096)) / len(X)
            std = np.sqrt(var)
            std = np.where(std < 1e-12, 1.0, std)  # StandardScaler's guard: constant features only centred
        else:
            mean, std = np.zeros(X.shape[1]), np.ones(X.shape[1])  # the raw frequencies
        Xs = X.astype(np.float64)  # scaled in place: one (N, F) float64 array
        Xs -= mean
        Xs /= std

        coef = np.zeros((K, self.num_features))
        bias = np.zeros(K)
        common = dict(C=self.C, solver="lbfgs", max_iter=int(max_iter), tol=float(tol))
        if multi:
            estimators = []
            for c in range(K):
                pos = int(Y[:, c].sum())
                if pos in (0, len(Y)):
                    bias[c] = ABSENT_LOGIT if pos == 0 else -ABSENT_LOGIT
                    estimators.append(None)
                    continue
                cw = weights if isinstance(weights, str) or weights is None else {0: 1.0, 1: float(weights[c])}
                est = linear_model.LogisticRegression(class_weight=cw, **common).fit(Xs, Y[:, c].astype(np.int64))
                coef[c], bias[c] = est.coef_[0], est.intercept_[0]
                estimators.append(est)
            self.estimator_ = estimators
        else:
            cw = weights if isinstance(weights, str) or weights is None else {int(c): float(weights[c])
                                                                            for c in present}
            est = linear_model.LogisticRegression(class_weight=cw, **common).fit(Xs, y)
            if len(present) == 2:
                coef[present] = np.stack([-est.coef_[0] / 2, est.coef_[0] / 2])
                bias[present] = [-est.intercept_[0] / 2, est.intercept_[0] / 2]
            else:
                coef[present], bias[present] = est.coef_, est.intercept_
            bias[np.setdiff1d(np.arange(K), present)] = UNSEEN_LOGIT
            self.estimator_ = est
        with torch.no_grad():
            self.mean.copy_(torch.from_numpy(mean))
            self.std.copy_(torch.from_numpy(std))
            self.linear.weight.copy_(torch.from_numpy(coef))
            self.linear.bias.copy_(torch.from_numpy(bias))
        self.multi_label = multi
        self.config["multi_label"] = multi
        return self.eval()

    @staticmethod
    def _class_weights(class_weight, K: int):
        if class_weight is None or isinstance(class_weight, str):
            if class_weight not in (None, "balanced"):
                raise ValueError(f"class_weight must be None, 'balanced' or per-class weights, got {class_weight!r}")
            return class_weight
        if isinstance(class_weight, dict):
            w = np.ones(K)
            for c, v in class_weight.items():
                if not 0 <= int(c) < K:
                    raise ValueError(f"class_weight: class index {c!r} is not in [0, {K})")
                w[int(c)] = float(v)
        else:
            w = np.asarray(class_weight, dtype=np.float64).reshape(-1)
            if w.shape != (K,):
                raise ValueError(f"class_weight must hold one weight per class ({K}), got {w.shape[0]}")
        if not (np.isfinite(w) & (w > 0)).all():
            raise ValueError(f"class_weight: weights must be positive and finite, got {w.tolist()}")
        return w
