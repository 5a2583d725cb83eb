"""The life of one training run, shared by ``sublocal train`` (:mod:`.trainer`) and ``sublocal
pretrain`` (:mod:`~sublocal_kernels.lm.pretrain`); each plugs its own step and evaluation in.

A run, in order:

1. :func:`hold_run_directory`: rank 0 holds ``cfg.out`` (:func:`~.rundir.run_directory`)
   around the whole run.
2. :meth:`Run.resume`: with ``--resume``, ``cfg.out/last.json`` is loaded and its config must
   equal the given one outside the resumable settings; :meth:`Run.restore` then loads its
   weights, optimizer state and position.
3. :meth:`Run.distribute`: the model wrapped in DistributedDataParallel under ``torchrun``, and
   the training :class:`~sublocal_kernels.data.LengthBucketSampler` (batches a function of
   ``(seed, epoch)``; each rank takes every ``W``-th sequence of a global batch).
4. :meth:`Run.steps`: one epoch's steps from a position inside it, subnormal floats flushed,
   dropout seeded per step by :func:`~.distributed.step_seed` (so a resumed run repeats the
   uninterrupted one without carrying any random-generator state); :class:`Progress` draws the
   bar.
5. :meth:`Run.save` (``best`` and ``last``, rank 0 only, :meth:`Run.due` for the cadence),
   :meth:`Run.write_config` and :meth:`Run.write_summary` (``config.json``, ``summary.json``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import sys
import time
from typing import Callable

import torch

from .._optional import MissingDependency, require
from ..data import LengthBucketSampler
from .checkpoint import Checkpoint, CheckpointError, atomic_write, load_checkpoint, save_checkpoint
from .config import _flag, resume_differences
from .distributed import DistributedContext, step_seed
from .fp_mode import flush_denormal_steps
from .rundir import run_directory

__all__ = ["Run", "Progress", "hold_run_directory", "learning_rate", "SCHEDULES"]

SCHEDULES = ("constant", "step", "cosine")


def learning_rate(cfg, step: int, epoch: int, total_steps: int) -> float:
    """The rate of optimizer step ``step`` (0-based, global) in ``epoch`` of a run of
    ``total_steps`` steps, for a config with ``lr``, ``schedule`` (:data:`SCHEDULES`:
    ``constant``; ``step``, times ``lr_gamma`` every ``lr_step_epochs`` epochs; ``cosine``, from
    ``lr`` to 0 over the run), each after ``warmup_steps`` of linear warm-up. A function of the
    step, so a resumed run sets it again rather than restoring a scheduler object."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "step":
        return cfg.lr * cfg.lr_gamma ** (epoch // cfg.lr_step_epochs)
    if cfg.schedule == "cosine":
        span = max(1, total_steps - cfg.warmup_steps)
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / span)))
    return cfg.lr


@contextlib.contextmanager
def hold_run_directory(out: str, resume: bool, overwrite: bool, ctx: DistributedContext, barrier: bool = False):
    """Hold ``out`` for the block on rank 0 (:func:`~.rundir.run_directory`: refused when in use
    by another run, or when it holds files unless ``resume`` or ``overwrite``); the other ranks
    neither take nor check the lock. ``barrier``: every rank waits until rank 0 holds it."""
    with run_directory(out, resume, overwrite) if ctx.is_main else contextlib.nullcontext():
        if barrier and ctx.active:
            import torch.distributed as dist

            dist.barrier()  # rank 0 holds the directory before anyone writes into it
        yield


def _progress(enabled: bool | None):
    """tqdm when asked for (``True``: tqdm must be installed) or, for ``None``, when standard
    error is a terminal and tqdm is installed."""
    if enabled is None:
        if not sys.stderr.isatty():
            return None
        try:
            return require("tqdm", "the progress bar").tqdm
        except MissingDependency:
            return None
    if not enabled:
        return None
    return require("tqdm", "the progress bar").tqdm


