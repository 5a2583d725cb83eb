"""Build sublocal_kernels._C: the C++ CPU kernels always, the CUDA kernels when torch has CUDA.

Build without build isolation, after torch is installed:

    pip install torch==2.13.0 ninja      # CPU machines (ninja: parallel, incremental compiles)
    pip install --no-build-isolation -e ".[models]"   # the ops plus what the CLI needs
    python setup.py build_ext --inplace  # incremental rebuild

Set SUBLOCAL_NO_CUDA=1 to skip the CUDA sources on a CUDA machine, MAX_JOBS to bound
parallel compiles, SUBLOCAL_DEBUG=1 for -O0 -g.
"""

import glob
import os
import sys

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils import cpp_extension
except ImportError:  # pragma: no cover - a message, not a code path
    sys.exit(
        "sublocal-kernels builds against the torch already installed: install torch first "
        "(pip install torch==2.13.0 on CPU machines), then build with "
        "`pip install --no-build-isolation -e .`"
    )

HERE = os.path.dirname(os.path.abspath(__file__))

# `pip install --no-build-isolation` ignores pyproject's build requirements, ninja included; without
# ninja torch compiles the sources one after another (6 minutes on the 2-core CI machine). torch
# looks for `ninja` on PATH only, so a ninja installed in a virtual environment that is not
# activated (`.venv/bin/pip install ...`) would be missed: look beside this interpreter too.
_bin = os.path.dirname(sys.executable)
if os.path.isfile(os.path.join(_bin, "ninja")):
    os.environ["PATH"] = _bin + os.pathsep + os.environ.get("PATH", "")
if not cpp_extension.is_ninja_available():
    print("\n*** sublocal-kernels: ninja is not installed: the extension compiles serially and slowly. "
          "Install it first: pip install ninja ***\n", file=sys.stderr)
DEBUG = os.environ.get("SUBLOCAL_DEBUG", "0") == "1"


def sources(pattern):
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, pattern)))


def want_cuda():
    if os.environ.get("SUBLOCAL_NO_CUDA", "0") == "1":
        return False
    # A CPU wheel has torch.version.cuda None and CUDA_HOME None whatever the environment says.
    return torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None


cxx_flags = ["-O0", "-g"] if DEBUG else ["-O3"]
# at::parallel_for is a header template: without -fopenmp (_OPENMP undefined) it compiles to a
# plain serial call in our sources, and the ATen ops called inside it then open their own
# 2-thread OpenMP teams per call (measured: attention_pool forward, B=32 T=1000 D=512 A=400,
# 2 threads on the shared 2-core CI machine: 2.4-9.7 s without, 0.35-0.58 s with). Linking
# with -fopenmp binds to the libgomp.so.1 torch has already loaded (same soname), so there is
# one OpenMP runtime.
openmp_flags = [] if sys.platform == "darwin" else ["-fopenmp"]
cxx_flags += openmp_flags
# Masked vector epilogues where the ISA has masks (AVX-512): a loop over H = 15 hidden units (the
# CNN-LSTM's LSTM) otherwise runs entirely in the scalar epilogue of its 16-lane vector loop.
# No reassociation is allowed, but a tail now computed by vector code can round differently from
# the scalar tail (float32 rounding); every tolerance and bit-for-bit test of the suite passes.
if sys.platform != "darwin" and "clang" not in os.environ.get("CXX", ""):
    cxx_flags += ["--param=vect-partial-vector-usage=1"]
# py_limited_api=True below: one abi3 binary for every Python >= 3.9 (torch's BuildExtension
# defines Py_LIMITED_API itself; the module's init uses only the limited API).
define_macros = []
ext_sources = sources("csrc/*.cpp") + sources("csrc/cpu/*.cpp") + sources("csrc/cpu/*/*.cpp")

if want_cuda():
    ext_sources += sources("csrc/cuda/*.cu")
    define_macros.append(("SUBLOCAL_WITH_CUDA", "1"))
    nvcc_flags = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
    arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if not arch_list:
        # Build for the GPU in this machine (H100/H200: 9.0) and embed PTX for newer ones.
        major, minor = torch.cuda.get_device_capability() if torch.cuda.is_available() else (9, 0)
        os.environ["TORCH_CUDA_ARCH_LIST"] = f"{major}.{minor}+PTX"
    extension = cpp_extension.CUDAExtension
    extra_compile_args = {"cxx": cxx_flags, "nvcc": nvcc_flags}
else:
    extension = cpp_extension.CppExtension
    extra_compile_args = {"cxx": cxx_flags}

ext_modules = [
    extension(
        "sublocal_kernels._C",
        ext_sources,
        include_dirs=[os.path.join(HERE, "csrc")],
        define_macros=define_macros,
        extra_compile_args=extra_compile_args,
        extra_link_args=openmp_flags,
        py_limited_api=True,
    )
]

# SUBLOCAL_NO_EXTENSION=1: install the Python package only (the Makefile's environment step,
# whose `build` step then compiles the extension in place once, instead of twice).
if os.environ.get("SUBLOCAL_NO_EXTENSION", "0") == "1":
    ext_modules = []

setup(
    packages=find_packages(include=["sublocal_kernels", "sublocal_kernels.*"]),
    ext_modules=ext_modules,
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
