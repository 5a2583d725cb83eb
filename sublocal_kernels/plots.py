"""Every picture the package draws, all PNG through matplotlib's Agg backend.

The paper's three (``sublocal plot``, :func:`make_plots`): attention along the sequence per
class, convolution filters as sequence logos, and a t-SNE map of the learned sequence
representations. Also the confusion matrices of ``sublocal evaluate --out``
(:func:`plot_confusion`, :func:`plot_multilabel_confusion`; importable from
:mod:`sublocal_kernels.training.metrics` too) and the embeddings' t-SNE map of ``sublocal probe
--tsne`` (:func:`plot_embedding_tsne`).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ._optional import require
from .data import SequenceDataset
from .data.encodings import ResidueEncoder
from .models.convert import conv_filter_weights

__all__ = ["collect_outputs", "plot_attention", "attention_figure", "plot_filter_logos", "plot_tsne", "make_plots",
           "plot_confusion", "plot_multilabel_confusion", "plot_embedding_tsne"]


def _plt():
    matplotlib = require("matplotlib", "plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@torch.no_grad()
def collect_outputs(model, ds: SequenceDataset, indices, device, batch_size: int = 64) -> dict:
    """Run ``model`` over ``ds[indices]``: per sequence its attention over its valid positions
    (or None), the pooled representation, the probabilities; labels. In ``indices`` order."""
    from .training.trainer import run_model

    indices = np.asarray(indices, dtype=np.int64)
    att: list = [None] * len(indices)
    rep: list = [None] * len(indices)
    where = {int(i): k for k, i in enumerate(indices)}

    def grab(batch, out):
        a = None if out.attention is None else out.attention.float().cpu().numpy()
        r = out.representation.float().cpu().numpy()
        for row, i in enumerate(batch.index.tolist()):
            k = where[i]
            n = int(batch.lengths[row])
            att[k] = None if a is None else a[row, :n]
            rep[k] = r[row]

    probs, _, _ = run_model(model, ds, indices, device, batch_size, callback=grab)
    # Multi-label data: each sequence drawn in (and coloured by) its first class.
    labels = ds.targets[indices].argmax(1) if getattr(ds, "multi_label", False) else ds.labels[indices]
    return {"attention": att, "representation": np.stack(rep) if rep else np.zeros((0, 0)), "probs": probs,
            "labels": labels, "indices": indices}


def _aligned_means(att, labels, classes, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean attention per class at the first ``window`` positions (N-terminus aligned) and the
    last ``window`` (C-terminus aligned); NaN where no sequence of the class reaches."""
    K = len(classes)
    n_sum, n_cnt = np.zeros((K, window)), np.zeros((K, window))
    c_sum, c_cnt = np.zeros((K, window)), np.zeros((K, window))
    for a, y in zip(att, labels):
        m = min(window, len(a))
        n_sum[y, :m] += a[:m]
        n_cnt[y, :m] += 1
        c_sum[y, window - m:] += a[len(a) - m:]
        c_cnt[y, window - m:] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return n_sum / n_cnt, c_sum / c_cnt


def plot_attention(att, labels, classes, path: str, window: int = 100, title: str | None = None) -> str:
    """Mean attention weight per true class along the sequence: the first ``window`` residues
    (N-termini aligned) beside the last ``window`` (C-termini aligned)."""
    plt = _plt()
    fig = attention_figure(att, labels, classes, window, title)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def attention_figure(att, labels, classes, window: int = 100, title: str | None = None):
    """The figure of :func:`plot_attention` (the caller saves and closes it)."""
    plt = _plt()
    n_mean, c_mean = _aligned_means(att, labels, classes, window)
    vmax = np.nanpercentile(np.concatenate([n_mean.ravel(), c_mean.ravel()]), 99) or 1.0
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(12, 1.0 + 0.45 * len(classes)), sharey=True,
                             gridspec_kw={"wspace": 0.05})
    # The panels meet where the N-terminal axis ends (window) and the C-terminal one starts
    # (-window): those two tick labels would overlap, so each panel leaves out its inner one.
    for ax, data, label, ext, prune in ((axes[0], n_mean, "position from the N-terminus", (0, window), "upper"),
                                        (axes[1], c_mean, "position from the C-terminus", (-window, 0), "lower")):
        im = ax.imshow(np.ma.masked_invalid(data), aspect="auto", cmap="viridis", vmin=0, vmax=vmax,
                       extent=(ext[0], ext[1], len(classes) - 0.5, -0.5), interpolation="nearest")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True, prune=prune))
        ax.set_xlabel(label)
    axes[0].set_yticks(range(len(classes)), classes)
    fig.colorbar(im, ax=axes, fraction=0.03, label="mean attention weight")
    fig.suptitle(title or "Attention per class (N- and C-termini aligned)")
    return fig