def _json_ready(value):
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Progress:
    """A progress bar (``tqdm(**bar)``; nothing when ``tqdm`` is None) and the clock of what it
    counts. :meth:`step` advances it; its figures (``postfix(elapsed seconds)``, a dict) are
    computed at most twice a second, as they may wait for the device."""

    def __init__(self, tqdm, **bar):
        self.bar = tqdm(**bar) if tqdm else None
        self.t0, self._refreshed = time.perf_counter(), 0.0

    def step(self, postfix: Callable[[float], dict]) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        now = time.perf_counter()
        if now - self._refreshed > 0.5:  # one host sync per refresh, not one per batch
            self._refreshed = now
            self.bar.set_postfix(**postfix(now - self.t0))

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Run:
    """One run of ``cfg`` (a dataclass with ``out``, ``seed``, ``batch_size``, ``max_tokens``,
    ``progress``, ``to_json`` and ``from_json``) on ``device``, as rank ``ctx.rank``.

    ``say``: ``log``, or a print on rank 0. ``cfg``: the run's config (after :meth:`resume`,
    the checkpoint's). ``resumed``: the checkpoint resumed from, or None.
    """

    def __init__(self, cfg, device: torch.device, ctx: DistributedContext, log: Callable[[str], None] | None = None):
        self.cfg, self.device, self.ctx = cfg, device, ctx
        self.say = log or (lambda m: print(m, flush=True) if ctx.is_main else None)
        self.last_path = os.path.join(cfg.out, "last.json")
        self.resumed: Checkpoint | None = None
        self.sampler: LengthBucketSampler | None = None

    def resume(self, resumable: tuple, keys: tuple, what: str) -> Checkpoint:
        """Load ``last.json`` to resume from. Its meta must hold ``keys`` (the first is the
        saved config; else a :class:`CheckpointError` ``"{path}: {what}"``) and the given config
        must equal the saved one outside ``resumable`` (else a ``ValueError`` listing every
        difference); the run's config becomes the saved one with the given ``resumable``."""
        if not os.path.isfile(self.last_path):
            raise FileNotFoundError(f"{self.last_path}: no checkpoint to resume from (--resume continues a run "
                                    "directory that holds last.json)")
        resumed = load_checkpoint(self.last_path, self.device)
        if any(key not in resumed.meta for key in keys):
            raise CheckpointError(f"{self.last_path}: {what}")
        saved = type(self.cfg).from_json(resumed.meta[keys[0]])
        diffs = resume_differences(self.cfg, saved, resumable)
        # Not flags of this command (out is the run itself), or not of this kind of run.
        hidden = ("out", "eval_batch_size") + (() if getattr(saved, "cv", False) else ("only_folds",))
        if diffs:
            raise ValueError(f"{self.last_path}: --resume with settings that differ from the checkpoint's: "
                             f"{'; '.join(diffs)}. A resume may change only "
                             f"{', '.join(_flag(n) for n in resumable if n not in hidden)}")
        self.cfg = dataclasses.replace(saved, **{n: getattr(self.cfg, n) for n in resumable})
        self.resumed = resumed
        return resumed

    def restore(self, model, optimizer, state: dict, key: str) -> None:
        """Load the resumed checkpoint's weights into ``model``, its optimizer state into
        ``optimizer`` (bit for bit) and its position (``meta[key]``) into ``state``."""
        model.load_state_dict(self.resumed.model.state_dict())
        self.resumed.load_optimizer(optimizer)
        state.update(self.resumed.meta[key])

    def distribute(self, model, lengths) -> tuple[torch.nn.Module, LengthBucketSampler]:
        """``(net, sampler)``: ``model`` wrapped in DistributedDataParallel when distributed (else
        ``model``), and the shuffled training sampler over sequences of ``lengths``."""
        net = model
        if self.ctx.active:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        cfg, ctx = self.cfg, self.ctx
        self.sampler = LengthBucketSampler(lengths, cfg.batch_size, shuffle=True, seed=cfg.seed,
                                           max_tokens=cfg.max_tokens, num_replicas=ctx.world_size, rank=ctx.rank)
        return net, self.sampler

    def progress_bars(self) -> Callable[..., Progress]:
        """A maker of :class:`Progress` bars: tqdm on rank 0 as ``cfg.progress`` asks (``None``:
        when standard error is a terminal and tqdm is installed), else bars that draw nothing."""
        return functools.partial(Progress, _progress(self.cfg.progress) if self.ctx.is_main else None)

    def steps(self, epoch: int, batches: list, start: int, stop: Callable[[], bool] | None = None):
        """``(step, global_batch, local)`` for the steps ``start ..`` of ``epoch`` (``batches``:
        the sampler's), ``local`` this rank's share of the global batch. Dropout is seeded for
        each step before it is yielded; the loop body runs with subnormal floats flushed to zero
        (the mode restored when the loop ends, breaks or raises). ``stop()``, asked before each
        step, ends the epoch early."""
        for step in flush_denormal_steps(range(start, len(batches))):
            if stop is not None and stop():
                break
            global_batch = batches[step]
            torch.manual_seed(step_seed(self.cfg.seed, epoch, step, self.ctx.rank))
            yield step, global_batch, self.sampler.shard(global_batch)

    @staticmethod
    def optimize(optimizer, params, loss: torch.Tensor, clip_norm: float | None) -> None:
        """One optimizer step on ``loss``: gradients cleared and back-propagated, their norm
        clipped to ``clip_norm`` (when set)."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_norm:
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
        optimizer.step()

    @staticmethod
    def due(count: int, every: int | None) -> bool:
        """Whether a cadence of ``every`` (0 or None: never) falls on ``count``."""
        return bool(every) and count % every == 0

    def save(self, name: str, model, meta: dict, optimizer=None) -> None:
        """Checkpoint ``name`` (``best``, ``last``) in ``cfg.out``, written by rank 0 only."""
        if self.ctx.is_main:
            save_checkpoint(self.cfg.out, name, model, meta, optimizer)

    def write_config(self) -> None:
        """``config.json``: the run's config (rank 0 only)."""
        if self.ctx.is_main:
            atomic_write(os.path.join(self.cfg.out, "config.json"),
                         (json.dumps(self.cfg.to_json(), indent=1) + "\n").encode())

    def write_summary(self, summary: dict) -> None:
        """``summary.json`` (rank 0 only); infinities and NaN (no validation, a diverged run) as null."""
        if self.ctx.is_main:
            atomic_write(os.path.join(self.cfg.out, "summary.json"),
                         (json.dumps(_json_ready(summary), indent=1) + "\n").encode())
