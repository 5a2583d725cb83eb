"""The fused ops: one folder each with the public function, its reference and its kernels."""

from .attention_pool import attention_pool, attention_pool_ref
from .channel_attention_pool import channel_attention_pool, channel_attention_pool_ref
from .fo_pool import fo_pool, fo_pool_ref
from .lstm import lstm, lstm_ref
from .multiwidth_conv1d import multiwidth_conv1d, multiwidth_conv1d_ref

__all__ = ["attention_pool", "attention_pool_ref", "channel_attention_pool", "channel_attention_pool_ref",
           "fo_pool", "fo_pool_ref", "lstm", "lstm_ref", "multiwidth_conv1d", "multiwidth_conv1d_ref"]
