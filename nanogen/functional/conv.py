"""Convolutions: conv1d, conv2d, conv_transpose2d, masked_conv2d (PixelCNN), causal_conv1d."""
__all__ = []
