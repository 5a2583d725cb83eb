"""``sublocal predict`` end to end: stream the FASTA file in windows of records, predict each
window (here, or in worker processes), write the windows in input order as they complete.

Windows are aligned to record positions: window ``k`` holds records ``[k W, (k+1) W)`` (fewer
when some are skipped, or for the first window of a resumed run), so a resumed run batches the
rest of the file exactly as an uninterrupted one would.

Sharding on CPU (``workers > 1``): the parent reads and checks the records and deals window
``k`` to worker ``k mod N`` (at most three windows per worker in flight or waiting to be written,
so memory stays bounded);
each worker is a spawned process with its own copy of the models and ``threads`` torch threads;
the parent writes the windows back in order as they arrive. A worker that dies is an error
naming the records it held; the windows before them are on disk and ``--resume`` continues.

Fault injection (tests only): with ``SUBLOCAL_TEST_FAIL_AT=P`` in the environment, the process
that predicts the window holding record ``P`` (1-based) exits at once with status 86 (a worker
before returning it; a single process after writing half of that window's rows).
"""

from __future__ import annotations

import array
import hashlib
import os
import signal
import warnings
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from ..data.readers import DataFormatError, DataWarning, Record
from .engine import Predictor, PredictorSpec, checkpoint_identity
from .output import FileOutput, StreamOutput
from .reader import count_records, file_digest, raw_records, records_from

__all__ = ["Window", "windows", "predict", "PredictSummary", "default_workers", "WorkerError", "FAIL_AT_ENV",
           "shard_of", "cpu_cores"]

FAIL_AT_ENV = "SUBLOCAL_TEST_FAIL_AT"
FAULT_STATUS = 86


class WorkerError(ChildProcessError):
    """A worker process stopped; the message names the records it held."""


@dataclass
class Window:
    """Records ``[start, end)`` of the input (positions, 0-based); ``records`` the good ones,
    ``skipped`` the malformed ones dropped by ``on_error="skip"``; ``error`` the malformed record
    at ``end`` that stopped the run (``on_error="stop"``)."""

    index: int
    start: int
    end: int
    records: list[Record] = field(default_factory=list)
    skipped: int = 0
    error: DataFormatError | None = None

    def range_text(self) -> str:
        return f"records {self.start + 1}-{self.end}" if self.end > self.start + 1 else f"record {self.start + 1}"


class _Duplicates:
    """Records whose id was seen before, found at the end from a 64-bit hash and the header line
    of every record (16 bytes per record, not the ids themselves)."""

    def __init__(self):
        self.hashes, self.lines = array.array("Q"), array.array("q")

    def add(self, record: Record) -> None:
        self.hashes.append(int.from_bytes(hashlib.blake2b(record.id.encode(), digest_size=8).digest(), "little"))
        self.lines.append(record.source[1] if record.source else -1)

    def warn(self, path) -> None:
        if len(self.hashes) < 2:
            return
        h = np.frombuffer(self.hashes, dtype=np.uint64)
        order = np.argsort(h, kind="stable")
        again = np.flatnonzero(h[order][1:] == h[order][:-1]) + 1
        if not again.size:
            return
        later = order[again]  # every record whose id came before
        first_later = int(later.min())
        first = int(np.flatnonzero(h == h[first_later])[0])
        lines = np.frombuffer(self.lines, dtype=np.int64)
        rid = next((r.description.split(None, 1)[0] for r in raw_records(path) if r.line == lines[first]), "?")
        more = f" and {len(later) - 1} more" if len(later) > 1 else ""
        warnings.warn(f"{path}: duplicate id {rid!r} (lines {lines[first]} and {lines[first_later]}){more}: each "
                      "record has its own row, in input order", DataWarning, stacklevel=2)


def windows(fasta, alphabet, size: int, start: int = 0, on_error: str = "stop",
            duplicates: _Duplicates | None = None) -> Iterator[Window]:
    """The :class:`Window` s of ``fasta`` from record ``start`` on, holding one window at a time."""
    current: Window | None = None
    for pos, item in records_from(fasta, alphabet, start):
        k = pos // size
        if current is not None and k != current.index:
            yield current
            current = None
        if current is None:
            current = Window(k, pos, pos)
        if isinstance(item, DataFormatError):
            if on_error == "stop":
                current.error = item
                yield current
                return
            warnings.warn(f"skipped a malformed record: {item}", DataWarning, stacklevel=2)
            current.skipped += 1
        else:
            current.records.append(item)
            if duplicates is not None:
                duplicates.add(item)
        current.end = pos + 1
    if current is not None:
        yield current


