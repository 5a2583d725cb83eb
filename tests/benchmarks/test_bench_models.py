"""The whole-model benchmark's harness hooks: its modes and smoke cases, its FLOP floor,
and the subnormal check of its decay case."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.bench_models import SPEC, make_lengths, model_flops
from benchmarks.common import Row, finish_rows, format_table, smoke

ROOT = Path(__file__).resolve().parents[2]
MACHINE = {"bandwidth_gbs": 100.0, "peak_tflops": {"float32": 1.0}, "torch": "x", "cpu": "test cpu", "threads": 2}


def _collected(*extra):
    done = subprocess.run([sys.executable, "-m", "pytest", "benchmarks/bench_models.py", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "--bench-device=cpu", *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 5), done.stdout[-2000:] + done.stderr[-2000:]
    return [line for line in done.stdout.splitlines() if "::test_bench[" in line]


def test_cases_smoke_selection_and_quick():
    full = _collected()
    assert len(full) == len(SPEC.shapes) * 2 * 3  # every case, train and infer, three providers
    assert any("rlstm-paper-float32-train-torch-ftz" in c for c in full)
    smoke_run = _collected("--benchmark-disable")
    assert {c.split("[")[1].split("-float32")[0] for c in smoke_run} == set(SPEC.smoke_shapes)
    assert not any("torch-ftz" in c for c in smoke_run)
    # The demo (the quick profile): no model case, only pytest's skipped placeholder.
    assert all("[NOTSET]" in c for c in _collected("--bench-quick"))
    assert all("[NOTSET]" in c for c in _collected("--bench-quick", "--bench-modes=fwd+bwd"))


def test_rows_carry_the_flop_floor():
    rows = finish_rows([Row("models", "rlstm-paper", "float32", "train", "sublocal", 2.0, 2.0, 2.0, 0, 1e9),
                        Row("models", "rlstm-paper", "float32", "train", "torch", 8.0, 8.0, 8.0, 0, 1e9)], MACHINE)
    assert rows[0].floor_ms == pytest.approx(1.0) and rows[0].frac_of_floor == pytest.approx(0.5)
    assert rows[1].frac_of_floor == pytest.approx(0.125) and rows[0].vs == {"torch": 4.0}
    assert "4.00x" in format_table(rows, MACHINE)


def test_model_flops_counted_by_hand():
    """The R-LSTM's floor written out from its layer sizes (not from its parameters): the conv
    bank (its input gradient left out), both LSTM directions, the dense head per sequence."""
    shape = SPEC.shapes["rlstm-paper"]
    n, B, C, H = int(make_lengths(shape).sum()), shape.B, 20, shape.hidden
    conv = 2 * n * C * shape.filters * sum(shape.widths)
    lstm = 2 * 2 * n * 4 * H * (shape.filters * len(shape.widths) + H)
    head = 2 * B * (2 * H * 512 + 512 * 10)
    assert model_flops(shape, "infer") == conv + lstm + head
    assert model_flops(shape, "train") == 2 * conv + 3 * (lstm + head)
    # The QRNN's first layer reads the one-hot input (5 channels); the second, both directions' 512.
    q = SPEC.shapes["qrnn-rna"]
    nq, G = int(make_lengths(q).sum()), 3 * q.hidden
    layer0, layer1 = 2 * 2 * nq * G * 5 * 2, 2 * 2 * nq * G * 512 * 2
    attention, qhead = 2 * nq * 512 * q.attention, 2 * q.B * (512 * 256 + 256 * 10)
    assert model_flops(q, "train") == 2 * layer0 + 3 * (layer1 + attention + qhead)


def test_protein_lengths():
    lengths = make_lengths(SPEC.shapes["rlstm-protein"])
    assert lengths.max() <= 5000 and lengths.min() >= 20
    assert 350 <= float(lengths.float().median()) <= 550


def test_decay_check_fails_when_ours_holds_subnormals():
    case = type("Case", (), {"shape": smoke(SPEC.shapes["rlstm-decay"]), "mode": "train", "provider": "sublocal",
                             "dtype": torch.float32})()
    loss, flat = torch.tensor(1.0), torch.ones(5)
    ref_x = torch.tensor([1.0, 1e-40, 0.0])
    SPEC.check((loss, flat, torch.tensor([1.0, 0.0, 0.0])), (loss, flat, ref_x), case)
    with pytest.raises(AssertionError, match="holds subnormals"):
        SPEC.check((loss, flat, ref_x), (loss, flat, ref_x), case)
    with pytest.raises(AssertionError, match="holds no subnormals"):
        SPEC.check((loss, flat, torch.ones(3)), (loss, flat, torch.ones(3)), case)


def test_peak_memory_lands_in_the_results_file_and_the_readme_table(tmp_path):
    import json

    from benchmarks import readme_table
    from benchmarks.bench_models import record_peak_memory
    from benchmarks.common import write_results

    rows = finish_rows([Row("models", "rlstm-paper", "float32", mode, p, ms, ms, ms, 0, 1e9)
                        for mode in ("train", "infer") for p, ms in (("sublocal", 2.0), ("torch", 9.0),
                                                                     ("torch-ftz", 6.0))], MACHINE)
    path = write_results(rows, MACHINE, tmp_path / "cpu-2026-01-01.json")
    measured = [{"shape": "rlstm-paper", "provider": p, "mode": "train", "threads": 2, "output_cache_mb": 0,
                 "rss_before_mb": 100.0, "peak_above_before_mb": mb} for p, mb in (("sublocal", 250.0), ("torch", 1000.0))]
    assert record_peak_memory(path, measured) == 2
    doc = json.loads(path.read_text())
    peaks = {(r["mode"], r["provider"]): r["peak_mem_mb"] for r in doc["rows"]}
    assert peaks[("train", "sublocal")] == 250.0 and peaks[("train", "torch")] == 1000.0
    assert peaks[("infer", "sublocal")] is None and peaks[("train", "torch-ftz")] is None
    assert doc["models_peak_memory"]["output_cache_mb"] == [0]
    text = readme_table.render(path)
    # A 1 GFLOP floor at 1 TFLOP/s is 1 ms: ours at 50% of it, torch-ftz's 6 ms six times it.
    assert "| rlstm | paper | train | 2.0 | 4.50x | 3.00x | 50% | 6.00x | 250 | 0.25 |" in text
    assert "| rlstm | paper | infer | 2.0 | 4.50x | 3.00x | 50% | 6.00x | - | - |" in text
    assert "| op |" not in text  # no op rows in this file: only the whole-model table
