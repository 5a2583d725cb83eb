"""Where prediction rows go: standard output, or a file written as ``OUT.partial`` beside a JSON
sidecar ``OUT.partial.json`` and renamed to ``OUT`` when complete.

After each window the partial file is flushed and fsynced, then the sidecar is replaced
atomically with the number of input records done, the rows and the bytes they take. The sidecar
therefore never counts a row that is not on disk, and the partial file holds whole rows up to
the sidecar's byte count (anything after it, a row cut by a crash, is truncated on
``--resume``). The sidecar also records the input file (size and SHA-256 of its bytes), every
checkpoint's hashes and the output options: a resume with any of them different is refused.
"""

from __future__ import annotations

import json
import os
import sys

from ..training.checkpoint import atomic_write

__all__ = ["StreamOutput", "FileOutput", "SIDECAR_FORMAT", "partial_paths"]

SIDECAR_FORMAT = "sublocal-predict-partial"


def partial_paths(out: str) -> tuple[str, str]:
    """``(OUT.partial, OUT.partial.json)``."""
    return out + ".partial", out + ".partial.json"


class StreamOutput:
    """Rows to a text stream (standard output): written and flushed per window; no resume."""

    description = "standard output"

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.rows = 0

    def start(self, header: str) -> int:
        self.stream.write(header)
        self.stream.flush()
        return 0

    def write_window(self, text: str, records_done: int, rows: int, skipped: int) -> None:
        self.stream.write(text)
        self.stream.flush()
        self.rows += rows

    def write_cut(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def finish(self) -> None:
        pass

    def abandon(self) -> str | None:
        return None


def _differences(recorded: dict, now: dict) -> list[str]:
    out = []
    ri, ni = recorded.get("input", {}), now["input"]
    if ri.get("size") != ni["size"]:
        out.append(f"input size {ni['size']} bytes, recorded {ri.get('size')}")
    elif ri.get("sha256") != ni["sha256"]:
        out.append(f"input SHA-256 {ni['sha256'][:12]}..., recorded {str(ri.get('sha256'))[:12]}...")
    rc, nc = recorded.get("checkpoints", []), now["checkpoints"]
    if len(rc) != len(nc):
        out.append(f"{len(nc)} checkpoint(s), recorded {len(rc)}")
    else:
        for i, (r, n) in enumerate(zip(rc, nc), 1):
            if (r.get("sha256"), r.get("tensors_sha256")) != (n["sha256"], n["tensors_sha256"]):
                out.append(f"checkpoint {i} ({n['path']}) is not the recorded one ({r.get('path')})")
    for key, value in now["output"].items():
        if recorded.get("output", {}).get(key) != value:
            out.append(f"output {key} {value!r}, recorded {recorded.get('output', {}).get(key)!r}")
    return out


class FileOutput:
    """Rows to ``path`` through ``path.partial`` and its sidecar (see the module docstring).

    ``identity``: ``{"input": {"path", "size", "sha256"}, "checkpoints": [...], "output": {...}}``.
    :meth:`start` refuses an existing ``path`` (or partial) unless ``overwrite``; with ``resume``
    it checks the sidecar against ``identity``, truncates the partial file to its last recorded
    row and returns the number of input records already done.
    """

    def __init__(self, path: str, identity: dict, resume: bool = False, overwrite: bool = False,
                 track_windows: bool = False):
        self.path, self.identity, self.resume, self.overwrite = path, identity, resume, overwrite
        self.partial, self.sidecar = partial_paths(path)
        self.description = self.partial
        self.fh = None
        self.state = {"records": 0, "rows": 0, "bytes": 0, "skipped": 0}
        if track_windows:  # a shard's part: [window index, records done, bytes, rows] per window
            self.state["windows"] = []

    def _save(self) -> None:
        doc = {"format": SIDECAR_FORMAT, "version": 1, **self.identity, **self.state}
        atomic_write(self.sidecar, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())

    def start(self, header: str) -> int:
        if self.resume:
            return self._resume()
        if os.path.exists(self.partial) and not self.overwrite:
            raise FileExistsError(f"--out {self.path}: an interrupted run's {self.partial} is there: continue it "
                                  "with --resume, or start again with --overwrite")
        if os.path.exists(self.path) and not self.overwrite:
            raise FileExistsError(f"--out {self.path} exists: pass --overwrite to replace it (it is kept until "
                                  "the new output is complete)")
        self.fh = open(self.partial, "wb")
        self._append(header)
        self.state["bytes"] = self.fh.tell()
        self._save()
        return 0

    def _resume(self) -> int:
        if not os.path.exists(self.sidecar) or not os.path.exists(self.partial):
            if os.path.exists(self.path):
                raise FileExistsError(f"--resume: {self.path} is complete (no {self.sidecar}): nothing to resume")
            raise FileNotFoundError(f"--resume: no interrupted run to continue ({self.sidecar} not found)")
        try:
            with open(self.sidecar) as fh:
                doc = json.load(fh)
        except (OSError, ValueError) as err:
            raise ValueError(f"{self.sidecar}: not readable JSON ({err})") from None
        if doc.get("format") != SIDECAR_FORMAT or not all(k in doc for k in self.state):
            raise ValueError(f"{self.sidecar}: not a {SIDECAR_FORMAT} sidecar")
        diff = _differences(doc, self.identity)
        if diff:
            raise ValueError(f"--resume: {self.partial} was written by a different run: {'; '.join(diff)}")
        size = os.path.getsize(self.partial)
        if size < doc["bytes"]:
            raise ValueError(f"--resume: {self.partial} holds {size} bytes, fewer than the {doc['bytes']} its sidecar "
                             "records (it was changed after the run stopped); start again with --overwrite")
        self.state = {k: doc[k] for k in self.state}
        self.fh = open(self.partial, "r+b")
        self.fh.truncate(doc["bytes"])  # drop a row cut by the interruption
        self.fh.seek(doc["bytes"])
        return doc["records"]

    def _append(self, text: str) -> None:
        self.fh.write(text.encode())
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def write_window(self, text: str, records_done: int, rows: int, skipped: int, index: int | None = None) -> None:
        self._append(text)
        self.state.update(records=records_done, rows=self.state["rows"] + rows, bytes=self.fh.tell(),
                          skipped=self.state["skipped"] + skipped)
        if "windows" in self.state:
            self.state["windows"].append([index, records_done, self.state["bytes"], rows])
        self._save()

    def close(self) -> None:
        """Close, keeping the partial file and its sidecar (a shard's part, merged later)."""
        self.fh.close()

    def write_cut(self, text: str) -> None:
        """Only for fault injection: bytes that no sidecar counts (a crash in the middle of a write)."""
        self.fh.write(text.encode())
        self.fh.flush()

    @property
    def rows(self) -> int:
        return self.state["rows"]

    def finish(self) -> None:
        self.fh.close()
        os.replace(self.partial, self.path)
        os.unlink(self.sidecar)

    def abandon(self) -> str | None:
        """After a failure: close; a partial without rows is removed (nothing to resume), else
        kept. Returns the partial file's path when it is kept."""
        if self.fh is not None:
            self.fh.close()
        if self.fh is None or self.state["records"] == 0:
            for p in (self.partial, self.sidecar):
                if self.fh is not None and os.path.exists(p) and not self.resume:
                    os.unlink(p)
            return None
        return self.partial