def _letter_responses(model) -> tuple[list, str]:
    """Per filter of the first convolution, its response to each standard letter at each tap:
    ``sum_c W[f, c, k] * E[letter, c]`` with ``E`` the encoder's rows (for one-hot, the weights
    themselves). Returns ``[(width, (F, w, letters) array)]`` and the letters."""
    conv = model.first_conv()
    if conv is None:
        raise ValueError(f"{type(model).__name__} has no convolution to draw")
    enc: ResidueEncoder = model.encoder
    letters = enc.alphabet.letters
    device = next(iter(enc.buffers()), next(iter(enc.parameters()), None)).device
    tokens = torch.arange(1, len(letters) + 1, device=device)[None, :]
    extra = torch.zeros(1, len(letters), enc.extra_features, device=device) if enc.extra_features else None
    with torch.no_grad():
        rows = enc(tokens, extra)[0].cpu()
    out = []
    for width, w in conv_filter_weights(conv):
        w = w.detach().float().cpu()[:, : rows.shape[1]]  # (F, C_enc, w); precomputed features left out
        out.append((width, torch.einsum("fck,ac->fka", w, rows.float()).numpy()))
    return out, letters


def plot_filter_logos(model, path: str, max_per_width: int | None = None, title: str | None = None) -> str:
    """Every filter of the model's first convolution as a sequence logo (logomaker): letter
    heights are the filter's positive response to each residue at each tap (what the filter
    looks for; negative responses are left out so the motif stays readable)."""
    logomaker = require("logomaker", "filter logos")
    import pandas as pd

    plt = _plt()
    filters, letters = _letter_responses(model)
    ncols = max(f.shape[0] if max_per_width is None else min(max_per_width, f.shape[0]) for _, f in filters)
    fig, axes = plt.subplots(len(filters), ncols, figsize=(1.9 * ncols, 1.25 * len(filters)), squeeze=False)
    for r, (width, resp) in enumerate(filters):
        for c in range(ncols):
            ax = axes[r, c]
            if c >= resp.shape[0] or (max_per_width is not None and c >= max_per_width):
                ax.axis("off")
                continue
            df = pd.DataFrame(np.clip(resp[c], 0, None), columns=list(letters))
            logomaker.Logo(df, ax=ax, color_scheme="chemistry" if len(letters) == 20 else "classic",
                           show_spines=False, baseline_width=0.3)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"width {width}", fontsize=8)
    fig.suptitle(title or "Convolution filters (first layer) as sequence logos")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_tsne(representation: np.ndarray, labels, classes, path: str, seed: int = 0, title: str | None = None) -> str:
    """t-SNE (scikit-learn) of the pooled sequence representations, coloured by true class."""
    TSNE = require("sklearn.manifold", "t-SNE").TSNE

    plt = _plt()
    n = len(representation)
    if n < 5:
        raise ValueError(f"t-SNE needs at least 5 sequences, got {n}")
    emb = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed).fit_transform(
        np.asarray(representation, dtype=np.float32))
    fig, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for k, c in enumerate(classes):
        sel = np.asarray(labels) == k
        if sel.any():
            ax.scatter(emb[sel, 0], emb[sel, 1], s=8, color=cmap(k % cmap.N), label=c, alpha=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=8, markerscale=2, loc="best")
    ax.set_title(title or "t-SNE of the learned sequence representations")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# ``sublocal evaluate --out`` (confusion matrices) and ``sublocal probe --tsne`` (embeddings)


