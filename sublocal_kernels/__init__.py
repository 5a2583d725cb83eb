"""sublocal-kernels: fused, variable-length kernels for subcellular-localization models.

Functional ops (``sublocal_kernels.<op>``) validate their arguments and call
``torch.ops.sublocal.<op>_fwd``, whose autograd formula calls ``<op>_bwd``; the dispatcher
runs C++ kernels on CPU tensors and Triton or CUDA C++ kernels on CUDA tensors. Every op has a
plain-PyTorch reference ``<op>_ref``. ``sublocal_kernels.nn`` holds the modules.
"""

from . import _library  # noqa: F401  (loads the compiled library first)
from ._library import cpu_cache_info, empty_cpu_cache
from .ops import (attention_pool, attention_pool_ref, channel_attention_pool, channel_attention_pool_ref, fo_pool,
                  fo_pool_ref, lstm, lstm_ref, multiwidth_conv1d, multiwidth_conv1d_ref)
from . import nn  # noqa: E402

__version__ = "0.1.0"

__all__ = ["attention_pool", "attention_pool_ref", "channel_attention_pool", "channel_attention_pool_ref", "fo_pool",
           "fo_pool_ref", "lstm", "lstm_ref", "multiwidth_conv1d", "multiwidth_conv1d_ref", "nn",
           "cpu_cache_info", "empty_cpu_cache", "__version__"]
