"""``torch.nn`` modules over the fused ops."""

from .attention import AttentionPool
from .fo_pool import QRNN, FoPool
from .lstm import LSTM
from .multiwidth_conv1d import MultiWidthConv1d

__all__ = ["AttentionPool", "FoPool", "LSTM", "MultiWidthConv1d", "QRNN"]