def plot_confusion(report: dict, path: str, title: str = "Confusion matrix") -> str:
    """Write the confusion matrix as a PNG (row-normalised colours, counts written in)."""
    plt = _plt()
    cm = np.asarray(report["confusion"], dtype=np.float64)
    classes = report["classes"]
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = 1.6 + 0.55 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} (accuracy {report['accuracy']:.3f})")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_multilabel_confusion(report: dict, path: str, title: str = "Per-class confusion") -> str:
    """Write one 2x2 confusion matrix per class (rows: true no/yes, columns: predicted no/yes) as a PNG."""
    plt = _plt()
    classes = report["classes"]
    cols = min(5, len(classes))
    rows = (len(classes) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.4 * rows + 0.6), squeeze=False)
    for ax in axes.flat[len(classes):]:
        ax.axis("off")
    for ax, c in zip(axes.flat, classes):
        cm = np.asarray(report["per_class"][c]["confusion"], dtype=np.float64)
        norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(2):
            for j in range(2):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks([0, 1], ["no", "yes"])
        ax.set_yticks([0, 1], ["no", "yes"])
        ax.set_title(f"{c}\nF1 {report['per_class'][c]['f1']:.2f}", fontsize=9)
    fig.suptitle(f"{title} (rows: true, columns: predicted; macro F1 {report['macro_f1']:.3f})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_embedding_tsne(X, colour, task, path, seed, classes) -> str:
    """``sublocal probe --tsne``: t-SNE (scikit-learn) of embeddings ``X (N, D)``, coloured by
    value (``task="regression"``: ``colour`` holds the values) or by class (``colour`` holds
    indices into ``classes``)."""
    manifold = require("sklearn.manifold", "the t-SNE map (--tsne)")
    require("matplotlib", "the t-SNE map (--tsne)").use("Agg")
    plt = require("matplotlib.pyplot", "the t-SNE map (--tsne)")
    perplexity = float(min(30.0, max(2.0, (len(X) - 1) / 3)))
    xy = manifold.TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(X)
    fig, ax = plt.subplots(figsize=(6, 5))
    if task == "regression":
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=colour, s=8, cmap="viridis")
        fig.colorbar(sc, ax=ax, label="value")
    else:
        for k, name in enumerate(classes):
            m = colour == k
            ax.scatter(xy[m, 0], xy[m, 1], s=8, label=name)
        ax.legend(markerscale=2, fontsize="small")
    ax.set_title(f"t-SNE of {X.shape[1]}-dimensional embeddings ({len(X)} sequences)")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def make_plots(model, ds: SequenceDataset, indices, out_dir: str, device="cpu", batch_size: int = 64,
               window: int = 100, seed: int = 0, log=print) -> dict:
    """All three pictures for ``ds[indices]`` into ``out_dir``; returns ``{name: path}``.
    Models without attention (R-LSTM, CNN-LSTM, mean-pooled QRNN/TCN) get no attention plot, and
    models without a convolution no logos; the reason is logged."""
    os.makedirs(out_dir, exist_ok=True)
    res = collect_outputs(model, ds, indices, device, batch_size)
    paths = {}
    if res["attention"] and res["attention"][0] is not None:
        paths["attention"] = plot_attention(res["attention"], res["labels"], ds.classes,
                                            os.path.join(out_dir, "attention.png"), window)
    else:
        log(f"no attention plot: {type(model).__name__} has no attention")
    if model.first_conv() is not None and getattr(model, "encoder", None) is not None:
        paths["filters"] = plot_filter_logos(model, os.path.join(out_dir, "filters.png"))
    elif model.first_conv() is not None:
        log(f"no filter logos: {type(model).__name__} reads embeddings, not encoded residues")
    else:
        log(f"no filter logos: {type(model).__name__} has no convolution")
    paths["tsne"] = plot_tsne(res["representation"], res["labels"], ds.classes, os.path.join(out_dir, "tsne.png"),
                              seed)
    return paths
