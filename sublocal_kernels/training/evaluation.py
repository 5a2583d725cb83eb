"""Running a classifier over a data set and scoring it: :func:`run_model` (probabilities and the
loss sum, length-sorted batches, ranks sharing the batches), :func:`evaluate_model` (loss and
the classification or multi-label report: the validation pass of every epoch and the final
test report).
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data import DataWarning, LengthBucketSampler, SequenceDataset, collate
from .distributed import DistributedContext
from .metrics import classification_report, confusion_matrix, multilabel_report, tune_thresholds

__all__ = ["run_model", "evaluate_model"]


def _loss_sum(logits: torch.Tensor, batch, multi_label: bool, weight: torch.Tensor | None = None) -> torch.Tensor:
    """The batch's loss summed over its sequences: cross-entropy, or for multi-label data the
    binary cross-entropy of every class's logit, averaged over the classes. ``weight``: per-class
    weights of the cross-entropy, or for multi-label data each label's positive weight."""
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits.float(), batch.targets, reduction="sum",
                                                  pos_weight=weight) / logits.shape[1]
    return F.cross_entropy(logits.float(), batch.labels, weight=weight, reduction="sum")


@torch.no_grad()
def run_model(model, ds: SequenceDataset, indices, device, batch_size: int = 64, details: bool = False,
              ctx: DistributedContext | None = None, callback: Callable | None = None,
              on_probs: Callable | None = None, multi_label: bool | None = None):
    """Run ``model`` over ``ds[indices]`` in length-sorted batches (rank ``r`` of ``W`` takes
    every ``W``-th batch). Returns ``(probs (N, K) float32, loss_sum, n)`` in the order of
    ``indices`` (rows of other ranks' batches are zero); with ``callback``, calls
    ``callback(batch, output)`` per batch with the :class:`ClassifierOutput`; with
    ``on_probs``, calls ``on_probs(positions, probs)`` per batch (positions into ``indices``).
    ``multi_label`` (default: ``ds.multi_label``): probabilities are the sigmoid of each
    logit (else the softmax over classes) and the loss is the binary cross-entropy."""
    ctx = ctx or DistributedContext()
    if multi_label is None:
        multi_label = bool(getattr(ds, "multi_label", False))
    indices = np.asarray(indices, dtype=np.int64)
    was_training = model.training
    model.eval()
    probs = np.zeros((len(indices), model.num_classes), dtype=np.float32)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    sampler = LengthBucketSampler(ds.lengths[indices], batch_size, shuffle=False)
    for k, local in enumerate(sampler.batches()):
        if k % ctx.world_size != ctx.rank:
            continue
        batch = collate(ds, indices[local]).to(device)
        if details or callback is not None:
            out = model.forward_details(batch.tokens, batch.lengths, batch.features)
            logits = out.logits
        else:
            out, logits = None, model(batch.tokens, batch.lengths, batch.features)
        if multi_label:
            if batch.targets is not None:
                loss_sum += _loss_sum(logits, batch, True).double()
            probs[local] = torch.sigmoid(logits.float()).cpu().numpy()
        else:
            # (A multi-label data set's labels are label-set indices: no single-label loss.)
            labelled = batch.labels >= 0 if not getattr(ds, "multi_label", False) else batch.labels < -1
            if bool(labelled.any()):
                loss_sum += F.cross_entropy(logits[labelled].float(), batch.labels[labelled], reduction="sum").double()
            probs[local] = torch.softmax(logits.float(), -1).cpu().numpy()
        if callback is not None:
            callback(batch, out)
        if on_probs is not None:
            on_probs(np.asarray(local), probs[local])
    model.train(was_training)
    return probs, loss_sum, len(indices)


def evaluate_model(model, ds: SequenceDataset, indices, device, batch_size: int = 64,
                   ctx: DistributedContext | None = None, thresholds=None, threshold_by: str = "f1",
                   top_one: bool = False) -> dict:
    """Loss and :func:`classification_report` of ``model`` on ``ds[indices]`` (all ranks
    contribute their batches; every rank gets the totals). For a multi-label data set: loss and
    :func:`multilabel_report` with ``thresholds`` (None: tuned here on these predictions by
    ``threshold_by``, see :func:`tune_thresholds`; the report's ``untuned`` lists classes left
    at 0.5) and ``top_one``."""
    ctx = ctx or DistributedContext()
    if ds.multi_label:
        return _evaluate_multilabel(model, ds, indices, device, batch_size, ctx, thresholds, threshold_by, top_one)
    probs, loss_sum, n = run_model(model, ds, indices, device, batch_size, ctx=ctx)
    labels = ds.labels[np.asarray(indices, dtype=np.int64)]
    pred = probs.argmax(1)
    cm = torch.from_numpy(confusion_matrix(labels, pred, len(ds.classes)) if n else
                          np.zeros((len(ds.classes),) * 2, dtype=np.int64))
    if ctx.active:
        import torch.distributed as dist

        # Each rank filled only its own batches: count only those rows.
        mine = probs.sum(1) > 0
        cm = torch.from_numpy(confusion_matrix(labels[mine], pred[mine], len(ds.classes)))
        totals = torch.cat([cm.flatten().double(), loss_sum.cpu().reshape(1)]).to(device)
        dist.all_reduce(totals)
        totals = totals.cpu()
        cm = totals[:-1].round().long().reshape(cm.shape)
        loss_sum = totals[-1]
    report = classification_report(cm.numpy(), ds.classes)
    report["loss"] = float(loss_sum) / max(1, n)
    return report


def _evaluate_multilabel(model, ds, indices, device, batch_size, ctx, thresholds, threshold_by, top_one) -> dict:
    probs, loss_sum, n = run_model(model, ds, indices, device, batch_size, ctx=ctx)
    if ctx.active:
        import torch.distributed as dist

        # Each rank filled only its own batches' rows (the rest are zero): the sum is every row.
        both = torch.cat([torch.from_numpy(probs).double().flatten(), loss_sum.cpu().reshape(1)]).to(device)
        dist.all_reduce(both)
        both = both.cpu()
        probs, loss_sum = both[:-1].float().numpy().reshape(probs.shape), both[-1]
    targets = ds.targets[np.asarray(indices, dtype=np.int64)]
    untuned = []
    if thresholds is None:
        thresholds, untuned = tune_thresholds(targets, probs, ds.classes, by=threshold_by)
    report = multilabel_report(targets, probs, thresholds, ds.classes, top_one)
    report["untuned"] = untuned
    report["loss"] = float(loss_sum) / max(1, n)
    return report


def _warn_untuned(data, untuned, where: str) -> None:
    if untuned:
        warnings.warn(f"{data}: {len(untuned)} class{'es' if len(untuned) > 1 else ''} with no positive sequence in "
                      f"the {where} keep{'s' if len(untuned) == 1 else ''} the threshold 0.5: "
                      f"{', '.join(map(repr, untuned))}", DataWarning, stacklevel=3)
