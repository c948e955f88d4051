"""``Parameter``: a Tensor that a :class:`~nanogen.nn.Module` registers as a learnable weight.

Assigning a Parameter to a module attribute (``self.weight = Parameter(...)``) is what makes it
show up in ``module.parameters()``, in the ``state_dict`` and in an optimizer.  Apart from that it
is an ordinary leaf tensor: every op on it returns a plain :class:`~nanogen.tensor.Tensor`.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..tensor import Tensor, get_default_dtype

__all__ = ["Parameter"]


class Parameter(Tensor):
    """A leaf tensor that requires grad by default and marks itself as a module parameter.

    ``Parameter(t)`` for a Tensor ``t`` (or a NumPy / CuPy array) *shares* its array, as in
    PyTorch, so ``Parameter(ng.zeros(3))`` costs no copy.  Other data (lists, numbers) is turned
    into a new array; ``Parameter()`` is an empty float tensor.  The result is always a leaf,
    even when ``t`` was computed by ops.
    """

    __slots__ = ()   # Tensor's slots suffice: the marker lives in the reserved ``_is_param``

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            array, device = np.empty(0, dtype=get_default_dtype()), backend.CPU
        elif isinstance(data, Tensor):
            array, device = data.data, data.device
        elif isinstance(data, np.ndarray) or type(data).__module__.startswith("cupy"):
            array, device = data, backend.device_of_array(data)
        else:
            t = Tensor(data)
            array, device = t.data, t.device
        self._init_slots(array, device, is_param=True)
        self.requires_grad = requires_grad    # the setter refuses integer dtypes

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()
