"""The papers' localization classifiers, built from :mod:`sublocal_kernels.nn` layers.

``RLSTM``, ``ALSTM`` (the convolutional LSTM paper), ``CNNLSTM`` (the CNN-LSTM notebook),
``QRNNClassifier`` and ``TCNClassifier`` (long RNA sequences), ``LightAttention`` (over
per-residue language-model embeddings), ``MLPClassifier`` (logistic regression or a small MLP
over one language-model embedding per protein), ``KmerClassifier`` (k-mer frequencies and
logistic regression: the baseline), and ``Ensemble`` (mean of several models'
probabilities). :func:`build_model` makes one from its command-line name.
``ProteinLM`` (UniRep-style language model) and ``ConvAutoencoder`` (the report's comparison)
learn sequence representations without labels (``sublocal pretrain``).
"""

from .classifiers import ALSTM, CNNLSTM, RLSTM, ClassifierOutput, QRNNClassifier, SequenceClassifier, TCNClassifier
from .ensemble import Ensemble
from .language_model import PRETRAIN_MODELS, ConvAutoencoder, ProteinLM
from .convert import convert_state_dict
from .layers import LAYER_SETS
from .light_attention import LightAttention
from .kmer import KmerClassifier
from .mlp import MLPClassifier

MODELS = {cls.name: cls for cls in (RLSTM, ALSTM, CNNLSTM, QRNNClassifier, TCNClassifier, LightAttention,
                                    MLPClassifier, KmerClassifier)}

__all__ = ["ALSTM", "CNNLSTM", "RLSTM", "QRNNClassifier", "TCNClassifier", "LightAttention", "MLPClassifier",
           "KmerClassifier", "Ensemble", "ClassifierOutput", "SequenceClassifier", "MODELS", "ProteinLM",
           "ConvAutoencoder",
           "PRETRAIN_MODELS", "LAYER_SETS", "build_model", "convert_state_dict", "feature_kind"]


def build_model(name: str, **config) -> SequenceClassifier:
    """The classifier called ``name`` (``rlstm``, ``alstm``, ``cnnlstm``, ``qrnn``, ``tcn``,
    ``light-attention``, ``mlp``, ``kmer``, ``ensemble``) or pretraining model (``protein-lm``,
    ``conv-autoencoder``), built from
    ``config`` (its constructor arguments; ``model.config`` round-trips)."""
    if str(name).lower() == Ensemble.name:
        return Ensemble.from_config(**config, build=build_model)
    try:
        cls = {**MODELS, **PRETRAIN_MODELS}[name.lower()]
    except KeyError:
        raise ValueError(f"model must be one of {', '.join([*MODELS, *PRETRAIN_MODELS])}, got {name!r}") from None
    return cls(**config)


def feature_kind(name) -> str:
    """What ``--features`` must hold for classifier ``name`` (or a checkpoint's JSON document:
    an ensemble's, its members' model): ``"per-protein"`` (one ``(D,)`` vector per record:
    ``mlp``) or ``"per-residue"`` (``(L, D)`` arrays: every other model)."""
    if isinstance(name, dict):
        meta, name = name, name["model"]
        if name == Ensemble.name:
            name = meta["model_config"]["members"][0]["model"]
    return getattr(MODELS.get(str(name).lower()), "feature_kind", "per-residue")
