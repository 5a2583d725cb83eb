"""Tiny synthetic data and tiny models so every command-line test takes seconds."""

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
