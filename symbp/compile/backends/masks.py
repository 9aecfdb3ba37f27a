"""Counter-based random numbers for dropout masks, written once for every backend.

Takes: (seed, epoch, layer) and (sample id, unit).  Gives: ``stream_key`` (the hash key of one layer's masks in
one epoch) and ``uniform`` (a number in [0, 1) for one sample and unit: 53 bits of the mixed counter), a pure
function of its arguments, so every backend and any mini-batch order draws the same mask for the same sample.
The mixer is splitmix64's finaliser in wrapping uint64 arithmetic.  The functions are plain Python on NumPy
scalars and arrays: the NumPy backend calls them on arrays (overflow warnings off), the numba backend compiles
the same functions with ``njit`` — one definition, the same bits.
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_UNIT = 1.0 / 9007199254740992.0  # 2⁻⁵³


def mix(h):
    h = (h ^ (h >> _S30)) * _M1
    h = (h ^ (h >> _S27)) * _M2
    return h ^ (h >> _S31)


def stream_key(seed, epoch, layer):
    """The hash key of one layer's masks in one epoch."""
    h = mix(np.uint64(seed) + _GOLDEN)
    h = mix(h ^ (np.uint64(epoch) * _GOLDEN + np.uint64(1)))
    return mix(h ^ (np.uint64(layer) * _GOLDEN + np.uint64(2)))


def uniform(key, sample, unit):
    """A uniform number in [0, 1) for one (sample, unit) of a stream (broadcast over arrays of them).  ``key`` is
    taken as uint64 (a key below 2⁶³ passed as int64 would xor and shift differently)."""
    h = mix(np.uint64(key) ^ mix(np.uint64(sample) * _GOLDEN + np.uint64(unit)))
    return np.float64(h >> _S11) * _UNIT


__all__ = ["mix", "stream_key", "uniform"]
