"""benchmarks/gpu_check.sh on the CPU (--dry-run): phases in order, a valid results file, and a
run cut short (time budget, SIGTERM, SIGKILL) still leaves every case it finished."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import common

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _env(**extra):
    env = dict(os.environ, PYTHON=sys.executable, SUBLOCAL_COMMIT="0123456789abcdef", **extra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _results(out: Path) -> dict:
    files = [p for p in out.glob("*.json")]
    assert len(files) == 1, sorted(p.name for p in out.iterdir())
    return json.loads(files[0].read_text())


def _logged_rows(out: Path) -> set:
    return {r.key() for r in common.rows_from_jsonl(out / "bench.jsonl")[0]}


@pytest.mark.slow
def test_dry_run_runs_every_phase_in_order(tmp_path):
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path), "--dry-run"], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    phases = (tmp_path / "phases.log").read_text()
    marks = ["phase build: start", "phase build: end rc=0", "phase tests: start", "phase tests: end rc=0",
             "phase bench: start", "phase bench: end rc=0", "summary", "done (status 0)"]
    positions = [phases.index(m) for m in marks]
    assert positions == sorted(positions), phases
    doc = _results(tmp_path)
    assert doc["commit"] == "0123456789abcdef"  # from SUBLOCAL_COMMIT: the GPU copy has no .git
    assert {r["op"] for r in doc["rows"]} >= {"fo_pool", "lstm", "multiwidth_conv1d", "attention_pool", "unirep"}
    assert {(r["op"], r["shape"], r["dtype"], r["mode"], r["provider"]) for r in doc["rows"]} == _logged_rows(tmp_path)
    for dtype in {r["dtype"] for r in doc["rows"]}:
        assert dtype in doc["machine"]["peak_tflops"]
    assert "vs ref-eager" in done.stdout  # the summary table ends the output


def _start_and_wait_for_rows(tmp_path, n: int):
    proc = subprocess.Popen(["bash", str(SCRIPT), str(tmp_path), "--dry-run", "--phases", "bench"], cwd=ROOT,
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    log = tmp_path / "bench.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline:
        if log.exists() and log.read_text().count('"row"') >= n:
            return proc
        if proc.poll() is not None:
            pytest.fail("gpu_check.sh ended before the benchmark logged a case")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no benchmark case logged within 240 s")


@pytest.mark.slow
def test_time_budget_cuts_the_benchmark_and_keeps_what_finished(tmp_path):
    # At a phase's budget `timeout` sends SIGINT to the benchmark, which stops mid-run and writes
    # the results file itself; the script goes on to the summary. Here the SIGINT comes as soon
    # as one case is logged (the same signal, without depending on this machine's speed).
    proc = _start_and_wait_for_rows(tmp_path, 1)
    timeouts = subprocess.run(["pgrep", "-s", str(proc.pid), "-x", "timeout"], capture_output=True, text=True)
    assert timeouts.stdout.split(), "no timeout process in the script's session"
    for pid in timeouts.stdout.split():
        os.kill(int(pid), signal.SIGINT)
    proc.wait(timeout=120)
    phases = (tmp_path / "phases.log").read_text()
    assert "phase bench: end" in phases and "summary" in phases, phases
    logged = _logged_rows(tmp_path)
    doc = _results(tmp_path)
    assert logged and {(r["op"], r["shape"], r["dtype"], r["mode"], r["provider"]) for r in doc["rows"]} == logged
    assert len(logged) < 9, "the run was not cut short"  # the CPU quick profile has 9 cases


@pytest.mark.slow
def test_sigterm_mid_benchmark_leaves_a_partial_results_file(tmp_path):
    proc = _start_and_wait_for_rows(tmp_path, 1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) != 0
    logged = _logged_rows(tmp_path)
    doc = _results(tmp_path)
    assert logged and {(r["op"], r["shape"], r["dtype"], r["mode"], r["provider"]) for r in doc["rows"]} == logged
    assert "stopped by a signal" in (tmp_path / "phases.log").read_text()


@pytest.mark.slow
def test_sigkill_mid_benchmark_then_collect_recovers_every_finished_case(tmp_path):
    proc = _start_and_wait_for_rows(tmp_path, 1)
    os.killpg(proc.pid, signal.SIGKILL)  # the script's process group: the phases run inside it
    proc.wait(timeout=60)
    subprocess.run(["pkill", "-KILL", "-s", str(proc.pid)])  # anything that escaped it would fail below
    time.sleep(0.5)
    assert not list(tmp_path.glob("*.json"))  # nothing got to write it
    with open(tmp_path / "bench.jsonl", "a") as fh:
        fh.write('{"row": {"op": "torn')  # a line cut by the kill
    done = subprocess.run([sys.executable, "-m", "benchmarks.collect", str(tmp_path / "bench.jsonl")], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    doc = _results(tmp_path)
    assert doc["rows"] and doc["commit"] == "0123456789abcdef"
    assert {(r["op"], r["shape"], r["dtype"], r["mode"], r["provider"]) for r in doc["rows"]} == _logged_rows(tmp_path)


def _listed(*args) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", "--device", "cuda", "--list", *args], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return [line for line in done.stdout.splitlines() if "::test_bench[" in line and "[NOTSET]" not in line]


def test_gpu_quick_profile_cases():
    cases = _listed("--profile", "quick")
    ids = [c.split("[", 1)[1].rstrip("]") for c in cases]
    assert ids and not any("ref-compile" in i for i in ids)
    assert not any(i.startswith("long1-") and i.endswith("-ref-eager") for i in ids)  # 100,000-step loop
    parsed = []  # (shape, dtype, mode, provider); shapes and providers may hold "-"
    for i in ids:
        dtype = "bfloat16" if "-bfloat16-" in i else "float32"
        shape, rest = i.split(f"-{dtype}-", 1)
        parsed.append((shape, dtype, *rest.split("-", 1)))
    assert all(f"-{d}-" in i for i, (_, d, _, _) in zip(ids, parsed))
    # Ops time forward and training steps; the language model's embedding shape is inference only.
    assert {m for s, _, m, _ in parsed if not s.startswith("unirep-")} == {"fwd", "fwd+bwd"}
    assert {m for s, _, m, _ in parsed if s.startswith("unirep-")} == {"infer"}
    sweep = [i for i in ids if i.startswith("sweep-")]
    assert len(sweep) == 3 * 3 * 2 * 2 * 3  # B x H x dtype x mode x (ours, cuDNN packed, cuDNN padded)
    assert {i.rsplit("-", 1)[-1] for i in sweep} == {"sublocal", "packed", "padded"}
    for op_peer in ("conv21", "nn.LSTM-packed", "nn.LSTM-padded"):
        assert any(i.endswith(op_peer) and i.startswith("paper-") for i in ids), op_peer
    # The first cases are every op's first named shape: what a cut-off run must bring back.
    first = cases[:8]
    assert all("[paper-" in c or "[qrnn-" in c for c in first), first
    # The full profile keeps the compile peers and the slow loops.
    full = _listed("--profile", "full")
    assert len(full) > len(cases) and any("ref-compile" in c for c in full)


def test_skip_existing_leaves_out_measured_cases(tmp_path):
    row = common.Row("fo_pool", "qrnn", "float32", "fwd", "sublocal", 1.0, 1.0, 1.0, 1, 1)
    machine = {"bandwidth_gbs": 1.0, "peak_tflops": {"float32": 1.0}}
    path = common.write_results(common.finish_rows([row], machine), machine, tmp_path / "r.json")
    before = _listed("--profile", "quick", "--ops", "fo_pool")
    after = _listed("--profile", "quick", "--ops", "fo_pool", "--skip-existing", str(path))
    assert len(after) == len(before) - 1
    assert not any("[qrnn-float32-fwd-sublocal]" in c for c in after)


def test_every_dtype_gets_its_own_peak(monkeypatch):
    monkeypatch.setattr(common, "measure_peak", lambda device, dtype: {"float32": 50.0, "bfloat16": 800.0}[str(dtype)[6:]])
    info = {"peak_tflops": {}}
    import torch

    assert common.add_peak(info, torch.device("cpu"), torch.float32)
    assert common.add_peak(info, torch.device("cpu"), torch.bfloat16)
    assert not common.add_peak(info, torch.device("cpu"), torch.bfloat16)
    rows = common.finish_rows([common.Row("lstm", "paper", "bfloat16", "fwd", "sublocal", 1.0, 1.0, 1.0, 0, 10 ** 12)],
                              {"bandwidth_gbs": 1.0, **info})
    assert abs(rows[0].floor_ms - 1e3 / 800.0) < 1e-9  # the bfloat16 peak, not float32's
