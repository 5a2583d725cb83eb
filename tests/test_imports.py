"""Import hygiene: the kernel core and its tests need only torch, numpy, triton, pytest and
hypothesis (the GPU image has no biopython); every optional package is imported where it is
used and, when missing, named together with the extra that installs it."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sublocal_kernels._optional import OPTIONAL, MissingDependency, require

ROOT = Path(__file__).resolve().parent.parent
BLOCK = "import sys\nfor m in {mods!r}: sys.modules[m] = None\n".format(mods=sorted(OPTIONAL))


def _run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_core_and_models_import_without_optional_packages():
    done = _run("""
        import sublocal_kernels, sublocal_kernels.ops, sublocal_kernels.nn
        import sublocal_kernels.models, sublocal_kernels.data, sublocal_kernels.training, sublocal_kernels.cli
        assert all(sys.modules.get(m) is None for m in %r), "an optional package was imported"
        print("imported")
    """ % sorted(OPTIONAL))
    assert done.returncode == 0 and "imported" in done.stdout, done.stderr[-3000:]


def test_ops_tests_collect_without_optional_packages():
    # What the GPU run executes first: `pytest -m cuda tests/ops` on an image without biopython.
    done = _run("""
        import pytest
        sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "tests/ops"]))
    """)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "error" not in done.stdout.lower().split("\n")[-2], done.stdout[-2000:]


def test_missing_package_error_names_package_and_extra():
    done = _run("""
        from sublocal_kernels.data import read_fasta
        import tempfile
        path = tempfile.mktemp(suffix=".fasta")
        open(path, "w").write(">a\\nMKV\\n")
        try:
            list(read_fasta(path))
        except ImportError as exc:
            print("ERR", exc)
    """)
    assert "ERR biopython is needed" in done.stdout, done.stdout + done.stderr
    assert ".[models]" in done.stdout


def test_require_imports_present_packages_and_names_missing_ones():
    assert require("numpy").__name__ == "numpy"
    with pytest.raises(MissingDependency, match="no_such_pkg_x is needed"):
        require("no_such_pkg_x")


def test_hdf5_embeddings_without_h5py_name_the_package():
    done = _run("""
        from sublocal_kernels.data import open_embeddings
        import tempfile
        path = tempfile.mktemp(suffix=".h5")
        open(path, "wb").write(b"x")
        try:
            open_embeddings(path)
        except ImportError as exc:
            print("ERR", exc)
    """)
    assert "ERR h5py is needed (reading HDF5 embedding files)" in done.stdout, done.stdout + done.stderr
