"""nanogen: a from-scratch deep-learning engine and the classic generative models built on it.

``import nanogen as ng`` gives a PyTorch-shaped API: ``ng.tensor``, ``ng.randn``,
``ng.no_grad()``, ``ng.autograd.grad``, ``ng.nn``, ``ng.nn.functional as F``, ``ng.optim``,
``ng.save`` / ``ng.load`` and ``ng.manual_seed``; ``ng.load_pretrained("NAME")`` gives a
model that ships with nanogen, ready to sample.
"""
from . import allocator, backend
from .tensor import (Tensor, bool_, float16, float32, float64, get_default_dtype, int8, int16,
                     int32, int64, is_tensor, set_default_dtype, uint8)
from .tensor import _install_methods
from . import functional
from .functional import *  # noqa: F401,F403  (ng.exp, ng.cat, ng.where, ng.matmul, ...)
from .creation import *  # noqa: F401,F403
from . import autograd
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .backend import Device, default_device, device, set_default_device
from .random import get_rng_state, initial_seed, manual_seed, seed, set_rng_state
from . import cuda

_install_methods()
del _install_methods

# PyTorch's dtype aliases
float = float32  # noqa: A001
double = float64
half = float16
long = int64
int = int32  # noqa: A001
bool = bool_  # noqa: A001

from . import nn, optim, testing  # noqa: E402
from .serialization import load, save  # noqa: E402
from .pretrained import load_pretrained  # noqa: E402

__version__ = "0.1.0"

allocator.keep_host_memory()
