#!/usr/bin/env bash
# One call on a GPU machine: build in place with that machine's torch, run the cuda-marked
# tests, run the GPU benchmarks, and leave logs and the results file in OUTDIR.
#
#   bash benchmarks/gpu_check.sh OUTDIR [benchmark options...]
#
# Optional peers travel as wheels in .whl/ (see the device notes), installed with --no-deps
# into /tmp/site. Extra arguments go to `python -m benchmarks.run` (e.g. --ops fo_pool).
set -uo pipefail
OUT=${1:?usage: bash benchmarks/gpu_check.sh OUTDIR [benchmark options]}
shift
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16}
PY=${PYTHON:-python3}

{ nvidia-smi; $PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"; } \
  > "$OUT/machine.txt" 2>&1
if compgen -G ".whl/*.whl" > /dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    > "$OUT/wheels.log" 2>&1 && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

status=0
echo "== build"
$PY setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || { echo "build failed"; tail -40 "$OUT/build.log"; exit 1; }

echo "== cuda tests"
$PY -m pytest -q -m cuda -p no:cacheprovider tests 2>&1 | tee "$OUT/tests-cuda.log" | tail -25
[ "${PIPESTATUS[0]}" = 0 ] || status=1

echo "== benchmarks"
$PY -m benchmarks.run --device cuda "$@" 2>&1 | tee "$OUT/bench.log" | grep -v "^test_bench" | tail -60
[ "${PIPESTATUS[0]}" = 0 ] || status=1
for f in benchmarks/results/*.json; do
  [ -f "$f" ] && [ "$(git status --porcelain -- "$f")" != "" ] && cp "$f" "$OUT/"
done
echo "== done (status $status); files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit $status
