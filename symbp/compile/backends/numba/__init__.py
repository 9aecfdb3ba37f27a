"""The numba backend: kernel programs → nopython kernels, cached on disk.

Takes: programs and a dtype.  Gives: ``NUMBA``, registered as ``"numba"``: its emitter (``emit.numba_source``),
its runtime (``runtime``: BLAS ``?gemm`` through LLVM symbols, stable σ, aligned buffers, the dropout masks), its
loader and cache policy (``cache``: every kernel a module of its own in the cache folder, compiled by numba on
first use and reloaded from numba's cache in later processes; a declaration index that lets a warm process skip
derivation and code generation).  numba itself is imported when the first kernel is loaded.
"""

from __future__ import annotations

from symbp.compile.backends.base import Backend, register_backend
from symbp.compile.backends.numba import index as _index  # noqa: F401  (the declared maps' emitters)
from symbp.compile.backends.numba.emit import numba_source


class NumbaBackend(Backend):
    name = "numba"
    description = "numba nopython kernels (LLVM), cached on disk"
    loading = "compiling"
    imports = ("import math\n\nimport numpy as np\nfrom numba import njit\n"
               "from numba.types import boolean, float32, float64, int64, uint8, void\n\n"
               "from symbp.compile.backends.numba import runtime as _rt\n"
               "from symbp.compile.backends.numba.runtime import readonly as RO\n\n\n")

    def emit(self, program, dtype):
        return numba_source(program, dtype)

    def load(self, name, source, network):
        from symbp.compile.backends.numba.cache import load_module

        try:
            return load_module(source, [name])
        except OSError:  # the kernel cache itself (KernelCacheError): say so, not "numba could not compile"
            raise
        except Exception as exc:  # numba's typing/lowering errors: name what failed, never fall back silently
            raise ValueError(f"numba could not compile the {name} kernel of {network!r}: "
                             f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (try "
                             "backend='numpy' to check the expressions, or simplify the activation)") from exc

    def set_threads(self, threads):
        import numba

        numba.set_num_threads(min(int(threads), numba.config.NUMBA_NUM_THREADS))

    def declaration_key(self, network, dtype):
        from symbp.compile.backends.numba.cache import declaration_key

        return declaration_key(network, self.name, dtype)

    def lookup(self, key):
        from symbp.compile.backends.numba.cache import lookup_declaration

        return lookup_declaration(key)

    def record(self, key, modules, sources):
        from symbp.compile.backends.numba.cache import record_declaration

        record_declaration(key, modules, sources)

    def prepare(self, kernels):
        """Writes every kernel's module to the cache now, so that an unusable cache folder is reported by
        ``compile()``; a damaged entry rewritten is reported as ``rebuilt``."""
        from symbp.compile.backends.numba.cache import write_module

        for name in kernels.sources:
            if write_module(kernels.module(name)):
                kernels.repaired.add(name)


NUMBA = register_backend(NumbaBackend())

__all__ = ["NUMBA", "NumbaBackend"]
