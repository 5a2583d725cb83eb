"""The fused ops: one folder each with the public function, its reference and its kernels."""

from .fo_pool import fo_pool, fo_pool_ref
from .lstm import lstm, lstm_ref

__all__ = ["fo_pool", "fo_pool_ref", "lstm", "lstm_ref"]
