"""``nanogen.functional`` (also ``nanogen.nn.functional``, imported as ``F``): every op, one
module per family, each op's forward and backward side by side."""
from .elementwise import *  # noqa: F401,F403
from .reduce import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403
from .indexing import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from .activation import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .resample import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
from .recurrent import *  # noqa: F401,F403
from .conv_lstm import *  # noqa: F401,F403
from . import (elementwise, reduce, shape, indexing, linalg, activation, loss, conv,  # noqa: F401
               pooling, resample, normalization, attention, recurrent, conv_lstm)

__all__ = (elementwise.__all__ + reduce.__all__ + shape.__all__ + indexing.__all__
           + linalg.__all__ + activation.__all__ + loss.__all__ + conv.__all__ + pooling.__all__
           + resample.__all__ + normalization.__all__ + attention.__all__ + recurrent.__all__
           + conv_lstm.__all__)
