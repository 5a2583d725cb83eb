"""The papers' localization classifiers, built from :mod:`sublocal_kernels.nn` layers.

``RLSTM``, ``ALSTM`` (the convolutional LSTM paper), ``CNNLSTM`` (the CNN-LSTM notebook),
``QRNNClassifier`` and ``TCNClassifier`` (long RNA sequences), ``LightAttention`` (over
per-residue language-model embeddings), and ``Ensemble`` (mean of several models'
probabilities). :func:`build_model` makes one from its command-line name.
"""

from .classifiers import ALSTM, CNNLSTM, RLSTM, ClassifierOutput, QRNNClassifier, SequenceClassifier, TCNClassifier
from .ensemble import Ensemble
from .layers import LAYER_SETS, convert_state_dict
from .light_attention import LightAttention

MODELS = {cls.name: cls for cls in (RLSTM, ALSTM, CNNLSTM, QRNNClassifier, TCNClassifier, LightAttention)}

__all__ = ["ALSTM", "CNNLSTM", "RLSTM", "QRNNClassifier", "TCNClassifier", "LightAttention", "Ensemble", "ClassifierOutput",
           "SequenceClassifier", "MODELS", "LAYER_SETS", "build_model", "convert_state_dict"]


def build_model(name: str, **config) -> SequenceClassifier:
    """The classifier called ``name`` (``rlstm``, ``alstm``, ``cnnlstm``, ``qrnn``, ``tcn``,
    ``light-attention``), built from ``config`` (its constructor arguments; ``model.config`` round-trips)."""
    try:
        cls = MODELS[name.lower()]
    except KeyError:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {name!r}") from None
    return cls(**config)
