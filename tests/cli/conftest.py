"""Tiny synthetic data and tiny models so every command-line test takes seconds."""

import os
import subprocess
import sys

import pytest

from sublocal_kernels.data import make_synthetic, write_synthetic

# The smallest A-LSTM worth training: 3 widths x 2 filters, 8 hidden units per direction.
TINY = ["--widths", "1,3,5", "--filters-per-width", "2", "--hidden-size", "8", "--attention-size", "8",
        "--dense-size", "8", "--batch-size", "8", "--lr", "3e-3", "--no-progress"]


@pytest.fixture(scope="session")
def tiny_fasta(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    data = make_synthetic(n_per_class=6, min_length=50, max_length=90, seed=3)
    fasta, _ = write_synthetic(data, d)
    return fasta


def run_cli(capsys, *argv):
    """``sublocal ARGV`` in this process: ``(status, stdout, stderr)``, argparse's exits included."""
    from sublocal_kernels.cli import main

    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def run_torchrun(command: str, *argv) -> str:
    """``sublocal COMMAND ARGV`` under torchrun, two processes on the CPU (one thread each): its
    stdout, after checking that it exited 0 and ran both processes."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "sublocal_kernels.cli", command, *(str(a) for a in argv)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 processes" in proc.stdout
    return proc.stdout


def one_error(err: str, command: str) -> str:
    """The single line of ``err``, which must be ``sublocal COMMAND: error: ...``; its message."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    prefix = f"sublocal {command}: error: "
    assert lines[0].startswith(prefix), err
    return lines[0][len(prefix):]


def warnings_of(err: str, command: str) -> list[str]:
    prefix = f"sublocal {command}: warning: "
    return [line[len(prefix):] for line in err.splitlines() if line.startswith(prefix)]


@pytest.fixture(scope="session")
def tiny_run(tiny_fasta, tmp_path_factory):
    """A trained run directory (one epoch of the tiny A-LSTM), shared by the read-only tests."""
    from sublocal_kernels.cli import main

    out = tmp_path_factory.mktemp("tiny-run") / "run"
    assert main(["train", tiny_fasta, "--out", str(out), "--epochs", "1", *TINY]) == 0
    return str(out)
