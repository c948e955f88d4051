"""Pooling, resampling and padding layers."""
__all__ = []
