"""``nanogen.nn.functional`` -- the same ops as :mod:`nanogen.functional`, under PyTorch's
import path: ``import nanogen.nn.functional as F``."""
from nanogen.functional import *  # noqa: F401,F403
from nanogen.functional import __all__  # noqa: F401
