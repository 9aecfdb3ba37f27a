"""Max-pooling's backward rule, from differentiating Max.

Takes: a ``MaxPool`` layer and its context.  Gives: ``PoolEquations``: a[c,i,j] = Max over the window of
x[c, i·ph+p, j·pw+q]; ``sympy.diff`` of that Max by one element is a product of Heavisides, 1 at the window's
maximum and 0 elsewhere, so ∂C/∂x is ∂C/∂a at each window's maximum (on ties the first in row-major order).
For the sum-over-paths check (``symbp.derive.check``): ``UnrolledPool``, each unit the Max of its window, and
∂C/∂x from the equations' ``derivative`` of Max.

Pooling before the activation (network3's order): after a conv layer whose σ sympy shows to be non-decreasing
(``sympy.is_increasing`` on the reals), max σ(z) = σ(max z), so the kernels may pool z and apply σ (and σ′) to
the pooled values only, a quarter of them for 2x2 windows.  ``PoolEquations.pool_first`` says why (or is None);
the equations print it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy as sp

from symbp.derive.layers import LayerContext, UnrolledLayer, derive_layer, unit_symbol, unroll_layer
from symbp.derive.layers.conv import _image_shape
from symbp.derive.limits import run_optional
from symbp.derive.render import sup
from symbp.layers.conv import Conv2D
from symbp.layers.pool import AvgPool, MaxPool
from symbp.layers.recognise import as_correlation, as_window_max
from symbp.symbols import z


@dataclass(frozen=True)
class PoolEquations:
    index: int
    layer: MaxPool
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    derivative: sp.Expr  # ∂ max(x₀, …) / ∂x₀, as sympy gives it
    back_text: str | None = None
    back_latex: str | None = None
    is_output: bool = False
    has_params: bool = False
    #: why the previous (conv) layer's σ may follow this pooling (σ non-decreasing, shown by sympy), else None
    pool_first: str | None = None
    activation = None

    @property
    def notes(self) -> tuple[str, ...]:
        notes = (f"max-pooling {self.layer.window[0]}x{self.layer.window[1]}: ∂max/∂x₀ = {self.derivative} "
                 "(sympy), so the gradient goes to each window's maximum (the first in row-major order on ties); "
                 "rows and columns that do not fill a window get none.",)
        if self.pool_first:
            notes += (self.pool_first,)
        return notes

    def _window_index(self, star: str = "") -> tuple[str, str]:
        """The input row and column a window element is read from: 2i+p, 2j+q (``star``: 2i+p*, 2j+q*)."""
        (ph, pw) = self.layer.window
        return (f"{ph if ph > 1 else ''}i+p{star}", f"{pw if pw > 1 else ''}j+q{star}")

    def _out(self, style: str = "text") -> str:
        return ("x" if style == "text" else r"\times ").join(map(str, self.out_shape))

    @property
    def forward(self) -> str:
        l, (ph, pw) = self.index, self.layer.window
        r, c = self._window_index()
        return (f"a{sup(l)}[c,i,j] = max_{{p<{ph},q<{pw}}} a{sup(l - 1)}[c,{r},{c}]   "
                f"(max-pool {ph}x{pw} → {self._out()})")

    @property
    def forward_latex(self) -> str:
        l, (ph, pw) = self.index, self.layer.window
        r, c = self._window_index()
        return (r"a^{%d}_{c,i,j} = \max_{p<%d,q<%d} a^{%d}_{c,%s,%s}\ \text{(max-pool } %d\times %d \to %s\text{)}"
                % (l, ph, pw, l - 1, r, c, ph, pw, self._out("latex")))

    def grad_in(self, back_text, back_latex):
        """∂C/∂aˡ⁻¹, by name: the pooling's row (``backward_rows``) states it."""
        l = self.index
        return f"∂C/∂a{sup(l - 1)}", r"\frac{\partial C}{\partial a^{%d}}" % (l - 1)

    def backward_rows(self, back_text, back_latex):
        """∂C/∂aˡ⁻¹ at each window's first maximum is ∂C/∂aˡ there, 0 elsewhere (and ∂C/∂aˡ itself when it comes
        from a dense layer: ((wˡ⁺¹)ᵀ δˡ⁺¹) as an image)."""
        l, p = self.index, self.index - 1
        r, c = self._window_index("*")
        rl, cl = self._window_index(r"^{\ast}")
        own, own_l = f"∂C/∂a{sup(l)}", r"\frac{\partial C}{\partial a^{%d}}" % l
        txt = (f"∂C/∂a{sup(p)}[c,{r},{c}] = ∂C/∂a{sup(l)}[c,i,j], (p*,q*) the first maximum of the window of "
               f"(c,i,j); 0 elsewhere")
        ltx = (r"\frac{\partial C}{\partial a^{%d}_{c,%s,%s}} = \frac{\partial C}{\partial a^{%d}_{c,i,j}} \quad "
               r"((p^{\ast},q^{\ast})\ \text{the first maximum of the window of}\ (c,i,j);\ 0\ \text{elsewhere})"
               % (p, rl, cl, l))
        if back_text and back_text != own:
            txt += f";  ∂C/∂a{sup(l)} = {back_text} as {self._out()}"
            ltx += r", \quad %s = %s" % (own_l, back_latex)
        return [("max-pool", txt, ltx)]

    bp3 = ""
    bp4 = ""


