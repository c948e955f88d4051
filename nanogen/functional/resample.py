"""Resampling and padding: interpolate, pixel_shuffle, pixel_unshuffle, pad."""
__all__ = []
