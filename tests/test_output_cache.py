"""The CPU output cache behind large C++ kernel outputs (csrc/cpu/output_cache.h)."""

import os
import subprocess
import sys

import torch

import sublocal_kernels as sk


def _big_fo_pool():
    f = torch.rand(2, 1024, 1024)  # 8 MiB outputs: above the 4 MiB caching threshold
    return sk.fo_pool(f, f)[0]


def test_freed_outputs_are_reused():
    h = _big_fo_pool()
    del h
    before = sk.cpu_cache_info()
    assert before["idle_bytes"] >= 8 << 20
    h = _big_fo_pool()
    after = sk.cpu_cache_info()
    assert after["hits"] > before["hits"]
    # cached tensors are ordinary tensors: resizable, clonable, serialisable
    h.resize_(3, 1024, 1024)
    h.fill_(1.0)
    assert h.sum().item() == 3 * 1024 * 1024
    del h


def test_empty_cpu_cache_releases_idle_blocks():
    del_me = _big_fo_pool()
    del del_me
    assert sk.cpu_cache_info()["idle_bytes"] > 0
    sk.empty_cpu_cache()
    assert sk.cpu_cache_info()["idle_bytes"] == 0


def test_cache_can_be_disabled():
    code = ("import torch, sublocal_kernels as sk\n"
            "f = torch.rand(2, 1024, 1024)\n"
            "for _ in range(3): h = sk.fo_pool(f, f)[0]; del h\n"
            "i = sk.cpu_cache_info(); print(i['limit_bytes'], i['idle_bytes'], i['hits'])\n")
    env = dict(os.environ, SUBLOCAL_CPU_CACHE_MB="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "0", "0"]
