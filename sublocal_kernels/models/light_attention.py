"""Light Attention: a small classifier over per-residue language-model embeddings.

Two width-``kernel_size`` convolutions ``D -> D`` (one gives values, one attention logits), the
channel-wise attention pooling joined with a max-pool over each sequence's valid steps, and a
small MLP (Stärk et al., 2021, over ProtT5 embeddings, ``D = 1024``).

It reads precomputed embeddings: ``model(tokens, lengths, features)`` with ``features``
``(B, T, embedding_dim)``; with the default ``encoding="none"``, ``tokens`` (the classifiers'
common first argument) is only checked against ``features``' ``(B, T)``. With another encoding
(``onehot``, ...) the residues are encoded as in the other classifiers and the embeddings, if
any (``embedding_dim`` may then be 0), are appended: the convolutions run over
``D = encoding width + embedding_dim`` channels.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.encodings import ResidueEncoder
from .classifiers import ClassifierOutput, _positive, _probability
from .layers import _check_layers, make_channel_attention, make_conv

__all__ = ["LightAttention"]


class _BatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` that normalises a one-sequence training batch with the running
    statistics (a batch of one has no variance; the trainer's length buckets can end in one)."""

    def forward(self, x):
        if self.training and x.shape[0] == 1:
            return nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False,
                                            0.0, self.eps)
        return super().forward(x)


class LightAttention(nn.Module):
    """Light Attention: conv (values) and conv (logits) -> channel-wise attention pooling and
    max-pool -> ``Linear(2 D, hidden)`` -> dropout -> ReLU -> ``BatchNorm1d`` -> ``Linear(hidden,
    num_classes)``.

    Args:
        num_classes: output classes.
        embedding_dim: ``D``, the width of the per-residue embeddings (1024 for ProtT5).
        kernel_size: width of both convolutions (centred; inputs past a sequence's end read as 0).
        dropout: on the values after their convolution and in the MLP.
        hidden: width of the MLP's hidden layer.
        layers: ``"sublocal"`` (the fused ops: a one-width multi-width conv and
            :class:`~sublocal_kernels.nn.ChannelAttentionPool`) or ``"torch"`` (``nn.Conv1d`` and
            stock softmax/max), the same model weight for weight.
        alphabet, encoding: ``encoding="none"`` (default): the input is the embeddings alone;
            otherwise a :class:`~sublocal_kernels.data.ResidueEncoder` of the tokens comes first
            (``embedding_dim`` embeddings appended, 0 for none).

    ``forward_details`` also returns the pooled representation ``(B, 2 D)`` and the attention
    averaged over channels ``(B, T)`` (zero at padded steps); ``forward`` does not compute the
    ``(B, T, D)`` attention weights at all.

    Example::

        >>> model = LightAttention(num_classes=10, embedding_dim=16, hidden=8)
        >>> emb = torch.randn(2, 30, 16); lengths = torch.tensor([30, 7])
        >>> model(torch.ones(2, 30, dtype=torch.int64), lengths, emb).shape
        torch.Size([2, 10])
    """

    name = "light-attention"

    def __init__(self, num_classes: int, embedding_dim: int = 1024, kernel_size: int = 9, dropout: float = 0.25,
                 hidden: int = 32, layers: str = "sublocal", alphabet: str = "protein", encoding: str = "none"):
        super().__init__()
        self.config = {k: v for k, v in dict(locals()).items() if k not in ("self", "__class__")}
        self.layers = _check_layers(layers)
        self.num_classes = _positive("num_classes", num_classes)
        self.embedding_dim = _positive("embedding_dim", embedding_dim, allow_zero=encoding != "none")
        # encoding "none": the embeddings go straight to the convolutions (no masked copy of a
        # (B, T, D) input); the convolutions read inputs past each length as zero anyway.
        self.encoder = None if encoding == "none" else ResidueEncoder(alphabet, encoding,
                                                                      extra_features=embedding_dim)
        embedding_dim = embedding_dim if self.encoder is None else self.encoder.out_channels
        width = (_positive("kernel_size", kernel_size),)
        self.values_conv = make_conv(layers, embedding_dim, embedding_dim, width, activation=None)
        self.logits_conv = make_conv(layers, embedding_dim, embedding_dim, width, activation=None)
        self.dropout = nn.Dropout(_probability("dropout", dropout))
        self.pooling = make_channel_attention(layers)
        self.head = nn.Sequential(nn.Linear(2 * embedding_dim, _positive("hidden", hidden)), nn.Dropout(dropout),
                                  nn.ReLU(), _BatchNorm1d(hidden), nn.Linear(hidden, num_classes))

    def _pool(self, tokens, lengths, features, return_alpha):
        if self.encoder is not None:
            features = self.encoder(tokens, features)
        elif features is None or features.dim() != 3 or features.shape[2] != self.embedding_dim:
            got = None if features is None else tuple(features.shape)
            raise ValueError(f"LightAttention: `features` must be the (B, T, {self.embedding_dim}) embeddings, "
                             f"got {got}")
        elif tuple(tokens.shape) != tuple(features.shape[:2]):
            raise ValueError(f"LightAttention: `tokens` must have shape {tuple(features.shape[:2])} (the embeddings' "
                             f"(B, T)), got {tuple(tokens.shape)}")
        values = self.dropout(self.values_conv(features, lengths))
        logits = self.logits_conv(features, lengths)
        context, maxpool, alpha = self.pooling(values, logits, lengths, return_alpha)
        return torch.cat([context, maxpool], dim=1), alpha

    def forward_details(self, tokens: torch.Tensor, lengths: torch.Tensor,
                        features: torch.Tensor | None = None) -> ClassifierOutput:
        representation, alpha = self._pool(tokens, lengths, features, True)
        return ClassifierOutput(self.head(representation), representation, alpha.mean(2))

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, features: torch.Tensor | None = None
                ) -> torch.Tensor:
        return self.head(self._pool(tokens, lengths, features, False)[0])

    def first_conv(self) -> nn.Module:
        return self.values_conv
