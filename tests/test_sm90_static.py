"""The static sm_90 resource check (benchmarks/sm90_static.py): every Triton kernel compiled the
way its launcher launches it, every CUDA C++ kernel through ptxas, none over sm_90's limits."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import sm90_static

ROOT = Path(__file__).resolve().parent.parent


def test_limits_are_enforced():
    ok = {"kind": "triton", "kernel": "k", "dtype": "float32", "config": {}, "shared_bytes": 232_448,
          "registers": 255, "spill_store_bytes": 0}
    assert sm90_static.problems([ok]) == []
    over = dict(ok, shared_bytes=294_912)
    assert "294912 bytes of shared memory" in sm90_static.problems([over])[0]


@pytest.mark.triton
@pytest.mark.slow
def test_every_gpu_kernel_fits_sm90(tmp_path):
    pytest.importorskip("triton")
    cuda = os.environ.get("SUBLOCAL_SKIP_CUDA_CHECK") != "1"
    if cuda and shutil.which("nvcc") is None:
        pytest.fail("nvcc not found: the CUDA C++ kernels cannot be checked (SUBLOCAL_SKIP_CUDA_CHECK=1 skips them)")
    out = tmp_path / "static.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "benchmarks.sm90_static", "--quiet", "--jobs", "2", "--distinct", "config",
           "--json", str(out)] + ([] if cuda else ["--no-cuda"])
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    rows = json.loads(out.read_text())["rows"]
    assert sm90_static.problems(rows) == []
    triton_rows = [r for r in rows if r["kind"] == "triton"]
    # Every op's kernels, in every dtype the ops accept.
    for op in sm90_static.OPS:
        assert {r["dtype"] for r in triton_rows if r["op"] == op} == set(sm90_static.DTYPES), op
    # The tile sizes the launchers pick were all reached (each is a separate compiled kernel).
    def recurrent_fwd(op, dtype, train):  # the LSTM family's one forward kernel, by its flags
        return [r for r in triton_rows if r["kernel"] == "_recurrent_fwd_kernel" and r["op"] == op
                and r["dtype"] == dtype and r["config"]["STORE_WORKSPACE"] == train]

    for op in ("lstm", "mlstm"):
        assert {r["config"]["MULTIPLICATIVE"] for r in recurrent_fwd(op, "float32", True)} == {op == "mlstm"}
        assert {r["config"]["BLOCK_H"] for r in recurrent_fwd(op, "float32", True)} == {16, 32, 64}, op
        assert {r["config"]["BLOCK_H"] for r in recurrent_fwd(op, "float64", True)} == {16, 32}, op
        assert {r["config"]["BLOCK_H"] for r in recurrent_fwd(op, "float64", False)} == {16, 32}, op
        assert {r["config"]["MULTIPLICATIVE"] for r in triton_rows
                if r["kernel"] == "_recurrent_bwd_kernel" and r["op"] == op} == {op == "mlstm"}
    assert {r["config"]["BLOCK_D"] for r in triton_rows if r["kernel"] == "_fo_pool_fwd_kernel"} == {16, 32, 64}
    assert {r["config"]["BLOCK_N"] for r in triton_rows if r["kernel"] == "_multiwidth_conv1d_fwd_kernel"} == {
        16, 32, 64, 128}
    # float32 products: tf32x3 by default, plain TF32 when torch allows it (both reached).
    assert {r["config"].get("PRECISION") for r in recurrent_fwd("lstm", "float32", True)} == {"tf32x3", "tf32"}
    # What the products compile to: bfloat16 on the tensor cores, float32 conv as tf32x3 (three
    # TF32 products per tile product) or TF32, float64 in float64 arithmetic.
    for r in triton_rows:
        if r["op"] != "multiwidth_conv1d":
            continue
        ptx = r["ptx"]
        if r["dtype"] == "bfloat16":
            assert ptx["wgmma"] >= 1 and ptx["bf16"], r["kernel"]
        elif r["dtype"] == "float32" and r["config"]["PRECISION"] == "tf32x3":
            assert ptx["wgmma"] >= 3 and ptx["tf32"], r["kernel"]
        elif r["dtype"] == "float32":
            assert r["config"]["PRECISION"] == "tf32" and ptx["wgmma"] >= 1 and ptx["tf32"], r["kernel"]
        elif r["dtype"] == "float64":
            assert not ptx["tf32"] and (ptx["f64_mma"] or ptx["f64_fma"]), r["kernel"]
    if cuda:
        assert {r["op"] for r in rows if r["kind"] == "cuda"} == {"fo_pool_fwd", "fo_pool_bwd"}
        assert all(r["registers"] for r in rows if r["kind"] == "cuda")
