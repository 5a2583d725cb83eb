#!/usr/bin/env bash
# One call on a GPU machine: build, the cuda-marked op tests, the quick benchmark profile, the
# summary table; every figure lands in OUTDIR as it is measured, so a run cut short still
# brings back what it finished.
#
#   SUBLOCAL_COMMIT=<sha> bash benchmarks/gpu_check.sh OUTDIR [options]
#
# Options:
#   --profile quick|full    quick (default): each op at its named shapes, float32 and bfloat16,
#                           fwd and fwd+bwd, against cuDNN packed and padded, the eager peers and
#                           the width-21 conv, plus the LSTM scaling sweep and UniRep-1900's
#                           embedding of 64 proteins (bench_unirep.py, its architecture with random
#                           weights: the Triton mLSTM); no torch.compile peers and no slow loops.
#                           full: everything (for a later call).
#   --skip-existing FILE    leave out the cases already in FILE (a results file or bench.jsonl)
#   --phases LIST           comma-separated of build,tests,bench (default: all three)
#   --dry-run               every phase on the CPU with tiny shapes (what CI runs; the same as
#                           SUBLOCAL_GPU_CHECK_DEVICE=cpu)
#
# Each phase has its own time budget (timeout -s INT; seconds): SUBLOCAL_BUILD_S (150),
# SUBLOCAL_TESTS_S (120), SUBLOCAL_BENCH_S (180): about 6 minutes on an H200, inside one
# 10-minute command with time left for a rerun. The benchmark appends each finished case to
# OUTDIR/bench.jsonl at once (flushed) and writes OUTDIR/<gpu>-<date>.json at its end, on
# SIGINT and on SIGTERM; after a SIGKILL, `python -m benchmarks.collect OUTDIR/bench.jsonl`
# does it from the log. The results record SUBLOCAL_COMMIT (the GPU machine's copy of the tree
# has no .git). Optional peers travel as wheels in .whl/ and are installed with --no-deps into
# /tmp/site. Exit status: 0 when every phase that ran passed.
set -uo pipefail
OUT=${1:?usage: bash benchmarks/gpu_check.sh OUTDIR [--profile quick|full] [--skip-existing FILE] [--phases LIST] [--dry-run]}
shift
PROFILE=quick
SKIP=""
PHASES=build,tests,bench
DEVICE=${SUBLOCAL_GPU_CHECK_DEVICE:-cuda}
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE=${2:?--profile needs quick or full}; shift 2 ;;
    --skip-existing) SKIP=${2:?--skip-existing needs a file}; shift 2 ;;
    --phases) PHASES=${2:?--phases needs a list}; shift 2 ;;
    --dry-run) DEVICE=cpu; shift ;;
    *) echo "gpu_check.sh: error: unknown option $1" >&2; exit 2 ;;
  esac
done
case "$PROFILE" in quick|full) ;; *) echo "gpu_check.sh: error: --profile must be quick or full, got $PROFILE" >&2; exit 2 ;; esac
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16}
PY=${PYTHON:-python3}
BUILD_S=${SUBLOCAL_BUILD_S:-150}
TESTS_S=${SUBLOCAL_TESTS_S:-120}
BENCH_S=${SUBLOCAL_BENCH_S:-180}
BENCH_ARGS=()
if [ "$DEVICE" = cpu ]; then
  BENCH_ARGS+=(--tiny)
  export TRITON_INTERPRET=${TRITON_INTERPRET:-1}
fi
[ -n "$SKIP" ] && BENCH_ARGS+=(--skip-existing "$SKIP")

log() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$OUT/phases.log"; }
want() { case ",$PHASES," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
collect() {
  if [ -s "$OUT/bench.jsonl" ]; then
    $PY -m benchmarks.collect "$OUT/bench.jsonl" --out "$OUT" ${1:-} 2>&1 | tee -a "$OUT/summary.txt"
  fi
}
child=""
on_signal() {
  log "signal: stopping (${child:+pid $child})"
  [ -n "$child" ] && kill -INT "$child" 2>/dev/null && wait "$child" 2>/dev/null
  collect --no-table
  log "stopped by a signal; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
  exit 130
}
trap on_signal INT TERM

# Runs "$@" under a time budget (SIGINT at the budget, SIGKILL 15 s later) in the background,
# so this script's trap can forward a signal to it. A non-interactive shell starts background
# jobs with SIGINT ignored: the Python commands below restore Python's own SIGINT handler first.
phase() {
  local name=$1 budget=$2 logfile=$3
  shift 3
  log "phase $name: start (budget ${budget} s)"
  local t0=$SECONDS
  # --foreground: stay in this script's process group, so a kill of the group reaches the phase too.
  timeout --foreground -s INT -k 15 "$budget" "$@" > "$logfile" 2>&1 &
  child=$!
  wait "$child"
  local rc=$?
  child=""
  log "phase $name: end rc=$rc after $((SECONDS - t0)) s$([ $rc = 124 ] && echo ' (budget reached)')"
  return $rc
}

log "gpu_check: device $DEVICE, profile $PROFILE, phases $PHASES, commit ${SUBLOCAL_COMMIT:-unset}"
{ command -v nvidia-smi >/dev/null && nvidia-smi
  $PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
  $PY -c "import triton; print('triton', triton.__version__)" 2>&1; } > "$OUT/machine.txt" 2>&1
if compgen -G ".whl/*.whl" > /dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    > "$OUT/wheels.log" 2>&1 && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

status=0
if want build; then
  if ! phase build "$BUILD_S" "$OUT/build.log" $PY setup.py --quiet build_ext --inplace; then
    tail -40 "$OUT/build.log"
    log "build failed: no tests or benchmarks without the extension"
    exit 1
  fi
fi

if want tests; then
  TEST_ARGS=()
  $PY -c "import pytest_timeout" 2>/dev/null && TEST_ARGS=(--timeout 90)
  # Most of this phase is Triton compiling about 200 kernel variants: 8 processes (pytest-xdist,
  # on the GPU image) compile them side by side; the benchmark reuses Triton's cache.
  [ "$DEVICE" = cuda ] && $PY -c "import xdist" 2>/dev/null && TEST_ARGS+=(-n 8)
  phase tests "$TESTS_S" "$OUT/tests-cuda.log" $PY -c \
    'import signal, sys, pytest; signal.signal(signal.SIGINT, signal.default_int_handler); sys.exit(pytest.main(sys.argv[1:]))' \
    -q -m cuda -p no:cacheprovider "${TEST_ARGS[@]}" --junitxml "$OUT/tests-cuda.xml" tests/ops || status=1
  tail -25 "$OUT/tests-cuda.log"
fi

if want bench; then
  phase bench "$BENCH_S" "$OUT/bench.log" $PY -m benchmarks.run --device "$DEVICE" --profile "$PROFILE" \
    --jsonl "$OUT/bench.jsonl" --results "$OUT" "${BENCH_ARGS[@]}" || status=1
  tail -n 3 "$OUT/bench.log"
  log "summary"
  collect   # the results file from the log (also after a cut-off), and the table
  [ -s "$OUT/bench.jsonl" ] || { log "no benchmark case finished"; status=1; }
fi
log "done (status $status); files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit $status
