"""The backend interface and its registry, ``Kernels`` and ``build`` (see the package's docstring).

Takes: kernel programs, a dtype, a ``Backend``.  Gives: ``Backend``, ``BACKENDS``, ``register_backend``,
``get_backend``, ``Kernels``, ``build``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from symbp._version import __version__
from symbp.compile.emit import comment_text
from symbp.compile.program import Program

PROGRAMS = ("forward", "cost", "backward", "sgd_epoch")
#: The kernels that only read the parameters (a network that cannot be trained still has these).
INFERENCE = ("forward", "cost")


class Backend:
    """What a backend implements.  Subclass it, set ``name``, ``description`` and ``imports``, implement ``emit``
    and ``load``, and pass an instance to ``register_backend``; ``Network.compile(backend=name)``, model files and
    the bench's in-process runs then offer it (the command line offers the backends registered when it starts).

    - ``emit(program, dtype)``: the source text of one kernel, a function named ``program.name`` taking
      ``program.arg_names`` (the lowering's IR: ``symbp.compile.program``; every step carries its equation).
    - ``imports``: the import lines every kernel module starts with (after a generated header).
    - ``load(name, source, network)``: (the module object holding the function ``name``, cache information:
      a dict with at least ``hit``).  Called the first time a kernel is used, with the whole module's source.
    - ``array(a)`` / ``host(a)``: a parameter as the kernels take it (host backends: a 64-byte-aligned NumPy
      copy), and back as a NumPy array — a device backend keeps parameters on its device between calls.
    - Cache policy: ``declaration_key(network, dtype)`` (None: no cache), ``lookup(key)`` (a recorded
      ``{"sources", "modules"}`` for a declaration, letting a warm process skip derivation), ``record(key,
      modules, sources)`` and ``prepare(kernels)`` (called once the kernels are generated, before any is
      loaded: the numba backend writes their modules to its cache there); ``compile_ahead(kernels, names,
      workers)``: compile several kernels in parallel into that cache before they are loaded.
    - ``small_product(trans_a, trans_b)``: products of that transpose case with at most this many
      multiply-adds run as plain loops, not BLAS (the plan shows up to which mini-batch; 0: never);
    - ``products``: runs the correlations and map sums that ``symbp.compile.passes`` found as products
      (im2col + gemm); False: the derived gathers each replaced (``step.generic``), as the plan then says;
    - ``loading``: what the status line says while a kernel is loaded (``compiling``, ``loading``);
      ``set_threads(n)``: the most threads its kernels may use.
    """

    name: str = ""
    description: str = ""
    imports: str = ""
    loading: str = "loading"
    products: bool = True

    def emit(self, program: Program, dtype: str) -> str:
        raise NotImplementedError

    def small_product(self, trans_a: bool, trans_b: bool) -> int:
        """Products op(A)·op(B) of this transpose case with at most this many multiply-adds run as plain loops
        instead of a BLAS call (``model.plan()`` says which can); 0: none."""
        return 0

    def load(self, name: str, source: str, network) -> tuple[object, dict]:
        raise NotImplementedError

    # -- parameters --------------------------------------------------------------------------------------
    def array(self, a) -> np.ndarray:
        from symbp.compile.backends.host import aligned_copy

        return aligned_copy(a)

    def host(self, a) -> np.ndarray:
        return np.asarray(a)

    def set_threads(self, threads: int) -> None:
        """Let the kernels use at most ``threads`` threads of their own (the bench sets one)."""
        return None

    # -- cache policy (default: none) ----------------------------------------------------------------------
    def declaration_key(self, network, dtype: str) -> str | None:
        return None

    def lookup(self, key: str) -> dict | None:
        return None

    def record(self, key: str, modules: dict[str, str], sources: dict[str, str]) -> None:
        return None

    def prepare(self, kernels: Kernels) -> None:
        return None

    def compile_ahead(self, kernels: Kernels, names: list[str], workers: int):
        """Start compiling the kernels ``names`` (but the first, which the caller loads at once) into the
        backend's cache, using up to ``workers`` processes in all; returns a function that waits for that work
        (``wait(cancel=True)`` stops it; by default there is none: each kernel is compiled when it is loaded)."""
        return lambda cancel=False: None

    def __repr__(self) -> str:
        return f"<symbp backend {self.name!r}: {self.description}>"


#: name → Backend, in registration order (the first is the default of ``Network.compile``)
BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    """Adds ``backend`` to the registry under ``backend.name`` (replacing one of that name)."""
    if not isinstance(backend, Backend) or not backend.name or not backend.name.isidentifier():
        raise ValueError(f"a backend is a symbp.compile.backends.Backend with a name that is an identifier, got "
                         f"{backend!r}")
    BACKENDS[backend.name] = backend
    return backend


def get_backend(name) -> Backend:
    """The registered backend ``name`` (a ``Backend`` is returned as it is)."""
    if isinstance(name, Backend):
        return name
    try:
        return BACKENDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}") from None


def module_header(network, backend: str, dtype: str) -> str:
    """The module's opening lines.  Only text symbp generated goes into source, and text derived from user
    declarations (the network's repr, which holds names) only as ``repr`` in a comment: it can never end the
    comment or open a string."""
    return (f"# symbp {__version__}: {backend} kernels ({dtype}) generated from the derived equations of\n"
            f"# {comment_text(repr(network))}\n"
            "# Generated code: do not edit; regenerate with Network.compile(). Layers are numbered from 1; a0 is "
            "the input.\n")


class Kernels(Mapping):
    """The kernels of one network for one backend and dtype: ``kernels[name]`` is the callable, compiled the
    first time it is asked for (a model that only runs ``feedforward`` compiles one kernel).

    Every kernel is a module of its own (header, imports, its source).  ``sources``: the source of every kernel
    generated so far (all four programs at construction, the update-rule variants when ``fit`` first asks for
    them); ``cache_info``/``compile_seconds``: per compiled kernel.  ``add(name, program)`` generates one more
    kernel (a variant of ``sgd_epoch``) from its program.  ``backend`` is the backend's name, ``impl`` the
    ``Backend`` itself.
    """

    def __init__(self, backend, network, dtype: str, sources: dict[str, str], key: str | None = None,
                 modules: dict[str, str] | None = None):
        self.impl = get_backend(backend)
        self.backend, self.network, self.dtype, self.key = self.impl.name, network, dtype, key
        self.sources = dict(sources)
        self._modules = dict(modules or {})
        self._functions: dict = {}
        #: kernels whose damaged cache entry was rewritten when they were generated (reported as ``rebuilt``)
        self.repaired: set[str] = set()
        self.cache_info: dict[str, dict] = {}
        self.compile_seconds: dict[str, float] = {}

    # -- sources -------------------------------------------------------------------------------------
    def module(self, name: str) -> str:
        """The whole module of kernel ``name``: header, imports, its source."""
        if name not in self._modules:
            self._modules[name] = module_header(self.network, self.backend, self.dtype) + self.impl.imports + \
                self.sources[name]
        return self._modules[name]

    @property
    def module_source(self) -> str:
        """Every generated kernel as one module's text (what ``symbp show --source module`` prints)."""
        return module_header(self.network, self.backend, self.dtype) + self.impl.imports + \
            "\n\n".join(self.sources.values())

    def add(self, name: str, program: Program) -> None:
        """Generate the kernel ``name`` from ``program`` (nothing is compiled until it is called)."""
        if name in self.sources:
            return
        self.sources[name] = self.impl.emit(program, self.dtype)
        if self.key:
            self.impl.record(self.key, {name: self.module(name)}, {name: self.sources[name]})

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
        module, info = self.impl.load(name, self.module(name), self.network)
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


def build(backend, network, programs: dict[str, Program] | None, dtype: str, key: str | None = None) -> Kernels:
    """The kernels of ``programs`` for ``backend`` (or, for a declaration ``key`` the backend recorded and no
    programs, the recorded ones: no derivation or code generation).  ``LookupError`` when there are neither."""
    impl = get_backend(backend)
    recorded = impl.lookup(key) if key and programs is None else None
    if recorded is not None:
        return Kernels(impl, network, dtype, recorded["sources"], key, recorded["modules"])
    if programs is None:
        raise LookupError("no recorded kernels for this declaration")
    kernels = Kernels(impl, network, dtype, {name: impl.emit(prog, dtype) for name, prog in programs.items()}, key)
    impl.prepare(kernels)
    if key:
        impl.record(key, {n: kernels.module(n) for n in kernels.sources}, dict(kernels.sources))
    return kernels


__all__ = ["BACKENDS", "Backend", "INFERENCE", "Kernels", "PROGRAMS", "build", "get_backend", "module_header",
           "register_backend"]
