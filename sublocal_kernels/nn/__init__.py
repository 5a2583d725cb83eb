"""Layers over the fused ops."""

from .multiwidth_conv1d import MultiWidthConv1d

__all__ = ["MultiWidthConv1d"]
