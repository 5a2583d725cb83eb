"""``torch.nn`` modules over the fused ops."""

from .fo_pool import QRNN, FoPool

__all__ = ["FoPool", "QRNN"]