def cpu_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers(device: str, cores: int | None = None) -> tuple[int, int]:
    """``(workers, threads per worker)`` when not given: on CPU ``max(1, cores // 2)`` workers of
    ``cores // workers`` threads (2 each where there are 2 or more cores: one LSTM's per-step
    matrix products use 2 threads well, more threads are better spent on another shard); one
    process with every core on a GPU."""
    cores = cores or cpu_cores()
    if not str(device).startswith("cpu"):
        return 1, max(1, cores)
    workers = max(1, cores // 2)
    return workers, max(1, cores // workers)


def shard_of(window_index: int, world_size: int) -> int:
    """The rank (or worker) that predicts window ``window_index``: windows are dealt round-robin."""
    return window_index % world_size


def _fail_at() -> int | None:
    value = os.environ.get(FAIL_AT_ENV)
    return int(value) - 1 if value else None


def _hits(window: Window, at: int | None) -> bool:
    return at is not None and window.start <= at < window.end


@dataclass
class PredictSummary:
    rows: int
    records: int
    skipped: int
    output: str


def _worker_main(spec: PredictorSpec, threads: int, tasks, conn) -> None:  # pragma: no cover - a subprocess
    import torch

    torch.set_num_threads(threads)
    try:
        predictor = Predictor(spec)
    except BaseException as err:
        conn.send(("error", None, f"{type(err).__name__}: {err}"))
        return
    at = _fail_at()
    while True:
        window = tasks.get()
        if window is None:
            return
        if _hits(window, at):
            os._exit(FAULT_STATUS)
        try:
            # A pipe, not a queue: send() returns once the bytes are in the pipe, so a result sent
            # before the process dies still arrives (a queue's feeder thread would lose it).
            conn.send(("ok", window.index, predictor.predict_window(window.records)))
        except BaseException as err:
            conn.send(("error", window.index, f"{type(err).__name__}: {err}"))


class _Pool:
    """``n`` spawned worker processes, window ``k`` to worker ``k mod n``; tasks through a queue
    each (the parent never blocks handing one over), results through a pipe each."""

    def __init__(self, spec: PredictorSpec, n: int, threads: int):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.n = n
        self.tasks = [ctx.Queue() for _ in range(n)]
        pipes = [ctx.Pipe(duplex=False) for _ in range(n)]
        self.conns = [r for r, _ in pipes]
        self.procs = [ctx.Process(target=_worker_main, args=(spec, threads, self.tasks[i], pipes[i][1]), daemon=True,
                                  name=f"sublocal-predict-{i + 1}") for i in range(n)]
        # Started with SIGINT ignored, which a new Python keeps: Ctrl-C is the parent's to handle
        # (it stops the workers), not a traceback from each worker, even one still importing torch.
        try:
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread: signals are not ours to change
            previous = None
        try:
            for p in self.procs:
                p.start()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        for _, w in pipes:
            w.close()  # the children hold the write ends: a dead child reads as end of file
        self.open = set(range(n))
        self.dead: set[int] = set()
        self.failure: tuple[str, int] | None = None  # (message, the first window lost)
        self.held: dict[int, Window] = {}

    def submit(self, window: Window) -> None:
        self.held[window.index] = window
        i = shard_of(window.index, self.n)
        if i in self.dead:
            self._fail(i, window.index)
        else:
            self.tasks[i].put(window)

    def ready(self) -> bool:
        return self.failure is not None or any(self.conns[i].poll() for i in self.open)

    def _fail(self, i: int, k: int) -> None:
        p = self.procs[i]
        p.join(timeout=5)
        if self.failure is None or k < self.failure[1]:
            self.failure = (f"worker {i + 1} of {self.n} (pid {p.pid}) exited with status {p.exitcode} while "
                            f"predicting {self.held[k].range_text()}", k)

    def _dead(self, i: int) -> None:
        self.open.discard(i)
        self.dead.add(i)
        mine = sorted(k for k in self.held if shard_of(k, self.n) == i)
        if mine:
            self._fail(i, mine[0])

    def get(self) -> tuple[Window, str]:
        """The next finished window (any order). After a worker died, the windows before the one
        it held still come from the others; then :class:`WorkerError` names the lost records."""
        from multiprocessing.connection import wait

        while True:
            if self.failure is not None and not any(k < self.failure[1] and shard_of(k, self.n) not in self.dead
                                                    for k in self.held):
                raise WorkerError(self.failure[0])
            for i in sorted(self.open):
                conn = self.conns[i]
                if not conn.poll():
                    continue
                try:
                    status, k, payload = conn.recv()
                except EOFError:
                    self._dead(i)
                    break
                if status == "error":
                    where = f" while predicting {self.held[k].range_text()}" if k is not None else ""
                    raise WorkerError(f"worker {i + 1} of {self.n} failed{where}: {payload}")
                return self.held.pop(k), payload
            else:
                for i in sorted(self.open):
                    if not self.procs[i].is_alive() and not self.conns[i].poll():
                        self._dead(i)
                if self.open:
                    wait([self.conns[i] for i in self.open] + [self.procs[i].sentinel for i in self.open],
                         timeout=1.0)

    def close(self) -> None:
        for q in self.tasks:
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        for c in self.conns:
            c.close()


def _progress_bar(progress, fasta, initial):
    """tqdm on standard error (see the trainer's rule), its total from a count of the headers."""
    from ..training.run import _progress

    tqdm = _progress(progress)
    if tqdm is None:
        return None
    return tqdm(total=count_records(fasta), initial=initial, unit="seq", desc="predict", dynamic_ncols=True,
                smoothing=0.1)


def predict(spec: PredictorSpec, fasta, out: str = "-", *, window: int = 1024, resume: bool = False,
            overwrite: bool = False, workers: int = 1, threads: int | None = None, on_error: str = "stop",
            progress: bool | None = None, stream=None) -> PredictSummary:
    """Predict every record of ``fasta`` into ``out`` (``"-"``: ``stream`` or standard output).
    See the module docstring for windows, workers and fault injection, and
    :mod:`~sublocal_kernels.inference.output` for ``resume``/``overwrite``."""
    fasta = os.fspath(fasta)
    if not os.path.isfile(fasta):
        raise FileNotFoundError(f"FASTA {fasta}: no such file")
    predictor = Predictor(spec) if workers == 1 else None
    if predictor is None:  # the parent only reads; it checks the checkpoints and flags before starting workers
        probe = Predictor(PredictorSpec(**{**spec.__dict__, "device": "cpu"}))
        spec.paths = probe.paths
        header, alphabet = probe.header(), probe.alphabet
        del probe
    else:
        header, alphabet = predictor.header(), predictor.alphabet
    if out == "-":
        if resume:
            raise ValueError("--resume needs -o/--out (standard output cannot be continued)")
        sink = StreamOutput(stream)
    else:
        directory = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"--out {out}: no such directory {directory}")
        size, digest = file_digest(fasta)
        identity = {"input": {"path": os.path.abspath(fasta), "size": size, "sha256": digest},
                    "checkpoints": checkpoint_identity(spec.paths),
                    "output": {"format": spec.format, "attention_window": spec.attention}}
        sink = FileOutput(out, identity, resume=resume, overwrite=overwrite)
    start = sink.start(header)
    duplicates = _Duplicates()
    bar = _progress_bar(progress, fasta, start)
    at = _fail_at()
    pool = None
    done = start
    skipped = 0
    try:
        if workers > 1:
            pool = _Pool(spec, workers, threads or 1)
        order: list[Window] = []
        finished: dict[int, str] = {}
        stop: Window | None = None

        def write(w: Window, text: str) -> None:
            nonlocal done, skipped
            if pool is None and _hits(w, at):
                sink.write_cut(text[: len(text) // 2])
                os._exit(FAULT_STATUS)
            sink.write_window(text, w.end, len(w.records), w.skipped)
            done, skipped = w.end, skipped + w.skipped
            if bar is not None:
                bar.update(w.end - w.start)

        def drain(block: bool) -> None:
            while pool.held and (block or pool.ready()):
                w, text = pool.get()
                finished[w.index] = text
                while order and order[0].index in finished:
                    first = order.pop(0)
                    write(first, finished.pop(first.index))
                block = False

        for w in windows(fasta, alphabet, window, start, on_error, duplicates):
            if pool is None:
                write(w, predictor.predict_window(w.records))
            else:
                # Windows in flight or done but waiting for an earlier one: at most 3 per worker,
                # so a slow window (a titin) does not let finished ones pile up in memory.
                while len(order) >= 3 * workers:
                    drain(True)
                order.append(w)
                if w.records:
                    pool.submit(w)
                else:
                    finished[w.index] = ""
                drain(False)
            if w.error is not None:
                stop = w
                break
        while pool is not None and (pool.held or order):
            if pool.held:
                drain(True)
            else:
                while order and order[0].index in finished:
                    first = order.pop(0)
                    write(first, finished.pop(first.index))
        if stop is not None:
            raise stop.error
        sink.finish()
    except (DataFormatError, WorkerError) as err:
        kept = sink.abandon()
        if not kept:
            raise
        hint = "--resume --on-error skip (skipping the bad record)" if isinstance(err, DataFormatError) else "--resume"
        note = f"the {sink.rows} rows of records 1-{done} are kept in {kept}: continue with {hint}"
        if isinstance(err, DataFormatError):
            raise DataFormatError(err.path, err.line, err.record, f"{err.reason}; {note}") from None
        raise WorkerError(f"{err}; {note}") from None
    except BaseException:
        sink.abandon()
        raise
    finally:
        if pool is not None:
            pool.close()
        if bar is not None:
            bar.close()
    duplicates.warn(fasta)
    return PredictSummary(sink.rows, done, skipped, out)
