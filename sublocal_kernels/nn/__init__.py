"""``torch.nn`` modules over the fused ops."""

from .attention import AttentionPool
from .fo_pool import QRNN, FoPool
from .multiwidth_conv1d import MultiWidthConv1d

__all__ = ["AttentionPool", "FoPool", "MultiWidthConv1d", "QRNN"]
