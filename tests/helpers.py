"""Shared test helpers: the one tolerance table, random lengths, comparisons."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from sublocal_kernels._checks import MIN_LENGTH

# One tolerance table for the whole suite: (atol, rtol) per dtype, for values of order 1.
TOLERANCES = {
    torch.float64: (1e-10, 1e-9),
    torch.float32: (2e-5, 2e-4),
    torch.float16: (3e-3, 3e-3),
    torch.bfloat16: (2e-2, 2e-2),
}

triton_interpreted = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None or os.environ.get("TRITON_INTERPRET") != "1",
    reason="Triton kernels on CPU tensors need triton and TRITON_INTERPRET=1 (set by conftest when no GPU)",
)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None,
                 scale: float = 1.0, name: str = "") -> None:
    """Compare in float64 with the tolerance of ``dtype`` (default: ``actual``'s), times ``scale``."""
    atol, rtol = TOLERANCES[dtype or actual.dtype]
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    assert not torch.isnan(a).any(), f"{name}: NaN in result (unwritten or invalid element)"
    torch.testing.assert_close(a, e, atol=atol * scale, rtol=rtol * scale, msg=lambda m: f"{name}: {m}")


def random_lengths(batch: int, time: int, low: int = MIN_LENGTH, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random lengths in [low, time] that include the extremes: low, 1 and time where the batch allows."""
    lengths = torch.randint(low, time + 1, (batch,), generator=generator)
    special = [time, max(low, 1), low]
    for i, v in enumerate(special[:batch]):
        lengths[i] = v
    return lengths[torch.randperm(batch, generator=generator)]


def planted_rna_table(path, n: int = 120, folds: int = 4, seed: int = 0, low: int = 150, high: int = 400,
                      copies: int = 6) -> str:
    """A TSV of ``n`` multi-label RNA records in DNA letters (``id, sequence, label, fold``;
    fold ``i % folds``): 'Nucleus' sequences carry ``copies`` GGACT motifs, 'Cytoplasm' ones
    ATTTA motifs, every third record both. Returns the path as a string."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lines = ["id\tsequence\tlabel\tfold"]
    for i in range(n):
        labels = [["Nucleus"], ["Cytoplasm"], ["Nucleus", "Cytoplasm"]][i % 3]
        seq = list(rng.choice(list("ACGT"), int(rng.integers(low, high))))
        for lab, motif in (("Nucleus", "GGACT"), ("Cytoplasm", "ATTTA")):
            if lab in labels:
                for _ in range(copies):
                    at = int(rng.integers(0, len(seq) - 5))
                    seq[at:at + 5] = motif
        lines.append(f"rna{i}\t{''.join(seq)}\t{';'.join(labels)}\t{i % folds}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)
