"""Optional dependencies: imported where they are used, with an error that says how to get them.

The kernel core (``sublocal_kernels``, ``.ops``, ``.nn``) needs only torch and numpy (and
triton on a GPU). Reading FASTA, checkpoints, metrics, plots and progress bars need packages
from the ``models`` extra; :func:`require` imports one and, when it is missing, raises an
``ImportError`` naming the package and the command that installs it.
"""

from __future__ import annotations

import importlib

__all__ = ["MissingDependency", "require", "OPTIONAL"]

# module -> (PyPI package, extra that installs it)
OPTIONAL = {
    "Bio": ("biopython", "models"),
    "safetensors": ("safetensors", "models"),
    "sklearn": ("scikit-learn", "models"),
    "matplotlib": ("matplotlib", "models"),
    "logomaker": ("logomaker", "models"),
    "tqdm": ("tqdm", "models"),
    "h5py": ("h5py", "models"),
}


class MissingDependency(ImportError):
    """An optional package is not installed; the message names it and its extra."""


def require(module: str, purpose: str = ""):
    """Import and return ``module`` (e.g. ``"Bio.SeqIO"``), or raise :class:`MissingDependency`."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if getattr(exc, "name", None) not in (None, top) and not str(getattr(exc, "name", "")).startswith(top + "."):
            raise  # the package is there but something it imports is broken: show that error
        package, extra = OPTIONAL.get(top, (top, "models"))
        what = f" ({purpose})" if purpose else ""
        raise MissingDependency(
            f"{package} is needed{what} but is not installed: pip install {package}, or install "
            f"sublocal-kernels with the '{extra}' extra (pip install --no-build-isolation \".[{extra}]\")"
        ) from exc
