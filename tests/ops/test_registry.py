"""The op registry (sublocal_kernels/ops/registry.py) declares every op once: every public op,
every schema of csrc/ops.cpp, every Triton kernel and every op benchmark belongs to a declaration,
so a new op, schema or kernel cannot be left out of the checks that read it."""

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sublocal_kernels.ops
from sublocal_kernels.ops import registry

ROOT = Path(__file__).resolve().parents[2]


def _ops_cpp_schemas() -> list[str]:
    text = (ROOT / "csrc" / "ops.cpp").read_text()
    names = re.findall(r'\bm\.def\(\s*"(\w+)\(', text)
    assert len(names) == text.count("m.def(") and names, "an m.def( the pattern does not read"
    return names


def test_names_are_unique():
    names = [spec.name for spec in registry.OPS]
    assert len(set(names)) == len(names), names
    assert all(registry.get(n).name == n for n in names)
    with pytest.raises(KeyError, match="no op 'nope'"):
        registry.get("nope")


def test_every_public_op_and_reference_is_declared():
    exported = sublocal_kernels.ops.__all__
    public = {n for n in exported if not n.endswith("_ref")}
    assert {spec.public_name for spec in registry.OPS} == public
    assert {spec.reference.__name__ for spec in registry.OPS} == {f"{n}_ref" for n in public}
    assert set(exported) == public | {f"{n}_ref" for n in public}
    for spec in registry.OPS:
        assert getattr(sublocal_kernels.ops, spec.public_name) is spec.public, spec.name
        assert getattr(sublocal_kernels.ops, f"{spec.public_name}_ref") is spec.reference, spec.name
        assert spec.is_variant == (spec.name not in public), spec.name


def test_every_schema_in_ops_cpp_is_declared_once():
    declared = [s for spec in registry.OPS for s in spec.schemas]
    assert sorted(declared) == sorted(_ops_cpp_schemas())
    for spec in registry.OPS:
        assert {f"{spec.name}_fwd", f"{spec.name}_bwd"} <= set(spec.schemas), spec.name
        for s in spec.schemas:
            assert hasattr(torch.ops.sublocal, s), s


def test_forward_schema_matches_the_declaration():
    """`lengths` right after the per-step inputs, and the workspaces the forward's last results."""
    for spec in registry.OPS:
        schema = getattr(torch.ops.sublocal, f"{spec.name}_fwd").default._schema
        args = [a.name for a in schema.arguments]
        assert args[:len(spec.per_step_inputs) + 1] == [*spec.per_step_inputs, "lengths"], (spec.name, args)
        results = [r.name for r in schema.returns]
        assert len(spec.workspaces) < len(results), (spec.name, results)
        assert results[len(results) - len(spec.workspaces):] == list(spec.workspaces), (spec.name, results)


def test_every_op_has_its_benchmark():
    for spec in registry.OPS:
        path = ROOT / spec.benchmark
        assert path.is_file() and path.parent == ROOT / "benchmarks" and path.stem.startswith("bench_"), spec.benchmark
        assert importlib.import_module(f"benchmarks.{path.stem}").SPEC.op == spec.name, spec.benchmark


def test_cases_build():
    """Each op's small float64 case: a public call and a forward-op call on the same input."""
    lengths = torch.tensor([5, 2, 3])
    for spec in registry.OPS:
        call, fwd, x = spec.lengths_case(lengths, 3, 5)
        assert x.dtype == torch.float64 and x.requires_grad and x.shape[:2] == (3, 5), spec.name
        out, results = call(), fwd()
        assert isinstance(out, tuple) and isinstance(results, tuple), spec.name
        assert torch.equal(out[0], results[0]), spec.name


@pytest.mark.triton
@pytest.mark.slow
def test_every_triton_kernel_is_declared_and_launched():
    """Every `*_kernel` of each Triton module is declared by an op, and each op's sm_90 launch
    cases launch exactly the kernels it declares (benchmarks/sm90_static.py: kernel_mismatches)."""
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # JIT functions to record
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    code = ("import json\nfrom benchmarks import sm90_static\n"
            "sink = sm90_static.record_launches(dtypes=('float32',))\n"
            "print(json.dumps(sorted({(ctx['op'], fn.__name__) for fn, _, _, ctx in sink})))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    launched = json.loads(done.stdout.strip().splitlines()[-1])
    assert launched == sorted([spec.name, k] for spec in registry.OPS for k in spec.kernels)
