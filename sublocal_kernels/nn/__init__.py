"""Modules over the fused ops."""

from .attention import AttentionPool

__all__ = ["AttentionPool"]
