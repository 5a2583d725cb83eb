"""Run directories: one training run at a time in each, no silent overwrite, no stale temporary files.

:func:`run_directory` is held around a whole training run (by rank 0 only under ``torchrun``):

- a lock file, ``OUT/.lock``, holding the process id and host, created with ``O_EXCL`` so two
  runs cannot both take it; a second run is refused with the first one's PID. A lock whose
  process is gone (killed, machine restarted) is taken over with a :class:`RunWarning`.
- a directory that already holds files is refused unless the run resumes it or is told to
  overwrite it; overwriting removes only the files a run writes (:data:`RUN_FILES`).
- temporary files left by an interrupted atomic write (``.NAME.*.tmp``, see
  :func:`~sublocal_kernels.training.checkpoint.atomic_write`) are removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import warnings

__all__ = ["RunDirError", "RunWarning", "run_directory", "LOCK", "RUN_FILES"]

LOCK = ".lock"
RUN_FILES = ("best.json", "best.safetensors", "last.json", "last.safetensors", "config.json", "summary.json",
             "ensemble.json", "ensemble.safetensors", "cv.json", "oof.tsv")  # the last four: --cv's


class RunDirError(ValueError):
    """The run directory cannot be used as asked; the message names it and what to do."""


class RunWarning(UserWarning):
    """Something about the run directory was repaired (a stale lock, leftover temporary files)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _acquire(out: str) -> str:
    path = os.path.join(out, LOCK)
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            return path
        try:
            with open(path) as fh:
                holder = json.load(fh)
            pid, host = int(holder["pid"]), str(holder["host"])
        except FileNotFoundError:
            continue  # released between our two calls: try again
        except (ValueError, KeyError, TypeError):
            # Written by a process killed between creating and filling it.
            pid, host = None, me["host"]
        if host != me["host"]:
            raise RunDirError(f"{out} is in use by PID {pid} on host {host} (lock file {path}); if that run is "
                              "gone, remove the lock file")
        if pid is not None and _alive(pid):
            raise RunDirError(f"{out} is in use by another run, PID {pid} (lock file {path}); wait for it to "
                              "finish or choose another --out")
        warnings.warn(f"{path}: taking over the lock of PID {pid}, which is no longer running", RunWarning,
                      stacklevel=3)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    raise RunDirError(f"{out}: could not take the lock file {path} (other runs keep taking it)")


def _release(path: str) -> None:
    try:
        with open(path) as fh:
            mine = json.load(fh).get("pid") == os.getpid()
    except (OSError, ValueError):
        return
    if mine:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _stale_temporaries(out: str) -> list[str]:
    return sorted(f for f in os.listdir(out)
                  if f.endswith(".tmp") and any(f.startswith(f".{name}.") for name in RUN_FILES))


@contextlib.contextmanager
def run_directory(out: str, resume: bool = False, overwrite: bool = False):
    """Hold ``out`` for one training run (see the module docstring). ``resume``: the directory
    must hold the run to continue (checked by the trainer); ``overwrite``: the previous run's
    files are removed first. Raises :class:`RunDirError`."""
    if resume and overwrite:
        raise RunDirError(f"{out}: resume and overwrite exclude each other")
    if os.path.exists(out) and not os.path.isdir(out):
        raise RunDirError(f"{out}: exists and is not a directory")
    if resume and not os.path.isdir(out):
        raise RunDirError(f"{out}: no such run directory to resume")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"{out}: cannot create the run directory ({err.strerror or err})") from None
    lock = _acquire(out)
    try:
        stale = _stale_temporaries(out)
        for f in stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(out, f))
        if stale:
            warnings.warn(f"{out}: removed {len(stale)} temporary file(s) left by an interrupted write "
                          f"({', '.join(stale)})", RunWarning, stacklevel=3)
        held = sorted(f for f in os.listdir(out) if f != LOCK)
        if held and not resume:
            if not overwrite:
                shown = ", ".join(held[:4]) + (f" and {len(held) - 4} more" if len(held) > 4 else "")
                raise RunDirError(f"{out} is not empty (it holds {shown}): pass --resume to continue the run in "
                                  "it, or --overwrite to replace it")
            for f in held:
                if f in RUN_FILES:
                    os.unlink(os.path.join(out, f))
        yield
    finally:
        _release(lock)
