"""Checkpoints: tensors in safetensors, everything else in JSON, never pickled objects.

A checkpoint named ``NAME`` in a run directory is two files:

- ``NAME.safetensors``: the model's parameters (``model.<key>``) and, for a training
  checkpoint, the optimizer's tensors (``optim.<param index>.<name>``);
- ``NAME.json``: the model's name and constructor config, the class names, the data settings
  (alphabet, truncation, features), the training state (epoch, step within the epoch, history,
  best validation loss, the training config) and the optimizer's scalars, plus the SHA-256 of
  the ``.safetensors`` file (``tensors_sha256``) and the SHA-256 of the JSON document itself
  without that field (``sha256``, over its canonical form: sorted keys, no spaces).

Both files are written atomically (a temporary file in the same directory, flushed, fsynced,
then ``os.replace``): the tensors first, the JSON last. A crash between the two leaves a JSON
whose hash does not match the tensors, and an edited JSON (say, a changed hidden size) no
longer matches its own hash: :func:`load_checkpoint` reports either, naming the file, instead of
loading a mixture. Every error raised here is a :class:`CheckpointError` (or
``FileNotFoundError``) whose message starts with the file's path.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field

import torch

from .._optional import require

from ..models import PRETRAIN_MODELS, Ensemble, build_model, feature_kind

__all__ = ["FORMAT", "save_checkpoint", "load_checkpoint", "Checkpoint", "CheckpointError", "atomic_write",
           "resolve_checkpoint", "read_checkpoint_meta", "load_predictor"]

FORMAT = "sublocal-checkpoint"
# 1: ``sha256`` covered the tensors only; 2: ``tensors_sha256`` the tensors, ``sha256`` the JSON.
VERSION = 2


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message starts with the file it is about."""


