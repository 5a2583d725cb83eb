"""Checkpoints: tensors in safetensors, everything else in JSON, never pickled objects.

A checkpoint named ``NAME`` in a run directory is two files:

- ``NAME.safetensors``: the model's parameters (``model.<key>``) and, for a training
  checkpoint, the optimizer's tensors (``optim.<param index>.<name>``);
- ``NAME.json``: the model's name and constructor config, the class names, the data settings
  (alphabet, truncation, features), the training state (epoch, step within the epoch, history,
  best validation loss, the training config) and the optimizer's scalars, plus the SHA-256 of
  the ``.safetensors`` file.

Both files are written atomically (a temporary file in the same directory, flushed, fsynced,
then ``os.replace``): the tensors first, the JSON last. A crash between the two leaves a JSON
whose hash does not match the tensors, which :func:`load_checkpoint` reports instead of loading
a mixture.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field

import torch

from .._optional import require

from ..models import Ensemble, build_model

__all__ = ["FORMAT", "save_checkpoint", "load_checkpoint", "Checkpoint", "atomic_write", "resolve_checkpoint",
           "load_predictor"]

FORMAT = "sublocal-checkpoint"
VERSION = 1


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader sees the old file or the new one, never a part."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - directories cannot be fsynced on some file systems
        pass


def _plain(value):
    """JSON-ready copy: tuples to lists, tensors of one element to numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.item()
    return value


def _optimizer_payload(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = _plain(value)
    meta = {"type": type(optimizer).__name__, "param_groups": _plain(sd["param_groups"]), "scalars": scalars}
    return tensors, meta


def save_checkpoint(directory: str, name: str, model: torch.nn.Module, meta: dict,
                    optimizer: torch.optim.Optimizer | None = None) -> str:
    """Write ``directory/name.safetensors`` then ``directory/name.json``; returns the JSON path.

    ``model`` must have ``name`` and ``config`` (a :class:`~sublocal_kernels.models.SequenceClassifier`);
    ``meta`` holds ``classes`` and the data and training settings (JSON-ready values).
    """
    module = getattr(model, "module", model)  # DistributedDataParallel wraps the model
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    doc = {"format": FORMAT, "version": VERSION, "model": module.name, "model_config": _plain(module.config)}
    doc.update(_plain(meta))
    if optimizer is not None:
        opt_tensors, doc["optimizer"] = _optimizer_payload(optimizer)
        tensors.update(opt_tensors)
    blob = require("safetensors.torch", "checkpoints").save(tensors, metadata={"format": FORMAT})
    doc["tensors"] = f"{name}.safetensors"
    doc["sha256"] = hashlib.sha256(blob).hexdigest()
    atomic_write(os.path.join(directory, f"{name}.safetensors"), blob)
    json_path = os.path.join(directory, f"{name}.json")
    atomic_write(json_path, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())
    return json_path


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``model`` (eval mode, on ``device``), ``meta`` (the JSON document),
    ``classes``, and the optimizer tensors (empty unless it is a training checkpoint)."""

    path: str
    model: torch.nn.Module
    meta: dict
    optim_tensors: dict = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]

    def load_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Restore the optimizer's state exactly (tensors bit for bit, scalars from the JSON)."""
        if "optimizer" not in self.meta:
            raise ValueError(f"{self.path}: no optimizer state (not a training checkpoint)")
        om = self.meta["optimizer"]
        if om["type"] != type(optimizer).__name__:
            raise ValueError(f"{self.path}: optimizer is {om['type']}, cannot restore into {type(optimizer).__name__}")
        state: dict = {}
        for key, value in self.optim_tensors.items():
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
        for idx, scalars in om["scalars"].items():
            state.setdefault(int(idx), {}).update(scalars)
        groups = []
        for g in om["param_groups"]:
            g = dict(g)
            if "betas" in g:
                g["betas"] = tuple(g["betas"])
            groups.append(g)
        optimizer.load_state_dict({"state": state, "param_groups": groups})


def resolve_checkpoint(path: str) -> str:
    """The JSON file of a checkpoint given as a run directory (its ``best``), a ``.json``, a
    ``.safetensors`` or the common stem."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "best.json")
    elif path.endswith(".safetensors"):
        path = path[: -len(".safetensors")] + ".json"
    elif not path.endswith(".json"):
        path = path + ".json"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint (expected NAME.json beside NAME.safetensors)")
    return path


def load_checkpoint(path: str, device="cpu") -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint` (see :func:`resolve_checkpoint` for
    ``path``). Raises ``ValueError`` when the JSON is not a checkpoint or does not match its
    tensors file."""
    json_path = resolve_checkpoint(path)
    with open(json_path) as fh:
        try:
            meta = json.load(fh)
        except json.JSONDecodeError as err:
            raise ValueError(f"{json_path}: not valid JSON ({err})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{json_path}: not a {FORMAT} file (format={meta.get('format')!r})")
    tensor_path = os.path.join(os.path.dirname(json_path), meta["tensors"])
    with open(tensor_path, "rb") as fh:
        blob = fh.read()
    if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
        raise ValueError(f"{json_path}: {tensor_path} does not match the SHA-256 recorded in the JSON "
                         "(a write was interrupted, or the files come from different checkpoints)")
    tensors = require("safetensors.torch", "checkpoints").load(blob)
    model = build_model(meta["model"], **meta["model_config"])
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    optim = {k: v for k, v in tensors.items() if k.startswith("optim.")}
    return Checkpoint(json_path, model, meta, optim)


def load_predictor(paths, device="cpu") -> Checkpoint:
    """One checkpoint, or several (comma-separated string or list) combined as an
    :class:`~sublocal_kernels.models.Ensemble` averaging their probabilities. Members must
    share classes, alphabet and truncation; the returned ``meta`` is the first member's."""
    if isinstance(paths, str):
        paths = [p for p in paths.split(",") if p]
    cks = [load_checkpoint(p, device) for p in paths]
    if len(cks) == 1:
        return cks[0]
    first = cks[0].meta
    for ck in cks[1:]:
        for key in ("classes", "alphabet", "max_length"):
            if ck.meta.get(key) != first.get(key):
                raise ValueError(f"ensemble members differ in {key}: {cks[0].path} has {first.get(key)!r}, "
                                 f"{ck.path} has {ck.meta.get(key)!r}")
    meta = dict(first, ensemble=[ck.path for ck in cks])
    return Checkpoint(",".join(ck.path for ck in cks), Ensemble([ck.model for ck in cks]).eval(), meta)
