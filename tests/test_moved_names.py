"""Names that moved between modules stay importable from where they used to live, as the same
objects: the weight conversion (models/layers.py -> models/convert.py) and the pictures
(training/metrics.py and lm/probe.py -> plots.py)."""

import pytest


def test_conversion_names_still_import_from_layers():
    from sublocal_kernels import models
    from sublocal_kernels.models import convert, layers
    from sublocal_kernels.models.layers import conv_filter_weights, convert_state_dict

    assert convert_state_dict is convert.convert_state_dict is models.convert_state_dict
    assert conv_filter_weights is convert.conv_filter_weights
    assert layers._lstm_names is convert._lstm_names
    star: dict = {}
    exec("from sublocal_kernels.models.layers import *", star)
    assert star["convert_state_dict"] is convert.convert_state_dict
    assert star["TorchBiLSTM"] is layers.TorchBiLSTM
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        layers.no_such_name  # noqa: B018


def test_plotting_names_still_import_from_metrics_and_probe():
    import importlib

    from sublocal_kernels import plots, training
    from sublocal_kernels.training.metrics import plot_confusion, plot_multilabel_confusion

    assert plot_confusion is plots.plot_confusion is training.plot_confusion
    assert plot_multilabel_confusion is plots.plot_multilabel_confusion
    probe = importlib.import_module("sublocal_kernels.lm.probe")  # lm.probe is also the function's name
    assert probe._plot_tsne is plots.plot_embedding_tsne
