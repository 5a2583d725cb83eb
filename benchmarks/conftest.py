"""pytest plumbing for the op benchmarks: options, the ``bench`` fixture, results and table.

Each ``bench_<op>.py`` defines ``SPEC`` (a :class:`BenchSpec`) and one test::

    def test_bench(bench, bench_case):
        bench.measure(SPEC, bench_case)

The cases (shape x dtype x mode x provider) are generated from ``SPEC`` and the options.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    MODES, JsonlLog, Row, add_peak, finish_rows, format_table, git_commit, measure_machine, measured_keys, smoke,
    write_results)

SLOW_CALL_S = 20.0  # CPU calls longer than this are timed SLOW_ROUNDS times with no extra warm-up
SLOW_ROUNDS = 1
GPU_SLOW_CALL_S = 1.0  # GPU calls longer than this: the first call is the one timing (a slow peer)
PROFILES = ("default", "quick", "full")


def pytest_addoption(parser):
    g = parser.getgroup("sublocal benchmarks")
    g.addoption("--bench-device", default="auto", help="cpu, cuda or auto (cuda when available)")
    g.addoption("--bench-shapes", default=None, help="comma-separated shape names (default: each op's defaults)")
    g.addoption("--bench-dtypes", default=None, help="comma-separated dtypes (default: float32 on CPU; float32,bfloat16 on GPU)")
    g.addoption("--bench-modes", default=None, help="comma-separated of fwd, bwd, fwd+bwd (default: all)")
    g.addoption("--bench-providers", default=None, help="comma-separated providers (default: each op's for the device)")
    g.addoption("--bench-quick", action="store_true", help="the quick profile (same as --bench-profile=quick)")
    g.addoption("--bench-profile", default="default", choices=PROFILES,
                help="quick: no compile peers, no slow loops, fwd and fwd+bwd (GPU) or fwd+bwd (CPU); full: everything")
    g.addoption("--bench-jsonl", default=None, help="append every finished case to this JSON-lines file at once")
    g.addoption("--bench-skip-existing", default=None,
                help="leave out the cases already in this results file or JSON-lines log")
    g.addoption("--bench-tiny", action="store_true",
                help="time the scaled-down smoke shapes, one round each (the GPU script's dry run on CPU)")
    g.addoption("--bench-threads", default=None, type=int, help="CPU threads (default: all cores)")
    g.addoption("--bench-results", default=None,
                help="results file (default benchmarks/results/<machine>-<date>.json; 'none': do not write)")


def _device(config) -> torch.device:
    name = config.getoption("--bench-device")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _list(config, opt):
    v = config.getoption(opt)
    return [s.strip() for s in v.split(",") if s.strip()] if v else None


def _smoke(config) -> bool:
    return bool(config.getoption("benchmark_disable", default=False))


def _profile(config) -> str:
    return "quick" if config.getoption("--bench-quick") else config.getoption("--bench-profile")


def pytest_configure(config):
    if config.getoption("--bench-jsonl", default=None):
        # SIGTERM ends the run like Ctrl-C, so the session still writes the results file.
        import signal

        def _interrupt(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, _interrupt)


class Case:
    def __init__(self, shape, dtype, mode, provider):
        self.shape, self.dtype, self.mode, self.provider = shape, dtype, mode, provider

    def __repr__(self):
        return f"{self.shape.name}-{str(self.dtype).replace('torch.', '')}-{self.mode}-{self.provider}"


def pytest_generate_tests(metafunc):
    if "bench_case" not in metafunc.fixturenames:
        return
    spec = metafunc.module.SPEC
    config = metafunc.config
    device = _device(config)
    is_smoke = _smoke(config)
    shapes = _list(config, "--bench-shapes") or spec.default_shapes(device)
    shapes = [s for s in shapes if s in spec.shapes]
    if is_smoke and spec.smoke_shapes is not None:
        shapes = [s for s in shapes if s in spec.smoke_shapes]
    dtypes = _list(config, "--bench-dtypes") or (["float32"] if device.type == "cpu" else ["float32", "bfloat16"])
    modes = _list(config, "--bench-modes") or list(spec.modes)
    providers = _list(config, "--bench-providers") or spec.providers(device, is_smoke)
    providers = [p for p in providers if p in spec.all_providers]
    profile = _profile(config)
    if profile == "quick" and not _list(config, "--bench-modes") and tuple(spec.modes) == MODES:
        modes = ["fwd+bwd"] if device.type == "cpu" else ["fwd", "fwd+bwd"]
    skip = measured_keys(Path(config.getoption("--bench-skip-existing"))) \
        if config.getoption("--bench-skip-existing") else set()
    cases = []
    for name in shapes:
        shape = spec.shapes[name]
        if is_smoke or config.getoption("--bench-tiny"):
            shape = smoke(shape)
        for dt in dtypes:
            dtype = getattr(torch, dt)
            for mode in modes:
                for p in providers:
                    if not spec.supports(p, mode, device, is_smoke) or not spec.in_profile(profile, name, p, device):
                        continue
                    if (spec.op, shape.name, dt, mode, p) in skip:
                        continue
                    cases.append(Case(shape, dtype, mode, p))
    metafunc.parametrize("bench_case", cases, ids=[repr(c) for c in cases])


def pytest_collection_modifyitems(config, items):
    """Benchmarks in order of what matters most if a time limit cuts the run short: every op's
    first named shape, then its other shapes, then sweeps; within a shape float32 first."""
    def tier(item):
        case = getattr(getattr(item, "callspec", None), "params", {}).get("bench_case")
        if not isinstance(case, Case):  # not a benchmark, or pytest's placeholder for no case
            return (0, 0)
        spec = item.module.SPEC
        names = list(spec.shapes)
        rank = names.index(case.shape.name) if case.shape.name in names else len(names)
        return (2 if case.shape.name.startswith("sweep") else (0 if rank == 0 else 1), rank)

    items.sort(key=tier)  # stable: the generated order within a tier


class _Session:
    rows: list = []
    machine: dict | None = None
    log: JsonlLog | None = None


def _log_machine():
    if _Session.log is not None:
        import datetime

        _Session.log.write(machine=_Session.machine, commit=git_commit(), date=datetime.date.today().isoformat())


class Bench:
    """Times one case and records it (or, under --benchmark-disable, runs it once and checks it)."""

    def __init__(self, request):
        self.request = request
        self.config = request.config
        self.device = _device(self.config)
        self.smoke = _smoke(self.config)

    def measure(self, spec, case):
        device = self.device
        threads = self.config.getoption("--bench-threads") or os.cpu_count() or 1
        if device.type == "cpu":
            torch.set_num_threads(threads)
        problem = spec.problem(case.shape, case.dtype, device)
        fn = spec.build(problem, case.provider)[case.mode]
        if self.smoke:
            got = fn()
            if case.provider != spec.reference:
                want = spec.reference_result(problem, case.mode)
                spec.check(got, want, case)
            return
        if _Session.machine is None:
            _Session.machine = measure_machine(device, [torch.float32])
            if self.config.getoption("--bench-jsonl"):
                _Session.log = JsonlLog(Path(self.config.getoption("--bench-jsonl")))
            _log_machine()
        if add_peak(_Session.machine, device, case.dtype):  # the floor of every dtype the run uses
            _log_machine()
        timed_once = False
        tiny = self.config.getoption("--bench-tiny")
        if device.type == "cuda":
            import time

            import triton.testing

            torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            once = time.perf_counter() - t0
            if once > GPU_SLOW_CALL_S:
                # A peer taking seconds per call (an eager loop over 30,000 steps): the first
                # call is the measurement, marked as such.
                p50 = p20 = p80 = once * 1e3
                timed_once = True
            else:
                quick = _profile(self.config) == "quick"
                p50, p20, p80 = triton.testing.do_bench(fn, warmup=10 if quick else 25, rep=100 if quick else 200,
                                                        quantiles=[0.5, 0.2, 0.8])
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            fn()
            torch.cuda.synchronize()
            peak = (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20
        else:
            import time

            t0 = time.perf_counter()
            fn()
            once = time.perf_counter() - t0
            # At least 3 timed rounds after a warm-up; a call over SLOW_CALL_S (a peer such as
            # nn.LSTM on a PackedSequence on CPU, minutes per call) counts the first call as the
            # warm-up and is timed SLOW_ROUNDS times, so one run stays within the CI budget.
            if once > SLOW_CALL_S or tiny:
                rounds, warmup = SLOW_ROUNDS, 0
                timed_once = not tiny
            else:
                rounds, warmup = int(min(25, max(3, 2.0 / max(once, 1e-6)))), 1
            benchmark = self.request.getfixturevalue("benchmark")
            benchmark.extra_info.update(threads=threads, rounds=rounds)
            benchmark.pedantic(fn, rounds=rounds, warmup_rounds=warmup, iterations=1)
            data = sorted(benchmark.stats.stats.data)
            q = lambda f: data[min(len(data) - 1, int(f * (len(data) - 1) + 0.5))]  # noqa: E731
            p50, p20, p80 = benchmark.stats.stats.median * 1e3, q(0.2) * 1e3, q(0.8) * 1e3
            peak = None
        nbytes, flops = spec.cost(case.shape, case.dtype, case.mode)
        row = Row(spec.op, case.shape.name, str(case.dtype).replace("torch.", ""), case.mode, case.provider,
                  p50, p20, p80, int(nbytes), int(flops), peak, timed_once=timed_once)
        _Session.rows.append(row)
        self.request.node.user_properties.append(("ms_p50", p50))
        if _Session.log is not None:
            import dataclasses

            _Session.log.write(row=dataclasses.asdict(row))


@pytest.fixture
def bench(request):
    return Bench(request)


def pytest_sessionfinish(session, exitstatus):
    if not _Session.rows or _Session.machine is None:
        return
    rows = finish_rows(_Session.rows, _Session.machine)
    target = session.config.getoption("--bench-results")
    path = None
    if target != "none":
        path = write_results(rows, _Session.machine, Path(target) if target else None)
    if _Session.log is not None:
        _Session.log.close()
    session.config._sublocal_bench = (rows, _Session.machine, path)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    result = getattr(config, "_sublocal_bench", None)
    if not result:
        return
    rows, machine, path = result
    terminalreporter.write_sep("=", "sublocal-kernels benchmark")
    terminalreporter.write_line(format_table(rows, machine))
    if path:
        terminalreporter.write_line(f"results: {path}")
