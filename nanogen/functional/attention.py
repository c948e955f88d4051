"""Attention: scaled_dot_product_attention (fused, online softmax)."""
__all__ = []
