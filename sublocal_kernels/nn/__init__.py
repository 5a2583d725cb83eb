"""``torch.nn`` modules over the fused ops."""

from .attention import AttentionPool
from .channel_attention import ChannelAttentionPool
from .fo_pool import QRNN, FoPool
from .lstm import LSTM
from .multiwidth_conv1d import MultiWidthConv1d

__all__ = ["AttentionPool", "ChannelAttentionPool", "FoPool", "LSTM", "MultiWidthConv1d", "QRNN"]
