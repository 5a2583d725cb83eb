"""The CPU output cache behind large C++ kernel outputs (csrc/cpu/output_cache.h).

The cap is read once per process, so each case runs in a fresh interpreter with its own
SUBLOCAL_CPU_CACHE_MB. fo-pool's output ``h`` (B, T, D) float32 is the probe: (2, T, 1024) is
8 KiB per step, so T = 1024 asks for exactly 8 MiB (above the 4 MiB caching threshold).
"""

import os
import subprocess
import sys

import pytest

PRELUDE = """
import torch, sublocal_kernels as sk
MiB = 1 << 20
def out(mib):  # a cached output of `mib` MiB (rounded up to 2 MiB by the cache)
    f = torch.rand(2, mib * 128, 1024)
    return sk.fo_pool(f, f)[0]
info = sk.cpu_cache_info
"""


def run(code: str, cache_mb: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SUBLOCAL_CPU_CACHE_MB"}
    if cache_mb is not None:
        env["SUBLOCAL_CPU_CACHE_MB"] = cache_mb
    done = subprocess.run([sys.executable, "-c", PRELUDE + code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def test_freed_outputs_are_reused_and_stay_ordinary_tensors():
    run("""
h = out(8); ptr = h.data_ptr(); del h
before = info()
assert before["idle_bytes"] == 8 * MiB and before["idle_blocks"] == 1, before
h = out(8)
assert h.data_ptr() == ptr and info()["hits"] == before["hits"] + 1
# cached tensors are ordinary tensors: resizable, fillable
h.resize_(3, 1024, 1024); h.fill_(1.0)
assert h.sum().item() == 3 * 1024 * 1024
""", "64")


def test_best_fit_within_a_quarter():
    run("""
a, b, c = out(8), out(10), out(40)
pa, pb = a.data_ptr(), b.data_ptr()
del a, b, c
assert info()["idle_blocks"] == 3
# 9 MiB rounds to 10: the 8 MiB block is too small, the 40 MiB one too large; the 10 fits best.
h = out(9); assert h.data_ptr() == pb; del h
# 7 MiB rounds to 8: the smallest block that fits, not the most recent one.
h = out(7); assert h.data_ptr() == pa; del h
# 16 MiB: nothing within a quarter above it (20 MiB at most), so a fresh block.
misses = info()["misses"]
h = out(16); assert info()["misses"] == misses + 1; del h
""", "256")


def test_lru_eviction_keeps_idle_bytes_under_the_cap():
    run("""
a, b, c = out(8), out(10), out(12)
pb, pc = b.data_ptr(), c.data_ptr()
del a; del b; del c   # released oldest first: 8, then 10, then 12 MiB
i = info()
# 8 + 10 + 12 = 30 MiB > 24: the least recently released block (8 MiB) was freed.
assert i["idle_bytes"] == 22 * MiB and i["evictions"] == 1 and i["idle_blocks"] == 2, i
h = out(12); assert h.data_ptr() == pc; del h
big = out(30); del big   # larger than the cap: never kept
assert info()["idle_bytes"] <= 24 * MiB
""", "24")


def test_varying_shapes_stay_correct_and_bounded():
    run("""
import random
random.seed(0)
cap = 48 * MiB
for step in range(40):
    mib = random.choice([4, 5, 6, 7, 9, 12, 15, 20])
    f = torch.rand(2, mib * 128, 1024)
    z = torch.randn_like(f)
    h, c = sk.fo_pool(f, z)
    torch.testing.assert_close(h, sk.fo_pool_ref(f.double(), z.double())[0].float(), atol=1e-5, rtol=1e-5)
    assert info()["idle_bytes"] <= cap
    del h, c
i = info()
assert i["hits"] > 0 and i["evictions"] > 0, i
""", "48")


def test_empty_cpu_cache_releases_idle_blocks():
    run("""
h = out(8); del h
assert info()["idle_bytes"] > 0
sk.empty_cpu_cache()
assert info()["idle_bytes"] == 0 and info()["idle_blocks"] == 0
""", "64")


@pytest.mark.parametrize("cache_mb", ["0", None], ids=["disabled", "default"])
def test_default_and_disabled(cache_mb):
    # Off (0) keeps nothing; with the default cap, reuse happens exactly when the cap allows it.
    run(f"""
for _ in range(3):
    h = out(8); del h
i = info()
if {cache_mb!r} == "0":
    assert (i["limit_bytes"], i["idle_bytes"], i["hits"]) == (0, 0, 0), i
else:
    assert i["hits"] == (2 if i["limit_bytes"] >= 8 * MiB else 0), i
""", cache_mb)


def test_training_loop_benchmark_runs(capsys):
    """benchmarks/output_cache_loop.py at a tiny size: both settings run and report."""
    import json

    from benchmarks import output_cache_loop

    assert output_cache_loop.main(["--steps", "2", "--warmup", "1", "--hidden", "8", "--attention", "8",
                                   "--batch", "2", "--rounds", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    cached, off = doc["results"]["cache 2048 MiB"], doc["results"]["no cache"]
    assert cached["limit_bytes"] == 2048 << 20 and off["limit_bytes"] == 0 and off["hits"] == 0
    assert all(r["median_step_s"] > 0 and r["peak_rss_mb"] > 0 for r in (cached, off))
    lengths = output_cache_loop.bucketed_lengths(50, 8)
    runs = sorted(lengths, key=lambda b: b.min())  # length buckets: runs of the sorted draws
    assert all(a.max() <= b.min() for a, b in zip(runs, runs[1:]))
    assert [int(b.min()) for b in lengths] != [int(b.min()) for b in runs]  # in shuffled order
    flat = [int(v) for b in lengths for v in b]
    assert 30 <= min(flat) and max(flat) <= 2000 and 350 < sorted(flat)[len(flat) // 2] < 550
