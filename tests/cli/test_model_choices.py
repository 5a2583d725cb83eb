"""``--model`` offers the model registry's names, the default first, in the order ``--help``
has always listed them."""

from sublocal_kernels.cli import build_parser
from sublocal_kernels.models import MODELS, PRETRAIN_MODELS


def _model_flag(command):
    (action,) = [a for a in build_parser().commands[command]._actions if "--model" in a.option_strings]
    return action.choices, action.default


def test_train_offers_every_classifier_in_the_registry():
    choices, default = _model_flag("train")
    assert sorted(choices) == sorted(MODELS) and choices[0] == default == "alstm"
    assert choices == ["alstm", "rlstm", "cnnlstm", "qrnn", "tcn", "light-attention", "mlp", "kmer"]


def test_pretrain_offers_every_pretraining_model_in_the_registry():
    choices, default = _model_flag("pretrain")
    assert choices == list(PRETRAIN_MODELS) == ["protein-lm", "conv-autoencoder"] and default == "protein-lm"
