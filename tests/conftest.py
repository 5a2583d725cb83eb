"""Test-suite set-up: seeds, the Triton interpreter on CPU-only machines, output poisoning."""

import os

import torch

# Triton kernels run on CPU tensors under the interpreter where there is no GPU. It must be set
# before any @triton.jit function is created, i.e. before the kernels' modules are imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import sublocal_kernels  # noqa: E402,F401

settings.register_profile(
    "sublocal",
    max_examples=int(os.environ.get("SUBLOCAL_HYPOTHESIS_EXAMPLES", "15")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("sublocal")

SEED = 20261122


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(SEED)
    yield


@pytest.fixture
def poisoned():
    """Every tensor allocated with torch.empty (C++, Triton launchers) starts as NaN, so an
    element a kernel forgets to write fails the comparison instead of passing by luck."""
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    old_fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        torch.utils.deterministic.fill_uninitialized_memory = old_fill


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU; none is present")
    for item in items:
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)
