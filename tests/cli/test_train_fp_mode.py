"""`sublocal train` runs its steps with subnormal floats flushed to zero and restores the mode."""

from __future__ import annotations

import pytest
import torch

from sublocal_kernels.cli import main
from sublocal_kernels.training.fp_mode import flush_denormal, flush_denormal_steps, flushing_denormal

from .conftest import TINY


@pytest.fixture(autouse=True)
def _ieee():
    torch.set_flush_denormal(False)
    yield
    torch.set_flush_denormal(False)


def test_flush_denormal_restores_the_previous_mode():
    assert not flushing_denormal()
    with flush_denormal():
        assert flushing_denormal()
        with flush_denormal():
            assert flushing_denormal()
        assert flushing_denormal(), "an inner block must not switch off the outer block's flush"
    assert not flushing_denormal()
    with pytest.raises(KeyError):
        with flush_denormal():
            raise KeyError("x")
    assert not flushing_denormal()
    with flush_denormal(enabled=False):
        assert not flushing_denormal()


def test_pool_threads_started_inside_the_block_do_not_keep_the_flush():
    """A fresh process whose intra-op pool starts inside the block: after it, the pool's threads
    compute subnormals as before (a thread inherits its starter's mode)."""
    import subprocess
    import sys

    code = """
import torch
from sublocal_kernels.training.fp_mode import flush_denormal
torch.set_num_threads(2)
with flush_denormal():
    torch.full((1 << 20,), 1.0).mul_(2.0)
many = torch.full((1 << 20,), 1e-30) * torch.full((1 << 20,), 1e-10)
print(int((many == 0).sum()))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == "0", "a pool thread kept flushing subnormals after the block"


def test_flush_denormal_steps_flushes_the_loop_body_only():
    seen = []
    for _ in flush_denormal_steps(range(3)):
        seen.append(flushing_denormal())
    assert seen == [True, True, True] and not flushing_denormal()
    for i in flush_denormal_steps(range(5)):
        if i == 1:
            break
    assert not flushing_denormal(), "break must restore the mode"
    with pytest.raises(ValueError):
        for _ in flush_denormal_steps(range(5)):
            raise ValueError
    assert not flushing_denormal(), "an exception in the loop body must restore the mode"


def test_train_steps_run_flushed(tiny_fasta, tmp_path, monkeypatch):
    modes = []
    cross_entropy = torch.nn.functional.cross_entropy

    def spy(*args, **kwargs):
        modes.append(flushing_denormal())
        return cross_entropy(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", spy)
    assert main(["train", tiny_fasta, "--out", str(tmp_path), "--epochs", "1", *TINY]) == 0
    # The training steps' losses are computed flushed; evaluation (after the loop) is not.
    assert True in modes and not flushing_denormal()


def test_train_help_says_so(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "subnormal floats flushed to zero" in " ".join(capsys.readouterr().out.split())
