"""The numbered examples in python/ run end to end (smallest settings), so they cannot rot."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = {
    "01_fo_pool_and_qrnn.py": [],
    "02_drop_in_layers.py": [],
    "03_train_on_your_fasta.py": ["--epochs", "1"],
    "04_multiloc_paper.py": ["--smoke", "--models", "2", "--epochs", "1"],
    "05_rna_qrnn_tcn.py": ["--epochs", "1", "--n-per-class", "6"],
    "06_protein_language_model.py": ["--smoke"],
}


def test_every_example_is_listed():
    assert sorted(p.name for p in (ROOT / "python").glob("[0-9][0-9]_*.py")) == sorted(EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs(name, tmp_path):
    args = list(EXAMPLES[name])
    if name.startswith(("03", "04", "06")):
        args += ["--out", str(tmp_path / "out")]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    # The checkout under test, not whichever copy the environment's install points at.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    done = subprocess.run([sys.executable, str(ROOT / "python" / name), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    assert done.stdout.strip(), "an example prints what it shows"
