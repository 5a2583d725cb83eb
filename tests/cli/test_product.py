"""What `make demo` shows: a quiet build unless it fails, and readable plot axes."""

import os
import shutil
import subprocess

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("fails", [False, True])
def test_make_build_shows_the_compiler_only_on_failure(tmp_path, fails):
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\necho 'c++ -O3 -fopenmp compiler command line'\nexit {1 if fails else 0}\n")
    fake.chmod(0o755)
    # -o STAMP: the environment step counts as done; PY: the fake interpreter stands in for setup.py.
    proc = subprocess.run(["make", "-s", "-C", ROOT, "build", f"PY={fake}", f"BUILD={tmp_path / 'build'}",
                           "-o", ".venv/.sublocal-deps"], capture_output=True, text=True, timeout=60)
    shown = proc.stdout + proc.stderr
    assert (proc.returncode != 0) == fails
    assert ("compiler command line" in shown) == fails, shown
    assert "build: compiling sublocal_kernels._C" in shown
    assert "compiler command line" in (tmp_path / "build" / "build.log").read_text()
    if fails:
        assert "build: FAILED" in shown


def test_attention_plot_axis_labels_do_not_collide():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from sublocal_kernels.plots import attention_figure

    rng = np.random.default_rng(0)
    att = [a / a.sum() for a in (rng.random(n) for n in rng.integers(50, 300, 30))]
    for window in (100, 30, 250):
        fig = attention_figure(att, rng.integers(0, 3, 30), ["a", "b", "c"], window)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        left, right = fig.axes[0], fig.axes[1]

        def shown(ax):
            lo, hi = sorted(ax.get_xlim())
            return [t for t in ax.xaxis.get_major_ticks() if lo <= t.get_loc() <= hi and t.label1.get_text()]

        last = max(shown(left), key=lambda t: t.get_loc())
        first = min(shown(right), key=lambda t: t.get_loc())
        a, b = last.label1.get_window_extent(renderer), first.label1.get_window_extent(renderer)
        assert a.x1 < b.x0, f"window {window}: {last.label1.get_text()!r} overlaps {first.label1.get_text()!r}"
        assert last.get_loc() < window and first.get_loc() > -window
        plt.close(fig)
