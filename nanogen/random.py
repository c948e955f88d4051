"""The global random number generator behind ``ng.rand``, ``ng.randn``, dropout and sampling.

``ng.manual_seed(s)`` reseeds it; ``get_rng_state`` / ``set_rng_state`` capture and restore it
exactly (checkpoints use them so that a resumed run draws the same numbers as an unbroken one).
CPU tensors draw from a NumPy PCG64 generator.  Device "cuda" draws from generators of its own:
CuPy's on a real GPU, NumPy's PCG64 under numba's simulator (the simulated CuPy's
``random.default_rng``).  CuPy's generators cannot be saved (their state lives in cuRAND), so the
device stream is *counter-based*: its k-th draw since ``manual_seed(s)`` comes from a fresh
generator seeded with ``[s, k]``.  Its whole state is the count k, which ``get_rng_state``
stores beside the CPU generator's, so a run resumed on "cuda" draws what an unbroken one draws.
"""
from __future__ import annotations

import contextlib
import copy
import json

import numpy as np

from . import backend

__all__ = ["manual_seed", "seed", "initial_seed", "get_rng_state", "set_rng_state", "generator",
           "draw", "fork_rng", "sharded"]

_seed = 0
_cpu = np.random.Generator(np.random.PCG64(_seed))
_device_draws = 0       # how many device generators have been handed out since the seed
_shard = None           # (rank, ranks) inside ``sharded``


def manual_seed(seed: int):
    """Seed every generator nanogen uses (CPU and GPU)."""
    global _seed, _cpu, _device_draws
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"manual_seed needs a non-negative seed, got {seed}")
    _seed = seed
    _cpu = np.random.Generator(np.random.PCG64(seed))
    _device_draws = 0


def seed() -> int:
    """Seed from the OS's entropy and return the seed used."""
    s = int(np.random.SeedSequence().entropy % (2 ** 63))
    manual_seed(s)
    return s


def initial_seed() -> int:
    return _seed


def generator(device="cpu"):
    """The generator that draws for ``device`` (``numpy`` or ``cupy`` ``Generator``): the CPU's
    one stream, or for the GPU the next generator of the counter-based device stream (seeded
    with ``[seed, k]``; take one per draw)."""
    global _device_draws
    xp = backend.array_module(device)
    if xp is np:
        return _cpu
    g = xp.random.default_rng([_seed, _device_draws])
    _device_draws += 1
    return g


def get_rng_state():
    """The random state as a uint8 tensor (JSON bytes), like ``torch.get_rng_state``: the CPU
    generator's state and the device stream's draw count."""
    from .tensor import Tensor
    blob = json.dumps({"cpu": _cpu.bit_generator.state, "device_draws": _device_draws}).encode()
    return Tensor(np.frombuffer(blob, dtype=np.uint8).copy())


def set_rng_state(state):
    """Restore a state returned by :func:`get_rng_state` (one saved before the device count was
    kept, the CPU state alone, restores the count to 0)."""
    global _device_draws
    arr = np.asarray(state.numpy() if hasattr(state, "numpy") else state, dtype=np.uint8)
    try:
        st = json.loads(arr.tobytes().decode())
        cpu, draws = (st["cpu"], int(st["device_draws"])) if "cpu" in st else (st, 0)
        _cpu.bit_generator.state = cpu
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"set_rng_state: not a state made by get_rng_state ({e})") from None
    _device_draws = draws


def draw(kind, shape, dtype, device, **kw):
    """One array of random numbers on ``device``: kind is 'uniform', 'normal' or 'integers'.
    Inside :func:`sharded` a draw of shape (n, ...) is rank r's rows of a draw of (N n, ...)."""
    if _shard is not None and len(shape) >= 1:
        rank, ranks = _shard
        n = shape[0]
        whole = _draw(kind, (n * ranks,) + tuple(shape[1:]), dtype, device, **kw)
        return whole[rank * n:(rank + 1) * n]
    return _draw(kind, shape, dtype, device, **kw)


def _draw(kind, shape, dtype, device, **kw):
    g = generator(device)
    if kind == "uniform":
        arr = g.random(shape, dtype=np.float64 if np.dtype(dtype) == np.float64 else np.float32)
    elif kind == "normal":
        arr = g.standard_normal(shape, dtype=np.float64 if np.dtype(dtype) == np.float64
                                else np.float32)
    elif kind == "integers":
        arr = g.integers(kw["low"], kw["high"], size=shape)
    else:
        raise ValueError(kind)
    return arr.astype(dtype, copy=False)


@contextlib.contextmanager
def sharded(rank: int, ranks: int):
    """Draw per-example random numbers as one of ``ranks`` data-parallel ranks.

    Inside the block, a draw whose first dimension is n (this rank's examples) is drawn for
    ``ranks * n`` examples and rank ``rank`` keeps rows ``[rank n, (rank + 1) n)``: every rank
    advances its generator as one process at the global batch would, and gets the numbers that
    process would have used for its examples (:mod:`nanogen.distributed`).  Draws with no
    dimension (a scalar) are the same on every rank.  ``ranks == 1`` changes nothing.
    """
    global _shard
    rank, ranks = int(rank), int(ranks)
    if not 0 <= rank < ranks:
        raise ValueError(f"sharded: rank must be in [0, {ranks}), got {rank}")
    saved, _shard = _shard, ((rank, ranks) if ranks > 1 else None)
    try:
        yield
    finally:
        _shard = saved


@contextlib.contextmanager
def fork_rng(seed=None):
    """Run a block on its own random numbers, then put the global generators back as they were.

    ``torch.random.fork_rng``'s idea: code after the block draws exactly what it would have drawn
    had the block never run.  The training loop draws its sample grids this way, so sampling
    every few hundred steps never changes the training run::

        with ng.random.fork_rng(0):     # the same noise, hence comparable grids, every time
            images = model.sample(64)

    ``seed``: reseed (CPU and GPU) for the block.  ``None`` continues both streams on copies (the
    CPU generator copied, the device count carried on), and puts them back after the block.
    """
    global _seed, _cpu, _device_draws
    saved = (_seed, _cpu, _device_draws)
    if seed is None:
        _cpu = copy.deepcopy(_cpu)
    else:
        manual_seed(seed)
    try:
        yield
    finally:
        _seed, _cpu, _device_draws = saved