def _doc_sha256(doc: dict) -> str:
    body = {k: v for k, v in doc.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


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
    doc["tensors_sha256"] = hashlib.sha256(blob).hexdigest()
    doc["sha256"] = _doc_sha256(doc)
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
            raise CheckpointError(f"{self.path}: no optimizer state (not a training checkpoint)")
        om = self.meta["optimizer"]
        if om["type"] != type(optimizer).__name__:
            raise CheckpointError(f"{self.path}: optimizer is {om['type']}, cannot restore into "
                                  f"{type(optimizer).__name__}")
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
    """The JSON file of a checkpoint given as a run directory (its ``best``; for a
    cross-validation's directory, its ``ensemble``), a ``.json``, a ``.safetensors`` or the
    common stem."""
    path = os.fspath(path)
    if os.path.isdir(path):
        # A run's best checkpoint; a cross-validation's (train --cv) fold ensemble.
        cv = os.path.join(path, "ensemble.json")
        path = cv if os.path.isfile(cv) and not os.path.isfile(os.path.join(path, "best.json")) else \
            os.path.join(path, "best.json")
    elif path.endswith(".safetensors"):
        path = path[: -len(".safetensors")] + ".json"
    elif not path.endswith(".json"):
        path = path + ".json"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint (expected NAME.json beside NAME.safetensors)")
    return path


def read_checkpoint_meta(path: str) -> tuple[str, dict]:
    """The JSON path and document of a checkpoint (see :func:`resolve_checkpoint`), checked
    against its own SHA-256; the tensors are not read."""
    json_path = resolve_checkpoint(path)
    with open(json_path, "rb") as fh:
        raw = fh.read()
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{json_path}: not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{json_path}: not a {FORMAT} file (format={got!r})")
    version = meta.get("version")
    if version not in (1, VERSION):
        raise CheckpointError(f"{json_path}: checkpoint version {version!r}; this sublocal-kernels reads "
                              f"versions 1 and {VERSION}")
    missing = [k for k in ("model", "model_config", "tensors", "sha256", "classes") if k not in meta]
    if missing:
        raise CheckpointError(f"{json_path}: incomplete checkpoint JSON (no {', '.join(missing)})")
    if version >= 2 and _doc_sha256(meta) != meta["sha256"]:
        raise CheckpointError(f"{json_path}: the JSON does not match the SHA-256 recorded in it (it was edited "
                              "or damaged after it was written); use an unedited copy")
    return json_path, meta


def load_checkpoint(path: str, device="cpu") -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint` (see :func:`resolve_checkpoint` for
    ``path``). Raises :class:`CheckpointError`, naming the file, when the JSON is not a
    checkpoint, was edited, or does not match its tensors file."""
    json_path, meta = read_checkpoint_meta(path)
    tensor_path = os.path.join(os.path.dirname(json_path), meta["tensors"])
    try:
        with open(tensor_path, "rb") as fh:
            blob = fh.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{tensor_path}: no such file (the tensors of {json_path})") from None
    expected = meta["tensors_sha256"] if meta["version"] >= 2 else meta["sha256"]
    if hashlib.sha256(blob).hexdigest() != expected:
        raise CheckpointError(f"{tensor_path} does not match the SHA-256 recorded in {json_path} "
                              "(a write was interrupted, or the files come from different checkpoints)")
    safetensors = require("safetensors.torch", "checkpoints")
    try:
        tensors = safetensors.load(blob)
    except Exception as err:  # safetensors raises its own SafetensorError (an Exception)
        if type(err).__name__ != "SafetensorError":
            raise
        raise CheckpointError(f"{tensor_path}: not a readable safetensors file ({err})") from None
    try:
        model = build_model(meta["model"], **meta["model_config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{json_path}: cannot build model {meta['model']!r} from its config ({err})") from None
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = [line.strip() for line in str(err).splitlines()[1:] if line.strip()][:2]
        raise CheckpointError(f"{tensor_path}: its tensors do not fit the model described in {json_path} "
                              f"({'; '.join(first)})") from None
    model.to(device).eval()
    optim = {k: v for k, v in tensors.items() if k.startswith("optim.")}
    return Checkpoint(json_path, model, meta, optim)


def load_predictor(paths, device="cpu") -> Checkpoint:
    """One checkpoint, or several (comma-separated string or list) combined as an
    :class:`~sublocal_kernels.models.Ensemble` averaging their probabilities. Members must
    share classes, alphabet, truncation and input (the features' width; ``mlp`` members, which
    read one vector per protein, only go with ``mlp`` members); the returned ``meta`` is the
    first member's."""
    if isinstance(paths, str):
        paths = [p for p in paths.split(",") if p]
    cks = [load_checkpoint(p, device) for p in paths]
    for ck in cks:
        if ck.meta["model"] in PRETRAIN_MODELS:
            raise CheckpointError(f"{ck.path}: a pretrained {ck.meta['model']!r} model, not a classifier: "
                                  "sublocal embed reads it (and train --features reads what embed writes)")
    if len(cks) == 1:
        return cks[0]
    first = cks[0].meta
    for ck in cks[1:]:
        if feature_kind(ck.meta) != feature_kind(first):
            # One data set feeds every member: per-protein vectors (mlp) or residues, not both.
            raise CheckpointError(f"{ck.path}: an ensemble cannot mix --model mlp (one embedding vector per protein) "
                                  f"with models that read residues: {cks[0].path} is a {first['model']!r} model, "
                                  f"{ck.path} a {ck.meta['model']!r} one")
        for key in ("classes", "alphabet", "max_length", "multi_label", "num_features"):
            if ck.meta.get(key) != first.get(key):
                raise CheckpointError(f"{ck.path}: ensemble members differ in {key}: {cks[0].path} has "
                                      f"{first.get(key)!r}, {ck.path} has {ck.meta.get(key)!r}")
    meta = dict(first, ensemble=[ck.path for ck in cks])
    multi = bool(first.get("multi_label"))
    if multi:
        # Until they are tuned on the ensemble's own validation predictions (evaluate does), the
        # ensemble's thresholds are the mean of its members'.
        meta["thresholds"] = [float(sum(t) / len(t)) for t in zip(*(ck.meta["thresholds"] for ck in cks))]
        meta["thresholds_tuned"] = False
    model = Ensemble([ck.model for ck in cks], multi_label=multi).eval()
    return Checkpoint(",".join(ck.path for ck in cks), model, meta)
