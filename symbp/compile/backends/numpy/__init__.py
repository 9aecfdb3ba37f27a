"""The NumPy backend: kernel programs → plain vectorised NumPy functions.

Takes: programs and a dtype.  Gives: ``NUMPY``, registered as ``"numpy"``: its emitter (``emit.numpy_source``),
its runtime (``runtime``: the declared maps' vectorised steps, the dropout masks, softplus) and its loader (the
generated source executed as a module of its own, registered with ``linecache`` so tracebacks show it).  No cache
and no numba: a model on this backend runs where numba is not installed.
"""

from __future__ import annotations

import linecache
import types

from symbp.compile.backends.base import Backend, register_backend
from symbp.compile.backends.numpy.emit import numpy_source


class NumpyBackend(Backend):
    name = "numpy"
    description = "plain NumPy (vectorised), no compilation"
    products = False  # a correlation runs as its derived gathers (vectorised), not im2col + gemm
    imports = ("import functools\nimport math\n\nimport numpy\nimport numpy as np\nimport scipy.special\n\n"
               "from symbp.compile.backends.numpy import runtime as _rt\n\n\n")

    def emit(self, program, dtype):
        return numpy_source(program, dtype)

    def load(self, name, source, network):
        filename = f"<symbp-{self.name}-{name}-{abs(hash(source)):x}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        module = types.ModuleType(f"symbp_{self.name}_{name}")
        exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - our generated source only
        return module, {"hit": False, "path": filename}


NUMPY = register_backend(NumpyBackend())

__all__ = ["NUMPY", "NumpyBackend"]
