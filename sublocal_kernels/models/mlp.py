"""A small classifier over one embedding vector per protein (``sublocal train --model mlp``).

It reads the per-protein vectors that ``sublocal embed --pool mean|final|unirep`` writes (or
any ``(D,)``-per-record embedding file, ``kind = per-protein``): ``model(tokens, lengths,
features)`` with ``features`` ``(B, input_dim)``. ``tokens`` and ``lengths`` (the classifiers'
common first arguments) are only checked against the batch size: the model reads no residues.

- ``hidden=0``: multinomial logistic regression (one ``Linear(D, K)``), or one logistic
  regression per class with ``--multi-label``;
- ``hidden=H``: ``Linear(D, H)`` -> ReLU -> dropout -> ``Linear(H, K)``.

Dropout is applied to the input vector in both cases. With ``standardize`` (default) the input
is first standardised with the training split's per-feature mean and standard deviation,
computed once before training (:meth:`MLPClassifier.fit_standardization`) and stored as buffers
in the checkpoint, so evaluation and prediction apply the same affine map (as a scikit-learn
``StandardScaler`` + ``LogisticRegression`` pipeline, and ``sublocal probe``, do). Language-model
embeddings have features on very different scales (UniRep's final cell state beside its mean
hidden state); standardising makes one learning rate fit them all.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import nn

from .classifiers import ClassifierOutput, _positive, _probability

__all__ = ["MLPClassifier", "feature_moments"]


def feature_moments(chunks: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """``(mean (D,), std (D,), n)`` over the rows of ``chunks`` (each ``(n_i, D)``), combined
    chunk by chunk in float64 (Chan et al.'s pairwise update: no catastrophic cancellation, and
    memory is one chunk). The standard deviation is the population one (as ``StandardScaler``)."""
    n, mean, m2 = 0, None, None
    for chunk in chunks:
        x = np.asarray(chunk, dtype=np.float64)
        if x.ndim != 2 or not len(x):
            continue
        k = len(x)
        mu = x.mean(0)
        sq = ((x - mu) ** 2).sum(0)
        if mean is None:
            n, mean, m2 = k, mu, sq
            continue
        delta = mu - mean
        total = n + k
        mean = mean + delta * (k / total)
        m2 = m2 + sq + delta ** 2 * (n * k / total)
        n = total
    if mean is None:
        raise ValueError("feature_moments: no rows to compute the mean and standard deviation from")
    return mean, np.sqrt(m2 / n), n


class MLPClassifier(nn.Module):
    """Logistic regression (``hidden=0``) or a one-hidden-layer MLP over a per-protein vector.

    Args:
        num_classes: output classes.
        input_dim: ``D``, the width of the per-protein embeddings (taken from ``--features``).
        hidden: width of the hidden layer; 0 for none (a linear model: logistic regression).
        dropout: on the input vector and, with a hidden layer, on its activations.
        standardize: standardise each input feature with the training split's mean and standard
            deviation (stored as the ``input_mean``/``input_std`` buffers; identity until
            :meth:`fit_standardization` sets them).

    ``forward_details`` returns as ``representation`` the hidden layer's activations (``(B, H)``,
    before dropout), or the standardised input when ``hidden=0``; ``attention`` is None.

    Example::

        >>> model = MLPClassifier(num_classes=3, input_dim=16, hidden=8)
        >>> model(torch.zeros(2, 1, dtype=torch.int64), torch.ones(2, dtype=torch.int64), torch.randn(2, 16)).shape
        torch.Size([2, 3])
    """

    name = "mlp"
    #: what ``--features`` must give this model: one ``(D,)`` vector per record
    feature_kind = "per-protein"

    def __init__(self, num_classes: int, input_dim: int = 1024, hidden: int = 32, dropout: float = 0.25,
                 standardize: bool = True):
        super().__init__()
        self.config = {"num_classes": num_classes, "input_dim": input_dim, "hidden": hidden,
                       "dropout": float(dropout), "standardize": bool(standardize)}
        self.num_classes = _positive("num_classes", num_classes)
        self.input_dim = _positive("input_dim", input_dim)
        self.hidden = _positive("hidden", hidden, allow_zero=True)
        self.standardize = bool(standardize)
        if self.standardize:
            self.register_buffer("input_mean", torch.zeros(input_dim))
            self.register_buffer("input_std", torch.ones(input_dim))
        self.input_dropout = nn.Dropout(_probability("dropout", dropout))
        if hidden:
            self.body = nn.Sequential(nn.Linear(input_dim, hidden), nn.ReLU())
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        else:
            self.body = nn.Identity()
            self.head = nn.Linear(input_dim, num_classes)

    @torch.no_grad()
    def fit_standardization(self, mean, std) -> None:
        """Set the input standardisation to ``(x - mean) / std`` (features whose ``std`` is below
        1e-6, i.e. constant in the training data, are only centred). No-op without ``standardize``."""
        if not self.standardize:
            return
        mean = torch.as_tensor(np.asarray(mean), dtype=self.input_mean.dtype)
        std = torch.as_tensor(np.asarray(std), dtype=self.input_std.dtype)
        if mean.shape != (self.input_dim,) or std.shape != (self.input_dim,):
            raise ValueError(f"MLPClassifier: mean and std must have shape ({self.input_dim},), got "
                             f"{tuple(mean.shape)} and {tuple(std.shape)}")
        self.input_mean.copy_(mean)
        self.input_std.copy_(torch.where(std < 1e-6, torch.ones_like(std), std))

    def _check(self, tokens, features):
        if features is None or features.dim() != 2 or features.shape[1] != self.input_dim:
            got = None if features is None else tuple(features.shape)
            raise ValueError(f"MLPClassifier: `features` must be the (B, {self.input_dim}) per-protein embeddings, "
                             f"got {got}")
        if tokens is not None and tokens.shape[0] != features.shape[0]:
            raise ValueError(f"MLPClassifier: `tokens` holds {tokens.shape[0]} sequences but `features` "
                             f"{features.shape[0]}")

    def _represent(self, tokens, features):
        self._check(tokens, features)
        x = features.float() if features.dtype in (torch.float16, torch.bfloat16) else features
        if self.standardize:
            x = (x - self.input_mean.to(x.dtype)) / self.input_std.to(x.dtype)
        return x, self.body(self.input_dropout(x))

    def forward_details(self, tokens: torch.Tensor | None, lengths: torch.Tensor | None,
                        features: torch.Tensor | None = None) -> ClassifierOutput:
        x, h = self._represent(tokens, features)
        return ClassifierOutput(self.head(h), h if self.hidden else x, None)

    def forward(self, tokens: torch.Tensor | None, lengths: torch.Tensor | None,
                features: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self._represent(tokens, features)[1])

    def first_conv(self) -> None:
        """No convolution reads residues here (no filter logos)."""
        return None
