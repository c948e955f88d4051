"""Diffusion models: the DDPM (``ddpm``) with ancestral and DDIM samplers, Improved DDPM
(``improved-ddpm``: learned variances, the hybrid loss) and the class-conditional DDPM with
classifier-free guidance (``ddpm-cfg``).

:mod:`.schedules` holds the noise schedules and their tables, :mod:`.objectives` what the network
predicts and how its error is weighted, :mod:`.timestep_sampling` which steps it trains on,
:mod:`.unet` the U-Net, :mod:`.ddpm` the model itself and :mod:`.guidance` its guided variant."""
from .ddpm import DDPM, VariationalBound
from .guidance import GuidedDDPM
from .schedules import NoiseSchedule
from .unet import UNet

__all__ = ["DDPM", "GuidedDDPM", "VariationalBound", "NoiseSchedule", "UNet"]
