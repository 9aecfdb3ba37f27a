"""Backends: programs → loaded Python functions.  A registry, so a new backend is one more entry.

Takes: the programs of a network and a dtype.  Gives: ``Kernels`` — the callable ``forward``, ``cost``,
``backward`` and ``sgd_epoch``, their source text, compile seconds and cache information.
"""

from __future__ import annotations

import linecache
import time
import types
from dataclasses import dataclass, field

from symbp._version import __version__
from symbp.compile.codegen import comment_text, numba_source, numpy_source
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
    """The module's opening lines.  Only text symbp generated goes into source, and text derived from user
    declarations (the network's repr, which holds names) only as ``repr`` in a comment: it can never end the
    comment or open a string."""
    return (f"# symbp {__version__}: {backend} kernels ({dtype}) generated from the derived equations of\n"
            f"# {comment_text(repr(network))}\n"
            "# Generated code: do not edit; regenerate with Network.compile(). Layers are numbered from 1; a0 is "
            "the input.\n")


def numba_module_source(network, programs: dict[str, Program], dtype: str) -> tuple[dict[str, str], str]:
    """The generated numba kernels of ``programs``: per-kernel sources and the whole module's source."""
    sources = {name: numba_source(programs[name], dtype) for name in PROGRAMS}
    module_source = (_header(network, "numba", dtype)
                     + "import math\n\nimport numpy as np\nfrom numba import njit\n"
                       "from numba.types import boolean, float32, float64, int64, void\n\n"
                       "from symbp.compile import runtime as _rt\n"
                       "from symbp.compile.runtime import readonly as RO\n\n\n"
                     + "\n\n".join(sources[n] for n in PROGRAMS))
    return sources, module_source


def build_numba(network, programs: dict[str, Program] | None, dtype: str, key: str | None = None) -> Kernels:
    """Generate (or, for a known declaration ``key``, reuse the recorded) source and load it from the cache."""
    from symbp.compile.cache import load_module, lookup_declaration, record_declaration

    recorded = lookup_declaration(key) if key and programs is None else None
    if recorded is not None:
        sources, module_source = recorded["sources"], recorded["module"]
    else:
        if programs is None:
            raise LookupError("no recorded kernels for this declaration")
        sources, module_source = numba_module_source(network, programs, dtype)
    t0 = time.perf_counter()
    try:
        module, info = load_module(module_source, list(PROGRAMS))
    except OSError:  # the kernel cache itself (KernelCacheError): say so, not "numba could not compile"
        raise
    except Exception as exc:  # numba's typing/lowering errors: name what failed, never fall back silently
        raise ValueError(f"numba could not compile the kernels of {network!r}: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''} (try backend='numpy' to check the "
                         "expressions, or simplify the activation)") from exc
    secs = time.perf_counter() - t0
    if key and recorded is None:
        record_declaration(key, module_source, sources)  # after the module is written: the record points at it
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
