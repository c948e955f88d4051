"""Autoregressive models over binary images: FVBN, NADE, MADE, PixelRNN (Row LSTM, Diagonal
BiLSTM), PixelCNN and Gated PixelCNN (registered as "fvbn", "nade", "made", "pixelrnn-row",
"pixelrnn-diagonal", "pixelcnn" and "gated-pixelcnn").  :mod:`.raster` holds what they share:
the chain-rule likelihood, sampling and completion; :mod:`.flat` what the MLPs add to it."""
from .flat import FlatAutoregressiveModel
from .fvbn import FVBN
from .made import MADE
from .nade import NADE
from .gated_pixelcnn import GatedPixelCNN
from .pixelcnn import PixelCNN
from .pixelrnn import PixelRNN
from .raster import RasterAutoregressiveModel

__all__ = ["FVBN", "NADE", "MADE", "PixelRNN", "PixelCNN", "GatedPixelCNN",
           "RasterAutoregressiveModel", "FlatAutoregressiveModel"]
