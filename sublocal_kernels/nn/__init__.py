"""``torch.nn`` modules over the fused ops."""

from .fo_pool import QRNN, FoPool
from .lstm import LSTM

__all__ = ["FoPool", "LSTM", "QRNN"]
