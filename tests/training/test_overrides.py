"""Resuming a run: the checkpoint's config with the settings given again on top (train and
pretrain share this one merge)."""

import dataclasses

import pytest

from sublocal_kernels.lm import PretrainConfig
from sublocal_kernels.models import ALSTM
from sublocal_kernels.training import TrainConfig
from sublocal_kernels.training.overrides import apply_given, resume_config

pytest.importorskip("safetensors")


def test_given_settings_replace_saved_ones_and_the_rest_stay():
    saved = {"epochs": 3, "lr": 2e-4, "seed": 1, "model_args": {"hidden_size": 32, "dropout": 0.5}}
    now = {"epochs": 5, "lr": 1e-3, "seed": 0, "model_args": {"dropout": 0.3, "widths": [1, 3]}}
    merged = apply_given(saved, now, {"epochs", "dropout", "widths"})
    assert merged == {"epochs": 5, "lr": 2e-4, "seed": 1,
                      "model_args": {"hidden_size": 32, "dropout": 0.3, "widths": [1, 3]}}
    assert saved["model_args"] == {"hidden_size": 32, "dropout": 0.5}, "the saved settings are not modified"


def test_a_default_on_the_command_line_does_not_replace_the_saved_value():
    # lr equals its default here, but it was not given: the checkpoint's value stands.
    merged = apply_given({"lr": 5e-3, "model_args": {}}, {"lr": 2e-4, "model_args": {}}, set())
    assert merged == {"lr": 5e-3, "model_args": {}}


def test_settings_without_model_arguments():
    assert apply_given({"a": 1, "b": 2}, {"a": 3, "b": 4}, {"b"}) == {"a": 1, "b": 4}


def _checkpoint(out, key, cfg):
    from sublocal_kernels.training import save_checkpoint

    model = ALSTM(2, widths=(1,), filters_per_width=2, hidden_size=4, attention_size=3, dense_size=4)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"classes": ["a", "b"], "alphabet": "protein"}
    if cfg is not None:
        meta[key] = cfg.to_json()
    save_checkpoint(str(out), "last", model, meta)


def test_train_config_resumes_with_the_given_flags(tmp_path):
    out = tmp_path / "run"
    saved = TrainConfig(data="a.fasta", out=str(out), model="rlstm", lr=5e-3, epochs=2, seed=3, eval_batch_size=16,
                        model_args={"hidden_size": 8, "dropout": 0.25})
    _checkpoint(out, "train_config", saved)
    now = TrainConfig(data="b.fasta", out=str(out), epochs=4, model_args={"dropout": 0.1, "bidirectional": False})
    cfg = resume_config(now, {"data", "out", "epochs", "dropout", "unidirectional"}, "train_config")
    assert isinstance(cfg, TrainConfig)
    assert dataclasses.asdict(cfg) == dict(
        dataclasses.asdict(saved), data="b.fasta", epochs=4,
        model_args={"hidden_size": 8, "dropout": 0.1, "bidirectional": False})


def test_pretrain_config_resumes_with_the_given_flags(tmp_path):
    out = tmp_path / "lm"
    saved = PretrainConfig(fasta=["/x/u.fasta"], out=str(out), model="conv-autoencoder", max_steps=3, lr=3e-3,
                           model_args={"latent_channels": 2, "latent_length": 50, "channels": 8})
    _checkpoint(out, "pretrain_config", saved)
    now = PretrainConfig(fasta=["/x/u.fasta"], out=str(out), max_steps=9,
                         model_args={"latent_channels": 4, "latent_length": 100})
    cfg = resume_config(now, {"fasta", "out", "max_steps", "latent"}, "pretrain_config")
    assert isinstance(cfg, PretrainConfig)
    assert cfg.model == "conv-autoencoder" and cfg.lr == 3e-3 and cfg.max_steps == 9
    assert cfg.model_args == {"latent_channels": 4, "latent_length": 100, "channels": 8}


def test_without_a_saved_config_the_command_line_stands(tmp_path):
    now = TrainConfig(data="a.fasta", out=str(tmp_path / "none"), epochs=4)
    assert resume_config(now, {"epochs"}, "train_config") is now  # no OUT/last.json: the run reports it
    _checkpoint(tmp_path / "old", "train_config", None)
    now = dataclasses.replace(now, out=str(tmp_path / "old"))
    assert resume_config(now, {"epochs"}, "train_config") is now  # a checkpoint that holds no config
