"""`models.MLPClassifier` (`--model mlp`): the registry, the config round trip through a
checkpoint, logistic regression at `hidden=0`, the stored input standardisation, and shape errors."""

import numpy as np
import pytest
import torch

from sublocal_kernels.models import MODELS, MLPClassifier, build_model, feature_kind
from sublocal_kernels.models.mlp import feature_moments


def _inputs(B=5, D=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.ones(B, 3, dtype=torch.int64), torch.full((B,), 3), torch.randn(B, D, generator=g)


def test_registry_and_feature_kind():
    assert MODELS["mlp"] is MLPClassifier
    assert feature_kind("mlp") == "per-protein"
    assert feature_kind("alstm") == feature_kind("light-attention") == "per-residue"
    model = build_model("mlp", num_classes=4, input_dim=6, hidden=3)
    again = build_model("mlp", **model.config)
    assert again.config == model.config == {"num_classes": 4, "input_dim": 6, "hidden": 3, "dropout": 0.25,
                                            "standardize": True}
    assert sorted(model.state_dict()) == sorted(again.state_dict())


def test_hidden_zero_is_logistic_regression():
    torch.manual_seed(0)
    model = MLPClassifier(num_classes=3, input_dim=6, hidden=0, dropout=0.0).eval()
    assert [type(m).__name__ for m in model.modules() if isinstance(m, torch.nn.Linear)] == ["Linear"]
    model.fit_standardization(np.arange(6.0), np.full(6, 2.0))
    tokens, lengths, x = _inputs()
    want = ((x - torch.arange(6.0)) / 2.0) @ model.head.weight.T + model.head.bias
    torch.testing.assert_close(model(tokens, lengths, x), want)
    out = model.forward_details(tokens, lengths, x)
    assert out.attention is None and out.representation.shape == (5, 6)
    assert model.first_conv() is None


def test_hidden_layer_and_details():
    model = MLPClassifier(num_classes=2, input_dim=6, hidden=4).eval()
    tokens, lengths, x = _inputs()
    out = model.forward_details(tokens, lengths, x)
    assert out.logits.shape == (5, 2) and out.representation.shape == (5, 4)
    torch.testing.assert_close(out.logits, model(tokens, lengths, x))
    assert (out.representation >= 0).all()  # after the ReLU


def test_standardization_is_stored_in_the_checkpoint(tmp_path):
    pytest.importorskip("safetensors")
    from sublocal_kernels.training.checkpoint import load_checkpoint, save_checkpoint

    model = MLPClassifier(num_classes=3, input_dim=6, hidden=4)
    model.fit_standardization(np.linspace(-1, 1, 6), np.array([1.0, 2.0, 0.0, 3.0, 4.0, 1e-9]))
    # Constant features (std 0 or tiny) are only centred.
    assert model.input_std.tolist() == pytest.approx([1, 2, 1, 3, 4, 1])
    save_checkpoint(str(tmp_path), "m", model, {"classes": ["a", "b", "c"]})
    ck = load_checkpoint(str(tmp_path / "m"))
    assert ck.model.config == model.config
    torch.testing.assert_close(ck.model.input_mean, model.input_mean)
    torch.testing.assert_close(ck.model.input_std, model.input_std)
    tokens, lengths, x = _inputs()
    torch.testing.assert_close(ck.model(tokens, lengths, x), model.eval()(tokens, lengths, x))
    raw = MLPClassifier(num_classes=3, input_dim=6, standardize=False)
    assert "input_mean" not in raw.state_dict()
    raw.fit_standardization(np.zeros(6), np.ones(6))  # a no-op


def test_feature_moments_match_numpy_across_chunks():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((103, 5)) * [1, 10, 0.1, 1e3, 1] + [0, 5, -3, 1e4, 0]
    mean, std, n = feature_moments([x[:10], x[10:11], x[11:70], x[70:]])
    assert n == 103
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, x.std(0), rtol=1e-10)
    with pytest.raises(ValueError, match="no rows"):
        feature_moments([])


def test_shape_and_argument_errors():
    model = MLPClassifier(num_classes=2, input_dim=6)
    tokens, lengths, x = _inputs()
    with pytest.raises(ValueError, match=r"`features` must be the \(B, 6\) per-protein embeddings, got None"):
        model(tokens, lengths, None)
    with pytest.raises(ValueError, match=r"got \(5, 3, 6\)"):
        model(tokens, lengths, torch.randn(5, 3, 6))
    with pytest.raises(ValueError, match="`tokens` holds 4 sequences but `features` 5"):
        model(tokens[:4], lengths[:4], x)
    with pytest.raises(ValueError, match="`hidden` must be a non-negative int"):
        MLPClassifier(num_classes=2, input_dim=6, hidden=-1)
    with pytest.raises(ValueError, match="`input_dim` must be a positive int"):
        MLPClassifier(num_classes=2, input_dim=0)
    with pytest.raises(ValueError, match="`dropout` must be in"):
        MLPClassifier(num_classes=2, input_dim=6, dropout=1.0)
