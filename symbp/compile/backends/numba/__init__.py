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

#: Seconds a compile-ahead worker may take before it is stopped (its kernel is then compiled in the parent).
WORKER_TIMEOUT = 600


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

    def small_product(self, trans_a, trans_b):
        """The runtime's ``SMALL_GEMM`` for the forward product a·Wᵀ, else 0 (kept in the runtime's source,
        which keys the kernel cache)."""
        from symbp.compile.backends.numba.runtime import SMALL_GEMM

        return SMALL_GEMM if (trans_a, trans_b) == (False, True) else 0

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

    def compile_ahead(self, kernels, names, workers):
        """Starts compiling every kernel of ``names`` but the first that is not yet in numba's cache, in up to
        ``workers - 1`` fresh interpreters (``python -m symbp.compile.backends.numba.worker``: nothing of the
        caller's program is imported), while this process compiles the first; returns ``wait(cancel=False)``,
        which waits for them (the parent then loads those kernels from the cache) or stops them.  numba
        compiles one kernel per process at a time and LLVM is most of it.  A worker that fails only means the
        parent compiles that kernel itself, and reports any error as it would have.  Measured cold (fresh
        caches, the update kernel, forward and cost, two cores): the ch.1 net 4.33 → 3.14 s, basic_conv
        9.82 → 6.41 s."""
        import os
        import subprocess
        import sys

        from symbp.compile.backends.numba.cache import is_compiled, module_path

        procs: list = []

        def wait(cancel: bool = False):
            for proc in procs:
                if cancel:
                    proc.kill()
                try:
                    proc.wait(timeout=WORKER_TIMEOUT)
                except subprocess.TimeoutExpired:  # hung: the parent compiles that kernel itself
                    proc.kill()
                    proc.wait()

        try:
            todo = [n for n in names[1:] if not is_compiled(kernels.module(n), n)]
            groups = [todo[k::max(1, int(workers) - 1)] for k in range(min(len(todo), max(0, int(workers) - 1)))]
            # the workers import symbp from where this process does
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
            for group in groups:
                argv = [a for n in group for a in (str(module_path(kernels.module(n))), n)]
                procs.append(subprocess.Popen([sys.executable, "-m", "symbp.compile.backends.numba.worker", *argv],
                                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, env=env))
        except OSError:  # no processes here (a sandbox), or the cache folder: this process compiles (and reports)
            wait(cancel=True)
            procs.clear()
        except BaseException:
            wait(cancel=True)
            raise
        return wait

    def prepare(self, kernels):
        """Writes every kernel's module to the cache now, so that an unusable cache folder is reported by
        ``compile()``; a damaged entry rewritten is reported as ``rebuilt``."""
        from symbp.compile.backends.numba.cache import write_module

        for name in kernels.sources:
            if write_module(kernels.module(name)):
                kernels.repaired.add(name)


NUMBA = register_backend(NumbaBackend())

__all__ = ["NUMBA", "NumbaBackend"]
