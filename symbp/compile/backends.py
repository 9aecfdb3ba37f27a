"""Backends: programs → loaded Python functions.  A registry, so a new backend is one more entry.

Takes: the programs of a network and a dtype.  Gives: ``Kernels`` — the callable ``forward``, ``cost``,
``backward`` and ``sgd_epoch``, their source text, compile seconds and cache information.
"""

from __future__ import annotations

import linecache
import time
import types
from dataclasses import dataclass, field

import symbp
from symbp.compile.codegen import numba_source, numpy_source
from symbp.compile.program import Program

PROGRAMS = ("forward", "cost", "backward", "sgd_epoch")


@dataclass
class Kernels:
    functions: dict
    sources: dict[str, str]
    module_source: str
    compile_seconds: float
    cache_info: dict = field(default_factory=dict)


def _header(network, backend: str, dtype: str) -> str:
    return (f'"""symbp {symbp.__version__}: {backend} kernels ({dtype}) generated from the derived equations of\n'
            f"{network!r}. Generated code: do not edit; regenerate with Network.compile().\n"
            'Layers are numbered from 1; a0 is the input."""\n')


def build_numba(network, programs: dict[str, Program] | None, dtype: str, key: str | None = None) -> Kernels:
    """Generate (or, for a known declaration ``key``, reuse the recorded) source and load it from the cache."""
    from symbp.compile.cache import load_module, lookup_declaration, record_declaration

    recorded = lookup_declaration(key) if key and programs is None else None
    if recorded is not None:
        sources, module_source = recorded["sources"], recorded["module"]
    else:
        if programs is None:
            raise LookupError("no recorded kernels for this declaration")
        sources = {name: numba_source(programs[name], dtype) for name in PROGRAMS}
        module_source = (_header(network, "numba", dtype)
                         + "import math\n\nimport numpy as np\nfrom numba import njit\n"
                           "from numba.types import boolean, float32, float64, int64, void\n\n"
                           "from symbp.compile import runtime as _rt\n"
                           "from symbp.compile.runtime import readonly as RO\n\n\n"
                         + "\n\n".join(sources[n] for n in PROGRAMS))
        if key:
            record_declaration(key, module_source, sources)
    t0 = time.perf_counter()
    try:
        module, info = load_module(module_source, list(PROGRAMS))
    except Exception as exc:  # numba's typing/lowering errors: name what failed, never fall back silently
        raise ValueError(f"numba could not compile the kernels of {network!r}: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''} (try backend='numpy' to check the "
                         "expressions, or simplify the activation)") from exc
    secs = time.perf_counter() - t0
    return Kernels({n: getattr(module, n) for n in PROGRAMS}, sources, module_source, secs, info)


def build_numpy(network, programs: dict[str, Program] | None, dtype: str, key: str | None = None) -> Kernels:
    sources = {name: numpy_source(programs[name], dtype) for name in PROGRAMS}
    module_source = (_header(network, "numpy", dtype)
                     + "import functools\nimport math\n\nimport numpy\nimport numpy as np\nimport scipy.special\n\n"
                       "from symbp.compile import runtime as _rt\n\n\n"
                     + "\n\n".join(sources[n] for n in PROGRAMS))
    t0 = time.perf_counter()
    filename = f"<symbp-numpy-{abs(hash(module_source)):x}>"
    linecache.cache[filename] = (len(module_source), None, module_source.splitlines(True), filename)
    module = types.ModuleType("symbp_numpy_kernels")
    code = compile(module_source, filename, "exec")  # our generated source, never user text
    exec(code, module.__dict__)  # noqa: S102
    secs = time.perf_counter() - t0
    return Kernels({n: getattr(module, n) for n in PROGRAMS}, sources, module_source, secs,
                   {"hit": False, "path": filename})


BACKENDS = {"numba": build_numba, "numpy": build_numpy}
