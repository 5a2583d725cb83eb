"""Output rows of ``sublocal predict``: TSV (default) or JSON lines, and the attention summary.

TSV columns: ``id``, ``prediction`` (the most probable class; for a multi-label checkpoint the
predicted set: every class whose probability reaches its threshold, joined by ``;``, empty when
none), ``p_<class>`` for every class (6 decimals), then with ``--attention-summary``
``attention_start``, ``attention_end`` (1-based, inclusive, positions in the record as given),
``attention_residues`` and ``attention_mass`` (the window's share of the attention, 6 decimals).

JSON lines: ``{"id", "prediction" (single-label) or "predicted" (multi-label, a list),
"probabilities": {class: p}, "attention": {"start", "end", "residues", "mass"}}``, one object per
record, keys in that order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["AttentionWindow", "attention_window", "RowWriter", "FORMATS"]

FORMATS = ("tsv", "jsonl")


@dataclass(frozen=True)
class AttentionWindow:
    """The ``width`` consecutive residues with the largest summed attention: ``start``/``end``
    1-based inclusive in the record's own numbering, the residues, their attention ``mass``."""

    start: int
    end: int
    residues: str
    mass: float


def attention_window(weights, positions, sequence: str, width: int) -> AttentionWindow:
    """The best window of ``width`` steps over ``weights`` ``(L,)`` (one record's attention over its
    model input; the whole input when shorter). ``positions (L,)`` maps each step to its residue in
    ``sequence`` (they differ where the checkpoint truncates the middle of long records); the first
    of equal windows wins."""
    w = np.asarray(weights, dtype=np.float64)
    n = len(w)
    if n <= width:
        s, e = 0, n
    else:
        c = np.concatenate([[0.0], np.cumsum(w)])
        s = int(np.argmax(c[width:] - c[:-width]))
        e = s + width
    kept = np.asarray(positions)[s:e]
    return AttentionWindow(int(kept[0]) + 1, int(kept[-1]) + 1, "".join(sequence[int(p)] for p in kept),
                           float(w[s:e].sum()))


class RowWriter:
    """Formats the rows of one output ``format`` for ``classes``; ``thresholds`` (one per class)
    makes it a multi-label writer."""

    def __init__(self, format: str, classes: Sequence[str], thresholds: Sequence[float] | None = None,
                 attention: bool = False, top_one: bool = False):
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
        self.format, self.classes, self.attention = format, list(classes), attention
        self.thresholds = None if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        self.top_one = bool(top_one)  # multi-label: no class at its threshold -> the most probable one

    def header(self) -> str:
        if self.format != "tsv":
            return ""
        cols = ["id", "prediction", *(f"p_{c}" for c in self.classes)]
        if self.attention:
            cols += ["attention_start", "attention_end", "attention_residues", "attention_mass"]
        return "\t".join(cols) + "\n"

    def _predicted(self, probs: np.ndarray):
        if self.thresholds is None:
            return self.classes[int(np.argmax(probs))]
        chosen = [c for c, p, t in zip(self.classes, probs, self.thresholds) if p >= t]
        return chosen if chosen or not self.top_one else [self.classes[int(np.argmax(probs))]]

    def row(self, record_id: str, probs: np.ndarray, window: AttentionWindow | None = None) -> str:
        predicted = self._predicted(probs)
        if self.format == "tsv":
            label = predicted if isinstance(predicted, str) else ";".join(predicted)
            cells = [record_id, label, *(f"{v:.6f}" for v in probs)]
            if self.attention:
                cells += [str(window.start), str(window.end), window.residues, f"{window.mass:.6f}"]
            return "\t".join(cells) + "\n"
        doc = {"id": record_id, "prediction" if self.thresholds is None else "predicted": predicted,
               "probabilities": {c: round(float(v), 6) for c, v in zip(self.classes, probs)}}
        if self.attention:
            doc["attention"] = {"start": window.start, "end": window.end, "residues": window.residues,
                                "mass": round(window.mass, 6)}
        return json.dumps(doc) + "\n"
