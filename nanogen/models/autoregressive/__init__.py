"""Autoregressive models: PixelCNN and Gated PixelCNN (registered as "pixelcnn" and
"gated-pixelcnn").  :mod:`.raster` holds what they share: the chain-rule likelihood, raster-order
sampling and completion."""
from .gated_pixelcnn import GatedPixelCNN
from .pixelcnn import PixelCNN
from .raster import RasterAutoregressiveModel

__all__ = ["PixelCNN", "GatedPixelCNN", "RasterAutoregressiveModel"]