@derive_layer.register
def _(layer: AvgPool, ctx: LayerContext):
    return derive_layer(layer.declaration(ctx.in_shape), ctx)  # the layer is its declaration


@derive_layer.register
def _(layer: MaxPool, ctx: LayerContext) -> PoolEquations:
    if not layer.plain:  # overlapping or padded windows: the layer is its declaration
        return derive_layer(layer.declaration(ctx.in_shape), ctx)
    if ctx.is_output:
        raise ValueError(f"layer {ctx.index}: a MaxPool output layer is not supported; end with sb.Dense(n, ...)")
    xs = sp.symbols(f"x0:{min(4, layer.window[0] * layer.window[1])}", real=True)
    return PoolEquations(ctx.index, layer, ctx.in_shape, ctx.out_shape, sp.diff(sp.Max(*xs), xs[0]),
                         ctx.back_text, ctx.back_latex, pool_first=_pool_first(ctx))


def _pool_first(ctx: LayerContext) -> str | None:
    """Why this pooling may run before the previous conv layer's σ, or None: σ must be non-decreasing on the
    reals, shown by sympy within the derivation budget (not shown in time: pooling stays after σ).  A declared
    layer counts as the convolution or pooling whose map it equals (``symbp.layers.recognise``)."""
    prev = ctx.network.layers[ctx.index - 1]
    plain_conv = isinstance(prev, Conv2D) and prev.plain  # lowered by the conv kind, which can leave σ to the pool
    if not (plain_conv or as_correlation(prev, _geometry_of(prev, ctx.network.shapes[ctx.index - 2]))) \
            or not _non_decreasing(prev.activation.expr):
        return None
    l = ctx.index
    strict = _strictly_increasing(prev.activation.expr)
    ties = ("σ is strictly increasing, so the maximum is at the same place" if strict else
            "σ is not strictly increasing: where a window's values tie in σ(z) on a flat part of σ, the gradient "
            "goes to the largest z (times σ′ there) instead of the first tie")
    this = ctx.network.layers[l]
    ph, pw = this.window if isinstance(this, MaxPool) else as_window_max(this, _geometry_of(this, ctx.in_shape)).window
    return (f"pooling before σ: layer {l - 1}'s σ = {prev.activation.name} is non-decreasing (sympy: "
            f"is_increasing on the reals), so a{sup(l)} = max σ(z{sup(l - 1)}) = σ(max z{sup(l - 1)}): the kernels "
            f"pool z{sup(l - 1)} and apply σ and σ′ to the pooled values only (1/{ph * pw} of them); {ties}.")


def _geometry_of(layer, in_shape):
    return layer.geometry(in_shape) if hasattr(layer, "geometry") else None


