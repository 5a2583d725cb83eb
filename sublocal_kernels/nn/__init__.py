"""``torch.nn`` modules over the fused ops."""

from .attention import AttentionPool
from .fo_pool import QRNN, FoPool

__all__ = ["AttentionPool", "FoPool", "QRNN"]
