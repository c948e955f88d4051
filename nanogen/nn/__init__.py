"""``nanogen.nn``: modules (layers and containers), parameters, losses, initialisation.

The names and semantics are PyTorch's: subclass :class:`Module`, assign :class:`Parameter` and
submodule attributes in ``__init__``, write ``forward``, call the module.
``nn.init`` holds the initialisers, ``nn.utils`` gradient clipping, ``nn.functional`` every op.
"""
from . import functional, init, utils
from .activation import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
from .container import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .embedding import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .module import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .parameter import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .rnn import *  # noqa: F401,F403
from . import (activation, attention, container, conv, dropout, embedding, linear, loss, module,
               normalization, parameter, pooling, rnn)

__all__ = (["functional", "init", "utils"] + parameter.__all__ + module.__all__
           + container.__all__ + linear.__all__ + embedding.__all__ + dropout.__all__
           + activation.__all__ + loss.__all__ + conv.__all__ + pooling.__all__
           + normalization.__all__ + attention.__all__ + rnn.__all__)
