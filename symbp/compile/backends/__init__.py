"""Backends: kernel programs → loaded kernels, one module (package) each, found through one registry.

Takes: the programs of a network and a dtype.  Gives: ``Backend`` (what a backend implements), ``BACKENDS`` (the
registry, name → backend), ``register_backend``, ``get_backend`` (a clear error naming the registered ones),
``build`` (a network's ``Kernels`` from its programs, or from the backend's record of the declaration) and
``Kernels`` — a mapping from kernel name (``forward``, ``cost``, ``backward``, ``sgd_epoch`` and update-rule
variants) to the callable, each compiled (or loaded) when first used, with its source text, compile seconds and
cache information.

Nothing here, and nothing outside a backend's own package, tests a backend's name: ``Model``, the command line's
``--backend`` choices and the bench read what they need from the ``Backend`` object.  The built-in backends are
``numba`` (``symbp.compile.backends.numba``: nopython kernels, cached on disk with a declaration index) and
``numpy`` (``symbp.compile.backends.numpy``: plain NumPy, no numba imported).  Importing this package imports
neither numba nor the backends' runtimes: each loads them when its first kernel is loaded.
"""

from symbp.compile.backends import numba, numpy  # noqa: F401  (the built-in backends register themselves)
from symbp.compile.backends.base import (
    BACKENDS,
    INFERENCE,
    PROGRAMS,
    Backend,
    Kernels,
    build,
    get_backend,
    register_backend,
)

__all__ = ["BACKENDS", "Backend", "INFERENCE", "Kernels", "PROGRAMS", "build", "get_backend", "register_backend"]