@functools.lru_cache(maxsize=64)
def _non_decreasing(expr: sp.Expr) -> bool:
    value, done = run_optional(lambda: sp.is_increasing(expr, sp.S.Reals, z), share=0.25, seconds=2.0)
    return bool(done and value is True)


@functools.lru_cache(maxsize=64)
def _strictly_increasing(expr: sp.Expr) -> bool:
    value, done = run_optional(lambda: sp.is_strictly_increasing(expr, sp.S.Reals, z), share=0.25, seconds=2.0)
    return bool(done and value is True)


# ------------------------------------------------------------------------- unrolled, for the sum over paths


class UnrolledPool(UnrolledLayer):
    """Max-pooling unit by unit: a[c,i,j] = Max(x[c, i·ph + p, j·pw + q] for p < ph, q < pw), images flattened in
    (channel, row, column) order; rows and columns that fill no window feed no unit.  No parameters.
    ``backprop`` applies the equations' ``derivative`` (∂ Max(x₀, x₁, …)/∂x₀, as sympy gives it) to each window
    element in turn, the element as x₀ and the others as x₁, x₂, …; sympy writes it as a Heaviside of x₀ minus
    the Max of the others, which the check evaluates as 1 when positive (at random points no two differ by 0)."""

    def __init__(self, layer: MaxPool, index: int, inputs: list):
        self.layer, self.index = layer, index
        self.in_shape = _image_shape(inputs, index, "MaxPool")
        self.inputs = list(inputs)
        self.out_shape = layer.out_shape(self.in_shape)
        self.params, self.constants, self.hidden = [], [], []
        self.outputs = [unit_symbol(f"a{index}_{u}") for u in range(len(self.windows))]

    @property
    def windows(self) -> list[list[int]]:
        """For each output unit (flat), the flat input units of its window in row-major order."""
        (c, h, w), (ph, pw) = self.in_shape, self.layer.window
        _, ho, wo = self.out_shape
        return [[(c_ * h + i * ph + p) * w + j * pw + q for p in range(ph) for q in range(pw)]
                for c_ in range(c) for i in range(ho) for j in range(wo)]

    def in_hidden(self, inputs):
        return [sp.Max(*(inputs[k] for k in win)) for win in self.windows]

    def forward(self, inputs):
        return self.in_hidden(inputs)

    def backprop(self, eq, g, output):
        """∂C/∂xₖ = ∂C/∂a_u · ∂Max/∂xₖ for the window u holding k (the equations' ``derivative`` with xₖ as x₀ and
        the window's other elements as x₁, x₂, … — the last of its symbols standing for the Max of all the rest
        when the window has more elements than it); 0 for an element in no window."""
        if g is None:
            raise ValueError(f"layer {self.index}: a MaxPool cannot be the output layer")
        d = eq.derivative
        xs = sorted((s for s in d.free_symbols if s.name.startswith("x")), key=lambda s: int(s.name[1:]))
        g_in = [sp.Integer(0)] * len(self.inputs)
        for u, win in enumerate(self.windows):
            for k in win:
                others = [self.inputs[o] for o in win if o != k]
                rep = {xs[0]: self.inputs[k]} if xs else {}  # a 1x1 window: ∂max/∂x₀ = 1
                if len(others) + 1 < len(xs):
                    raise ValueError(f"layer {self.index}: ∂max/∂x₀ = {d} has more arguments than the window")
                for s, o in zip(xs[1:-1], others):
                    rep[s] = o
                if len(xs) > 1:
                    rep[xs[-1]] = sp.Max(*others[len(xs) - 2:])
                g_in[k] = g[u] * d.xreplace(rep)
        return {}, g_in


@unroll_layer.register
def _(layer: MaxPool, index: int, inputs: list) -> UnrolledPool:
    if not layer.plain:
        return unroll_layer(layer.declaration(tuple(getattr(inputs, "shape", (len(inputs),)))), index, inputs)
    return UnrolledPool(layer, index, inputs)


@unroll_layer.register
def _(layer: AvgPool, index: int, inputs: list):
    return unroll_layer(layer.declaration(tuple(getattr(inputs, "shape", (len(inputs),)))), index, inputs)
