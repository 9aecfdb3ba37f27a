"""Backends: programs → loaded Python functions.  A registry, so a new backend is one more entry.

Takes: the programs of a network and a dtype.  Gives: ``Kernels`` — a mapping from kernel name (``forward``,
``cost``, ``backward``, ``sgd_epoch`` and update-rule variants) to the callable, each compiled when first used,
with its source text, compile seconds and cache information.
"""

from __future__ import annotations

import linecache
import time
import types
from collections.abc import Mapping

from symbp._version import __version__
from symbp.compile.codegen import comment_text, numba_source, numpy_source
from symbp.compile.program import Program

PROGRAMS = ("forward", "cost", "backward", "sgd_epoch")
#: The kernels that only read the parameters (a network that cannot be trained still has these).
INFERENCE = ("forward", "cost")

_NUMBA_IMPORTS = ("import math\n\nimport numpy as np\nfrom numba import njit\n"
                  "from numba.types import boolean, float32, float64, int64, uint8, void\n\n"
                  "from symbp.compile import runtime as _rt\n"
                  "from symbp.compile.runtime import readonly as RO\n\n\n")
_NUMPY_IMPORTS = ("import functools\nimport math\n\nimport numpy\nimport numpy as np\nimport scipy.special\n\n"
                  "from symbp.compile import index_np as _ix\nfrom symbp.compile import runtime as _rt\n\n\n")


def _header(network, backend: str, dtype: str) -> str:
    """The module's opening lines.  Only text symbp generated goes into source, and text derived from user
    declarations (the network's repr, which holds names) only as ``repr`` in a comment: it can never end the
    comment or open a string."""
    return (f"# symbp {__version__}: {backend} kernels ({dtype}) generated from the derived equations of\n"
            f"# {comment_text(repr(network))}\n"
            "# Generated code: do not edit; regenerate with Network.compile(). Layers are numbered from 1; a0 is "
            "the input.\n")


def numba_module_source(network, programs: dict[str, Program], dtype: str) -> tuple[dict[str, str], str]:
    """The generated numba kernels of ``programs``: per-kernel sources and all of them as one module's text."""
    sources = {name: numba_source(prog, dtype) for name, prog in programs.items()}
    return sources, _header(network, "numba", dtype) + _NUMBA_IMPORTS + "\n\n".join(sources.values())


