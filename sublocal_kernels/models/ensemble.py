"""Averaging the probabilities of several trained classifiers (the paper's 10-model ensemble)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .classifiers import ClassifierOutput

__all__ = ["Ensemble"]


class Ensemble(nn.Module):
    """``models`` with the same classes; ``forward`` returns the log of their mean class
    probabilities, so ``softmax(forward(...))`` is the ensemble's probability and the result can
    stand in wherever logits are expected (argmax, cross-entropy, evaluation). With
    ``multi_label``, members' sigmoid probabilities are averaged and ``forward`` returns their
    logit, so ``sigmoid(forward(...))`` is the ensemble's per-class probability.

    ``forward_details`` averages the members' attention maps where every member has one, and
    concatenates their representations.

    Example::

        >>> ens = Ensemble([ALSTM(7, hidden_size=8, attention_size=8, dense_size=8) for _ in range(3)])
        >>> probs = ens.predict_proba(tokens, lengths)       # (B, 7), rows sum to 1
    """

    name = "ensemble"

    def __init__(self, models: Sequence[nn.Module], multi_label: bool = False):
        super().__init__()
        self.multi_label = bool(multi_label)
        if len(models) == 0:
            raise ValueError("Ensemble needs at least one model, got none")
        classes = {getattr(m, "num_classes", None) for m in models}
        if len(classes) != 1:
            raise ValueError(f"every member must predict the same number of classes, got {sorted(map(str, classes))}")
        self.members = nn.ModuleList(models)
        self.num_classes = classes.pop()

    @property
    def config(self) -> dict:
        """What :func:`~sublocal_kernels.models.build_model` rebuilds it from (``"ensemble"``):
        each member's name and config, so an ensemble is one checkpoint."""
        return {"members": [{"model": m.name, "config": m.config} for m in self.members],
                "multi_label": self.multi_label}

    @classmethod
    def from_config(cls, members, multi_label: bool = False, build=None) -> "Ensemble":
        """The ensemble of :attr:`config`: ``build(name, **config)`` makes each member."""
        if not isinstance(members, list) or not all(isinstance(m, dict) and {"model", "config"} <= set(m)
                                                    for m in members):
            raise ValueError("an ensemble's config needs 'members', a list of {'model', 'config'}")
        return cls([build(m["model"], **m["config"]) for m in members], multi_label=multi_label)

    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, -1)

    def _logits(self, probs: torch.Tensor) -> torch.Tensor:
        if self.multi_label:
            # sigmoid(logit(p)) = p: the mean probability, clamped so 0 and 1 stay finite.
            return torch.logit(probs, eps=1e-7)
        return torch.log(probs)

    def predict_proba(self, tokens, lengths, features=None) -> torch.Tensor:
        return torch.stack([self._probs(m(tokens, lengths, features)) for m in self.members]).mean(0)

    def forward(self, tokens, lengths, features=None) -> torch.Tensor:
        return self._logits(self.predict_proba(tokens, lengths, features))

    def forward_details(self, tokens, lengths, features=None) -> ClassifierOutput:
        outs = [m.forward_details(tokens, lengths, features) for m in self.members]
        probs = torch.stack([self._probs(o.logits) for o in outs]).mean(0)
        att = None
        if all(o.attention is not None for o in outs):
            att = torch.stack([o.attention for o in outs]).mean(0)
        return ClassifierOutput(self._logits(probs), torch.cat([o.representation for o in outs], -1), att)

    def first_conv(self):
        return self.members[0].first_conv()
