"""Diffusion models: the DDPM (registered as ``ddpm``) with ancestral and DDIM samplers.

:mod:`.schedules` holds the noise schedules and their tables, :mod:`.unet` the noise-prediction
U-Net, :mod:`.ddpm` the model itself."""
from .ddpm import DDPM, VariationalBound
from .schedules import NoiseSchedule
from .unet import UNet

__all__ = ["DDPM", "VariationalBound", "NoiseSchedule", "UNet"]