class Kernels(Mapping):
    """The kernels of one network for one backend and dtype: ``kernels[name]`` is the callable, compiled the
    first time it is asked for (a model that only runs ``feedforward`` compiles one kernel).

    Every kernel is a module of its own (header, imports, its source).  ``sources``: the source of every kernel
    generated so far (all four programs at construction, the update-rule variants when ``fit`` first asks for
    them); ``cache_info``/``compile_seconds``: per compiled kernel.  ``add(name, program)`` generates one more
    kernel (a variant of ``sgd_epoch``) from its program.
    """

    def __init__(self, backend: str, network, dtype: str, sources: dict[str, str], key: str | None = None,
                 modules: dict[str, str] | None = None):
        self.backend, self.network, self.dtype, self.key = backend, network, dtype, key
        self.sources = dict(sources)
        self._modules = dict(modules or {})
        self._functions: dict = {}
        #: kernels whose damaged cache entry was rewritten when they were generated (reported as ``rebuilt``)
        self.repaired: set[str] = set()
        self.cache_info: dict[str, dict] = {}
        self.compile_seconds: dict[str, float] = {}

    # -- sources -------------------------------------------------------------------------------------
    def _module(self, name: str) -> str:
        if name not in self._modules:
            imports = _NUMBA_IMPORTS if self.backend == "numba" else _NUMPY_IMPORTS
            self._modules[name] = _header(self.network, self.backend, self.dtype) + imports + self.sources[name]
        return self._modules[name]

    @property
    def module_source(self) -> str:
        """Every generated kernel as one module's text (what ``symbp show --source module`` prints)."""
        imports = _NUMBA_IMPORTS if self.backend == "numba" else _NUMPY_IMPORTS
        return _header(self.network, self.backend, self.dtype) + imports + "\n\n".join(self.sources.values())

    def add(self, name: str, program: Program) -> None:
        """Generate the kernel ``name`` from ``program`` (nothing is compiled until it is called)."""
        if name in self.sources:
            return
        gen = numba_source if self.backend == "numba" else numpy_source
        self.sources[name] = gen(program, self.dtype)
        if self.backend == "numba" and self.key:
            from symbp.compile.cache import record_declaration

            record_declaration(self.key, {name: self._module(name)}, {name: self.sources[name]})

    # -- the mapping: name → compiled kernel ----------------------------------------------------------
    def __getitem__(self, name: str):
        fn = self._functions.get(name)
        if fn is None:
            if name not in self.sources:
                raise KeyError(name)
            fn = self._functions[name] = self._compile(name)
        return fn

    def __iter__(self):
        return iter(self.sources)

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def functions(self) -> Kernels:
        """The kernels by name (this mapping itself: kept for code that reads ``kernels.functions[name]``)."""
        return self

    @property
    def compiled(self) -> list[str]:
        """Names of the kernels compiled (or loaded) so far, in that order."""
        return list(self._functions)

    def _compile(self, name: str):
        t0 = time.perf_counter()
        source = self._module(name)
        if self.backend == "numpy":
            filename = f"<symbp-numpy-{name}-{abs(hash(source)):x}>"
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            module = types.ModuleType(f"symbp_numpy_{name}")
            exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - our generated source only
            info = {"hit": False, "path": filename}
        else:
            from symbp.compile.cache import load_module

            try:
                module, info = load_module(source, [name])
            except OSError:  # the kernel cache itself (KernelCacheError): say so, not "numba could not compile"
                raise
            except Exception as exc:  # numba's typing/lowering errors: name what failed, never fall back silently
                raise ValueError(f"numba could not compile the {name} kernel of {self.network!r}: "
                                 f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (try "
                                 "backend='numpy' to check the expressions, or simplify the activation)") from exc
        self.compile_seconds[name] = time.perf_counter() - t0
        self.cache_info[name] = dict(info)
        if name in self.repaired:
            self.cache_info[name].update(rebuilt=True, hit=False)
        return getattr(module, name)

    def summary(self) -> dict:
        """``{"hit", "rebuilt", "in_process", "key", "kernels"}``: ``hit`` when every kernel compiled so far came
        from the cache (None before any), ``kernels`` the per-kernel records with their compile seconds."""
        infos = list(self.cache_info.values())
        return {"hit": all(i.get("hit") for i in infos) if infos else None,
                "rebuilt": any(i.get("rebuilt") for i in infos),
                "in_process": bool(infos) and all(i.get("in_process") for i in infos),
                "key": self.key, "compiled": self.compiled,
                "kernels": {n: {**self.cache_info[n], "seconds": self.compile_seconds[n]} for n in self.compiled}}


def build_numba(network, programs: dict[str, Program] | None, dtype: str, key: str | None = None) -> Kernels:
    """The numba kernels of ``programs`` (or, for a known declaration ``key`` and no programs, the recorded
    ones: no derivation or code generation).  Their modules are written to the cache now; numba compiles each
    when it is first called."""
    from symbp.compile.cache import lookup_declaration, record_declaration

    recorded = lookup_declaration(key) if key and programs is None else None
    if recorded is not None:
        return Kernels("numba", network, dtype, recorded["sources"], key, recorded["modules"])
    if programs is None:
        raise LookupError("no recorded kernels for this declaration")
    from symbp.compile.cache import write_module

    sources, _ = numba_module_source(network, programs, dtype)
    kernels = Kernels("numba", network, dtype, sources, key)
    modules = {n: kernels._module(n) for n in sources}
    for name, source in modules.items():  # now, so that an unusable cache folder is reported by compile()
        if write_module(source):
            kernels.repaired.add(name)
    if key:
        record_declaration(key, modules, sources)
    return kernels


def build_numpy(network, programs: dict[str, Program] | None, dtype: str, key: str | None = None) -> Kernels:
    return Kernels("numpy", network, dtype, {name: numpy_source(prog, dtype) for name, prog in programs.items()})


BACKENDS = {"numba": build_numba, "numpy": build_numpy}
