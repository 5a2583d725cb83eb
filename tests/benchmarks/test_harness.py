"""The benchmark harness: ratios, floors, results files, the README table."""

import json

import torch

from benchmarks import readme_table
from benchmarks.common import (FO_POOL_SHAPES, SHAPES, Row, finish_rows, format_table, make_modes,
                               measure_machine, random_lengths, smoke, write_results)

MACHINE = {"bandwidth_gbs": 100.0, "peak_tflops": {"float32": 1.0}, "torch": "x", "cpu": "test cpu", "threads": 2}


def _rows():
    return [
        Row("fo_pool", "rna", "float32", "fwd", "sublocal", 2.0, 1.9, 2.1, bytes=100_000_000, flops=10),
        Row("fo_pool", "rna", "float32", "fwd", "ref-eager", 30.0, 29.0, 31.0, bytes=100_000_000, flops=10),
        Row("fo_pool", "rna", "float32", "fwd", "ref-compile", 1.0, 1.0, 1.0, bytes=100_000_000, flops=10),
    ]


def test_ratios_and_floor():
    rows = finish_rows(_rows(), MACHINE)
    ours = rows[0]
    assert ours.vs == {"ref-eager": 15.0, "ref-compile": 0.5}
    assert abs(ours.floor_ms - 1.0) < 1e-9  # 100 MB at 100 GB/s
    assert abs(ours.frac_of_floor - 0.5) < 1e-9
    table = format_table(rows, MACHINE)
    assert "15.00x" in table and "0.50x" in table and "50%" in table


def test_results_file_merges_same_day(tmp_path):
    path = tmp_path / "cpu-test.json"
    write_results(finish_rows(_rows(), MACHINE), MACHINE, path)
    newer = finish_rows([Row("fo_pool", "rna", "float32", "fwd", "sublocal", 1.0, 1.0, 1.0, 1, 1),
                         Row("fo_pool", "qrnn", "float32", "fwd", "sublocal", 1.0, 1.0, 1.0, 1, 1)], MACHINE)
    write_results(newer, MACHINE, path)
    doc = json.loads(path.read_text())
    keys = sorted((r["shape"], r["provider"], r["ms_p50"]) for r in doc["rows"])
    assert keys == [("qrnn", "sublocal", 1.0), ("rna", "ref-compile", 1.0), ("rna", "ref-eager", 30.0),
                    ("rna", "sublocal", 1.0)]
    assert doc["machine"]["bandwidth_gbs"] == 100.0 and len(doc["commit"]) >= 7


def test_readme_table_between_markers(tmp_path):
    results = tmp_path / "nvidia-h200-2026-01-01.json"
    write_results(finish_rows(_rows(), MACHINE), {**MACHINE, "gpu": "NVIDIA H200"}, results)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{readme_table.START}\nold\n{readme_table.END}\noutro\n")
    text = readme_table.render(readme_table.newest_results(tmp_path))
    new = readme_table.update(readme, text)
    assert "old" not in new and "| fo_pool | rna | float32 | fwd |" in new and new.endswith("outro\n")
    assert "nvidia-h200-2026-01-01.json" in new


def test_shapes_lengths_and_smoke():
    assert SHAPES["paper"].B == 128 and SHAPES["paper"].widths == (1, 3, 5, 9, 15, 21)
    assert FO_POOL_SHAPES["long1"].T == 100000
    L = random_lengths(SHAPES["paper"], "cpu", seed=3)
    assert L.shape == (128,) and int(L.min()) >= 250 and int(L.max()) <= 1000
    assert torch.equal(L, random_lengths(SHAPES["paper"], "cpu", seed=3))
    s = smoke(SHAPES["full-length"])
    assert s.T <= 67 and s.B <= 3


def test_modes_return_gradients():
    x = torch.randn(4, 3, requires_grad=True)
    modes = make_modes(lambda: (x.sin(),), [x])
    (y,) = modes["fwd"]()
    (g1,) = modes["bwd"]()
    (g2,) = modes["fwd+bwd"]()
    assert torch.allclose(g1, g2) and y.shape == x.shape and x.grad is None


def test_measure_machine_cpu():
    info = measure_machine(torch.device("cpu"), [torch.float32])
    assert info["bandwidth_gbs"] > 0 and info["peak_tflops"]["float32"] > 0 and info["threads"] >= 1


def test_quick_leaves_out_the_slow_cpu_peers():
    """`--quick` (the demo) collects every op but not the peers that take minutes per call on a
    CPU (nn.LSTM on a PackedSequence, the LSTM reference loop); without it they are there."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]

    def collected(*extra):
        done = subprocess.run([sys.executable, "-m", "pytest", "benchmarks/bench_lstm.py", "benchmarks/bench_fo_pool.py",
                               "--collect-only", "-q", "-p", "no:cacheprovider", "--bench-device=cpu", *extra],
                              cwd=root, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return [line for line in done.stdout.splitlines() if "::test_bench[" in line]

    quick = collected("--bench-quick", "--bench-modes=fwd+bwd")
    full = collected("--bench-modes=fwd+bwd")
    assert any("nn.LSTM-packed" in c for c in full)
    assert not any("nn.LSTM-packed" in c or ("bench_lstm" in c and "ref-eager" in c) for c in quick)
    assert any("bench_lstm" in c and "nn.LSTM-padded" in c for c in quick)
    assert any("bench_fo_pool" in c and "ref-eager" in c for c in quick)


def test_readme_table_format(tmp_path):
    """The peak is a number, the padded nn.LSTM heads the LSTM's peers, the shapes are defined,
    and a CPU-only results directory says that GPU figures are pending."""
    rows = [Row("lstm", "paper", "float32", "fwd+bwd", p, ms, ms, ms, bytes=1, flops=1)
            for p, ms in (("sublocal", 1.0), ("nn.LSTM-packed", 100.0), ("nn.LSTM-padded", 2.0))]
    write_results(finish_rows(rows, MACHINE), MACHINE, tmp_path / "cpu-2026-01-01.json")
    text = readme_table.render(readme_table.newest_results(tmp_path))
    assert "matmul peak 1.0 TFLOP/s (float32)" in text and "{" not in text
    head = next(line for line in text.splitlines() if line.startswith("| op |"))
    assert head.index("vs nn.LSTM-padded") < head.index("vs nn.LSTM-packed")
    assert "| 2.00x | 100.00x |" in text
    assert "`paper`: B=128, T=1000, C=20" in text
    assert text.startswith("**GPU figures are pending**")
    write_results(finish_rows(rows, MACHINE), {**MACHINE, "gpu": "NVIDIA H200"}, tmp_path / "nvidia-h200-2026-01-02.json")
    assert "pending" not in readme_table.render(readme_table.newest_results(tmp_path))


def test_readme_table_describes_an_ops_own_shape(tmp_path):
    rows = [Row("channel_attention_pool", "light-attention", "float32", "fwd", p, ms, ms, ms, bytes=1, flops=1)
            for p, ms in (("sublocal", 1.0), ("ref-eager", 3.0))]
    write_results(finish_rows(rows, MACHINE), MACHINE, tmp_path / "cpu-2026-01-01.json")
    text = readme_table.render(readme_table.newest_results(tmp_path))
    assert "`light-attention`: B=32, T=1000, D=1024" in text and "| 3.00x |" in text
