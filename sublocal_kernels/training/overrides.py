"""Resuming a run: the config saved in its checkpoint, with the settings given again on top.

Both ``sublocal train --resume`` and ``sublocal pretrain --resume`` continue ``OUT/last.json``
with the checkpoint's settings. A setting given on the command line replaces the saved one; the
run itself then refuses those that a resume may not change, listing each difference. Settings
not given keep the checkpoint's values, not the command line's defaults. Model arguments are
merged one by one: the saved ones, with those given laid over them.

    saved = {"epochs": 3, "lr": 2e-4, "model_args": {"hidden_size": 32, "dropout": 0.5}}
    now = {"epochs": 5, "lr": 1e-3, "model_args": {"dropout": 0.3}}
    apply_given(saved, now, {"epochs", "dropout"})
    # {"epochs": 5, "lr": 2e-4, "model_args": {"hidden_size": 32, "dropout": 0.3}}
"""

from __future__ import annotations

import dataclasses
import json
import os

from .checkpoint import read_checkpoint_meta

__all__ = ["apply_given", "resume_config"]


def apply_given(saved: dict, current: dict, given) -> dict:
    """``saved`` (a run's settings by name) with each setting named in ``given`` taken from
    ``current``. ``current["model_args"]`` holds the model arguments given on this command line
    (the config builders leave out every model flag not given): they replace the saved ones of
    the same name, and the other saved ones stay."""
    merged = {name: current[name] if name in given else value for name, value in saved.items() if name != "model_args"}
    if "model_args" in saved:
        merged["model_args"] = {**saved["model_args"], **current.get("model_args", {})}
    return merged


def resume_config(cfg, given, key: str):
    """The config of the run in ``cfg.out`` (the ``key`` entry of its ``last.json``, e.g.
    ``"train_config"``; without a ``last.json``, its ``config.json``), with the settings named
    in ``given`` taken from ``cfg``; an instance of ``cfg``'s own dataclass. ``cfg`` itself when
    there is no such file or it holds no config: the run reports that."""
    last, written = os.path.join(cfg.out, "last.json"), os.path.join(cfg.out, "config.json")
    cls = type(cfg)
    if os.path.isfile(last):
        _, meta = read_checkpoint_meta(last)
        if key not in meta:
            return cfg
        saved = cls.from_json(meta[key])
    elif os.path.isfile(written):
        # A run with no checkpoint of its own: a cross-validation (train --cv), whose folds hold them.
        try:
            with open(written, encoding="utf-8") as fh:
                saved = cls.from_json(json.load(fh))
        except (OSError, ValueError, TypeError) as err:
            raise ValueError(f"{written}: cannot read the run's settings ({err})") from None
    else:
        return cfg
    names = [f.name for f in dataclasses.fields(cls)]
    merged = apply_given({n: getattr(saved, n) for n in names}, {n: getattr(cfg, n) for n in names}, given)
    return cls(**merged)
