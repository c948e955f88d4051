"""Energy-based models trained without backpropagated likelihood gradients: restricted and deep
Boltzmann machines (their partition functions estimated by annealed importance sampling), deep
belief networks, and sparse coding."""
from . import rbm  # noqa: F401  (registers "rbm")
from . import dbn  # noqa: F401  (registers "dbn")
from . import sparse_coding  # noqa: F401  (registers the three "sparse-coding" models)
from . import dbm  # noqa: F401  (registers "dbm")
