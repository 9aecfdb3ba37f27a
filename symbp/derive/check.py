"""An independent check of the derived BP1–BP4: the book's sum over paths, unit by unit.

Takes: a tiny ``Network`` (at most ``MAX_UNITS`` units per flat layer and ``MAX_IMAGE_UNITS`` per image-shaped
one, ``MAX_LAYERS`` weighted layers, of any layer kinds that register ``symbp.derive.layers.unroll_layer``: dense,
dropout, conv2d, maxpool).
Gives: ``sum_over_paths_gradients`` — ∂C/∂wˡⱼₖ and ∂C/∂bˡⱼ of the network unrolled into scalar sympy
expressions and differentiated by the chain rule over every path (the formula at the end of chapter 2 of
Nielsen's book); ``bp_gradients`` — the same gradients evaluated from ``network.equations()`` (BP1–BP4);
``compare`` — proves they agree, symbolically where sympy can decide within a time budget, otherwise
numerically at random points in 30-digit arithmetic, and reports which method proved each gradient.

The check iterates over layers without knowing their kinds: each kind's ``unroll_layer`` writes its forward
map out per unit (``UnrolledLayer``: parameters, fixed constants such as dropout masks, placeholders) and its
``backprop`` applies the layer's equations object to it.  Nothing here calls ``symbp.derive.calculus``: every
local factor is ``sympy.diff`` of one unit's own expression with respect to one of its own inputs, and the
cost gradient is ``sympy.diff`` of the cost.

Symbols (indices 0-based, matching ``Wˡ[j, k]``; layers numbered by position, the input is 0): ``w{l}_{j}{k}``,
``b{l}_{j}``, ``x{k}``, ``y{j}``, dropout masks ``m{l}_{j}`` (fixed 0/1 values: symbolic in the returned
gradients and the symbolic check, random 0/1 at the numeric points); the unrolled forward pass uses
placeholders ``a{l}_{j}`` for every layer's outputs and, in the "z" form, independent symbols ``z{l}_{j}`` for
the weighted inputs (bˡⱼ ↔ zˡⱼ is a bijection once w, the masks and aˡ⁻¹ are fixed, so an identity in
(x, w, z, m, y) is an identity in (x, w, b, m, y)).  A convolution's weights are ``w{l}_{f}{c}{p}{q}`` and its
biases ``b{l}_{f}``; a bias is shared by all units of its map, so its "z" form keeps b beside independent zˡ (an
identity there still holds at the forward pass's values) and max-pooling is decided by the numbers.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property

import mpmath
import sympy as sp

from symbp import limits
from symbp.derive.layers import OutputErrorAt, Units, UnrolledLayer, unroll_layer
from symbp.symbols import a as _a
from symbp.symbols import y as _y

MAX_UNITS = 4
MAX_LAYERS = 4
#: units of an image-shaped layer (an image input, a convolution, a pooling or a dropout on an image): a unit of a
#: convolution or pooling reads only the few units under its window, so the paths through such layers stay few
#: (a path through a zero local factor is skipped) where a dense layer of that width would multiply them
MAX_IMAGE_UNITS = 16


def _sym(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


def _heaviside_to_piecewise(expr: sp.Expr) -> sp.Expr:
    """Heaviside(u) → 1 if u > 0 else 0 (the value at the kink is a convention; random points avoid it)."""
    return expr.replace(
        lambda e: isinstance(e, sp.Heaviside),
        lambda e: sp.Piecewise((sp.Integer(1), e.args[0] > 0), (sp.Integer(0), True)),
    )


class Unrolled:
    """One tiny network written out unit by unit, layer by layer through each kind's ``unroll_layer``.

    ``units[l]`` is layer l's ``UnrolledLayer`` (l = 1..L); ``A[l]`` its output placeholders (``A[0]`` = x),
    ``Z[l]`` its independent intermediate symbols (a dense layer's weighted inputs; empty for dropout),
    ``w[l]``/``b[l]`` a dense layer's weights and biases, ``constants`` the fixed symbols (dropout masks).
    """

    def __init__(self, network):
        sizes = list(network.sizes)
        weighted = sum(1 for layer, shape in zip(network.layers[1:], network.shapes) if layer.param_specs(shape))
        wide = any(n > (MAX_IMAGE_UNITS if len(shape) == 3 else MAX_UNITS) for n, shape in zip(sizes, network.shapes))
        if weighted > MAX_LAYERS or len(sizes) - 1 > 2 * MAX_LAYERS or wide:
            raise ValueError(
                f"sum over paths is for tiny networks (≤ {MAX_UNITS} units per flat layer and ≤ {MAX_IMAGE_UNITS} "
                f"per image-shaped one, ≤ {MAX_LAYERS} weighted layers, ≤ {2 * MAX_LAYERS} layers in all); "
                f"got sizes {sizes}"
            )
        self.network = network
        self.sizes = sizes
        self.L = L = len(sizes) - 1
        self.acts = {l: network.layers[l].activation for l in range(1, L + 1)
                     if network.layers[l].activation is not None}
        self.x = [_sym(f"x{k}") for k in range(sizes[0])]
        self.units: dict[int, UnrolledLayer] = {}
        prev = Units(self.x, network.shapes[0])
        for l in range(1, L + 1):
            self.units[l] = unit = unroll_layer(network.layers[l], l, prev)
            if len(unit.outputs) != sizes[l]:  # pragma: no cover (a kind's rule disagreeing with its shapes)
                raise ValueError(f"layer {l}: unrolled to {len(unit.outputs)} units, its shape says {sizes[l]}")
            prev = Units(unit.outputs, network.shapes[l])
        self.y = [_sym(f"y{j}") for j in range(sizes[L])]
        # Placeholders: a⁰ = x; aˡ (l ≥ 1) and zˡ are symbols here, replaced by one of the two forms below.
        self.A = {0: self.x} | {l: list(unit.outputs) for l, unit in self.units.items()}
        self.Z = {l: list(unit.hidden) for l, unit in self.units.items()}
        self.w = {l: unit.w for l, unit in self.units.items() if hasattr(unit, "w")}
        self.b = {l: unit.b for l, unit in self.units.items() if hasattr(unit, "b")}
        self._layer_of = {p: l for l, unit in self.units.items() for p in unit.params}

    @property
    def parameters(self) -> list[sp.Symbol]:
        """Every layer's parameters in order (w¹, b¹, w², b², … for a dense net, each flattened row by row)."""
        return [p for unit in self.units.values() for p in unit.params]

    @property
    def constants(self) -> list[sp.Symbol]:
        """Symbols held fixed (dropout masks): symbolic in the symbolic forms, drawn at the numeric points."""
        return [c for unit in self.units.values() for c in unit.constants]

    @property
    def hidden(self) -> list[sp.Symbol]:
        """The "z" form's independent symbols, every layer's."""
        return [s for unit in self.units.values() for s in unit.hidden]

    def parameter_layer(self, p: sp.Symbol) -> int:
        return self._layer_of[p]

    def weighted_input(self, l: int, j: int, prev=None) -> sp.Expr:
        """zˡⱼ = Σₖ wˡⱼₖ aˡ⁻¹ₖ + bˡⱼ of dense layer l, with aˡ⁻¹ the placeholders (or ``prev``)."""
        return self.units[l].weighted_input(j, prev)

    def activate(self, l: int, zs: list[sp.Expr]) -> list[sp.Expr]:
        """aˡ of dense layer l from the weighted inputs ``zs``: σ elementwise, or normalised (softmax)."""
        return self.units[l].activate(zs)

    def local(self, l: int) -> list[sp.Expr]:
        """Each unit's own expression aˡ_q(aˡ⁻¹, layer l's parameters and constants) in the placeholders of l − 1."""
        return self.units[l].forward(self.A[l - 1])

    @cached_property
    def forward(self) -> tuple[dict, dict]:
        """(zˡⱼ, aˡⱼ) as expressions in x, w, b (and the constants) only; zˡ empty for a layer without."""
        fa, fz = {0: list(self.x)}, {}
        for l, unit in self.units.items():
            fz[l] = unit.hidden_exprs(fa[l - 1])
            fa[l] = unit.forward(fa[l - 1])
        return fz, fa

    def to_xwb(self, expr: sp.Expr) -> sp.Expr:
        """Placeholders aˡⱼ, zˡⱼ replaced by the forward pass in x, w, b (and the constants)."""
        fz, fa = self.forward
        rep = {}
        for l in range(1, self.L + 1):
            rep.update(zip(self.A[l], fa[l]))
            rep.update(zip(self.Z[l], fz[l]))
        if expr.has(sp.Piecewise):
            with sp.evaluate(False):  # re-evaluating piecewise conditions on nested expressions is slow
                return expr.xreplace(rep)
        return expr.xreplace(rep)

    @cached_property
    def _z_form(self) -> dict:
        rep = {}
        for l, unit in self.units.items():  # aˡ in zˡ, and in the earlier layers' z form where it reads aˡ⁻¹
            rep.update(zip(self.A[l], (e.xreplace(rep) for e in unit.in_hidden(self.A[l - 1]))))
        return rep

    def to_z(self, expr: sp.Expr) -> sp.Expr:
        """Placeholders aˡⱼ replaced by σ(zˡⱼ) (a layer without zˡ: its map of the previous layer's), the zˡⱼ
        kept as independent symbols."""
        return expr.xreplace(self._z_form)

    def eliminate_biases(self, expr: sp.Expr) -> sp.Expr:
        """bˡⱼ → zˡⱼ − Σₖ wˡⱼₖ aˡ⁻¹ₖ: every occurrence of a unit's weighted input collapses to zˡⱼ."""
        rep = {}
        for unit in self.units.values():
            rep.update(unit.eliminate())
        return expr.xreplace(rep)

    def cost(self) -> sp.Expr:
        """C = Σⱼ c(aᴸⱼ, yⱼ) in the output placeholders."""
        c = self.network.cost.expr
        return sp.Add(*(c.xreplace({_a: aj, _y: yj}) for aj, yj in zip(self.A[self.L], self.y)))

    def one_hot_substitution(self) -> dict:
        """y_last = 1 − Σ the others: the assumption Σⱼ yⱼ = 1 of a one-hot target."""
        return {self.y[-1]: 1 - sp.Add(*self.y[:-1])}


def _in_form(u: Unrolled, grads: dict, form: str) -> dict:
    if form == "placeholders":
        return grads
    if form == "xwb":
        return {p: u.to_xwb(e) for p, e in grads.items()}
    if form == "z":
        return {p: u.to_z(e) for p, e in grads.items()}
    raise ValueError(f"form must be 'xwb', 'z' or 'placeholders', got {form!r}")


def _path_placeholder_gradients(u: Unrolled) -> dict:
    L, sizes = u.L, u.sizes
    local = {l: u.local(l) for l in range(1, L + 1)}
    cost = u.cost()
    dC = [sp.diff(cost, am) for am in u.A[L]]  # ∂C/∂aᴸₘ

    factors: dict = {}

    def factor(l: int, q: int, n: int) -> sp.Expr:
        """∂aˡ_q/∂aˡ⁻¹ₙ: unit q of layer l differentiated with respect to its own input aˡ⁻¹ₙ."""
        key = (l, q, n)
        if key not in factors:
            factors[key] = sp.diff(local[l][q], u.A[l - 1][n])
        return factors[key]

    def paths(l: int, q: int):
        """Every path q → m_{l+1} → … → m_L from unit q of layer l, as the tuple of units; a path through a
        zero local factor (dropout's off-diagonal ∂aˡ_q/∂aˡ⁻¹ₙ, q ≠ n) contributes 0 and is skipped."""
        if l == L:
            yield (q,)
            return
        for m in range(sizes[l + 1]):
            if factor(l + 1, m, q) != 0:
                for rest in paths(l + 1, m):
                    yield (q, *rest)

    grads = {}
    for p in u.parameters:
        l = u.parameter_layer(p)
        terms = []
        for q in range(sizes[l]):
            dq = sp.diff(local[l][q], p)  # ∂aˡ_q/∂p (zero unless q = j, or the layer is normalised)
            if dq == 0:
                continue
            for units in paths(l, q):
                term = dC[units[-1]] * dq
                for step, i in enumerate(range(l + 1, L + 1), start=1):
                    term *= factor(i, units[step], units[step - 1])
                terms.append(term)
        grads[p] = _heaviside_to_piecewise(sp.Add(*terms))
    return grads


def sum_over_paths_gradients(network, form: str = "xwb") -> dict:
    """∂C/∂p for every parameter p of a tiny ``network`` (every weight and bias), by the chain rule over every path.

    ∂C/∂wˡⱼₖ = Σ_{q, m, …, n} ∂C/∂aᴸₙ ⋯ ∂aˡ⁺¹ₘ/∂aˡ_q · ∂aˡ_q/∂wˡⱼₖ, each local factor ``sympy.diff`` of one
    unit's expression in its own inputs (a dropout unit's is mⱼ/(1 − p), the mask symbols ``m{l}_{j}`` kept).
    ``form``: "xwb" (in x, w, b, y), "z" (biases eliminated in favour of independent weighted inputs zˡⱼ,
    activations written σ(zˡⱼ)) or "placeholders".  Returns {parameter symbol: expression}.
    """
    u = Unrolled(network)
    grads = _path_placeholder_gradients(u)
    if form == "z":
        return {p: u.to_z(u.eliminate_biases(e)) for p, e in grads.items()}
    return _in_form(u, grads, form)


def _bp_placeholder_gradients(u: Unrolled) -> dict:
    eqs = u.network.equations()
    L = u.L
    out = eqs.output_error
    extra = {}
    if any(s.name == "S" for s in out.free_symbols):
        S = next(s for s in out.free_symbols if s.name == "S")
        dc = sp.diff(u.network.cost.expr, _a)  # S = Σₖ aₖ ∂C/∂aₖ, from the cost itself
        extra[S] = sp.Add(*(ak * dc.xreplace({_a: ak, _y: yk}) for ak, yk in zip(u.A[L], u.y)))
    output = OutputErrorAt(out, u.y, extra)
    grads = {}
    g = None  # ∂C/∂aˡⱼ from layer l + 1 (none above the output layer)
    for l in range(L, 0, -1):
        layer_grads, g = u.units[l].backprop(eqs.layers[l - 1], g, output)
        grads.update(layer_grads)
    return {p: _heaviside_to_piecewise(grads[p]) for p in u.parameters}


def bp_gradients(network, form: str = "xwb") -> dict:
    """∂C/∂p from BP1–BP4 as derived by ``network.equations()``, for every parameter p.

    Each layer's ``backprop`` (its kind's rule, ``symbp.derive.layers``), output layer first: δᴸ is
    ``.output_error`` with a, y, z replaced per unit (and S by Σₖ aₖ ∂C/∂aₖ of the cost when it appears); a
    hidden dense layer's δˡ = g ⊙ σ′ with its ``.activation_derivative``, g = ∂C/∂aˡ from the layer after it
    ((wˡ⁺¹)ᵀδˡ⁺¹ from a dense one, the equations' ``factor`` ⊙ ∂C/∂aˡ⁺¹ from dropout); ∂C/∂bˡⱼ = δˡⱼ and
    ∂C/∂wˡⱼₖ = aˡ⁻¹ₖ δˡⱼ.  ``form`` as for ``sum_over_paths_gradients``.
    """
    u = Unrolled(network)
    return _in_form(u, _bp_placeholder_gradients(u), form)


# ----------------------------------------------------------------------------------------------- compare


@dataclass(frozen=True)
class GradientCheck:
    """How the two routes were shown to agree for one parameter."""

    parameter: str
    method: str  # "symbolic" | "numeric" | "failed"
    max_error: float  # largest error over the numeric points (relative; see ``compare``)
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.method != "failed"


@dataclass
class CheckResult:
    """The outcome of ``compare``: one ``GradientCheck`` per parameter."""

    network: object
    gradients: list[GradientCheck]
    one_hot: bool
    points: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(gc.ok for gc in self.gradients)

    @property
    def methods(self) -> Counter:
        return Counter(gc.method for gc in self.gradients)

    @property
    def failures(self) -> list[GradientCheck]:
        return [gc for gc in self.gradients if not gc.ok]

    def __getitem__(self, name: str) -> GradientCheck:
        for gc in self.gradients:
            if gc.parameter == name:
                return gc
        raise KeyError(name)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        how = ", ".join(f"{n} {m}" for m, n in sorted(self.methods.items()))
        head = (f"{'OK' if self.ok else 'MISMATCH'}: {self.network!r}: {len(self.gradients)} gradients "
                f"({how}) in {self.seconds:.1f}s" + ("; one-hot targets assumed" if self.one_hot else ""))
        lines = [head] + [f"  {gc.parameter}: {gc.method} (max error {gc.max_error:.1e}) {gc.detail}".rstrip()
                          for gc in self.gradients]
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


_NONSMOOTH = (sp.Piecewise, sp.Heaviside, sp.Max, sp.Min, sp.Abs, sp.sign)


def _exp_to_symbols(expr: sp.Expr, zs: list[sp.Symbol]) -> sp.Expr:
    """exp(Σ cᵢ zᵢ + r) → Π Eᵢ^cᵢ · exp(r) with positive symbols Eᵢ = exp(zᵢ): exp(z) and exp(−z) then
    share one generator, and an identity between the two routes becomes one between rational functions."""
    E = {zi: sp.Dummy(f"E_{zi.name}", positive=True) for zi in zs}

    def split(e):
        out, rest = sp.Integer(1), []
        for t in sp.Add.make_args(sp.expand(e.args[0])):
            c, v = t.as_coeff_Mul()
            if v in E and c.is_Rational:
                out *= E[v] ** c
            else:
                rest.append(t)
        return out * sp.exp(sp.Add(*rest))

    return expr.replace(lambda e: isinstance(e, sp.exp), split)


def _symbolic_zero(diff: sp.Expr, zs: list[sp.Symbol], seconds: float) -> tuple[bool | None, str]:
    """Is ``diff`` identically zero?  (True, how) when proved, (None, why not) when undecided.

    sympy's simplification is incomplete, so a difference it leaves non-zero does not prove a mismatch:
    that decision is left to the numbers."""
    if diff == 0:
        return True, "identical after substitution"
    if diff.has(*_NONSMOOTH):
        return None, "piecewise/non-smooth: left to the numeric check"
    if seconds <= 0:
        return None, "symbolic time budget spent"

    def attempt() -> tuple[bool | None, str]:
        r = _exp_to_symbols(diff.rewrite(sp.exp), zs)
        if sp.expand(sp.fraction(sp.together(r))[0]) == 0:
            return True, "exp(zˡⱼ) as symbols, common denominator, numerator expands to 0"
        if sp.simplify(r) == 0:
            return True, "simplify"
        return None, "sympy did not reduce the difference to 0"

    # The derivation's own guard (a timer thread, any thread, an interrupt sympy's ``except Exception`` cannot
    # swallow, and one landing in a finalizer dropped quietly): running out of time only leaves the
    # decision to the numbers.
    # (outside the try: a bad SYMBP_DERIVE_SECONDS is the user's error to see, not sympy's failure)
    with limits.budget(seconds=seconds if math.isfinite(seconds) else 1e9):
        try:
            result, finished = limits.run_optional(attempt, seconds=seconds)
        except (sp.PolynomialError, NotImplementedError, TypeError, ValueError, RecursionError) as exc:
            return None, f"sympy could not simplify: {type(exc).__name__}"
    if not finished:
        return None, f"symbolic simplification timed out ({seconds:.1f}s)"
    return result


def _random_points(u: Unrolled, n: int, seed: int, one_hot: bool) -> list[dict]:
    rng = random.Random(seed)
    pts = []
    for i in range(n):
        env = {}
        for xk in u.x:
            env[xk] = rng.uniform(-1.0, 1.0)
        for unit in u.units.values():  # each kind draws its parameters and constants (dropout: 0/1 masks)
            env.update(unit.random_values(rng, i))
        if one_hot:
            hot = (seed + i) % len(u.y) if i < len(u.y) else rng.randrange(len(u.y))
            env.update({yj: float(j == hot) for j, yj in enumerate(u.y)})
        else:
            env.update({yj: rng.uniform(0.05, 0.95) for yj in u.y})
        pts.append(env)
    return pts


def _evaluate(u: Unrolled, exprs: list[sp.Expr], points: list[dict], digits: int) -> list[list]:
    """``exprs`` (in the placeholders) at each point, the placeholders aˡⱼ, zˡⱼ taken from a forward pass
    computed unit by unit at the same precision — the composition that ``to_xwb`` writes out, without
    building the nested expressions."""
    base = list(u.x) + list(u.y) + u.parameters + u.constants
    holders = [s for l in range(1, u.L + 1) for s in u.A[l] + u.Z[l]]
    f = sp.lambdify(base + holders, exprs, modules="mpmath", cse=True)
    layer_fns = {}
    for l, unit in u.units.items():
        ins = list(u.A[l - 1]) + list(unit.params) + list(unit.constants)
        fz = sp.lambdify(ins, unit.hidden_exprs(u.A[l - 1]), modules="mpmath") if unit.hidden else None
        layer_fns[l] = (ins, fz, sp.lambdify(list(unit.hidden) + ins, unit.in_hidden(u.A[l - 1]), modules="mpmath"))
    out = []
    with mpmath.workdps(digits):
        for env in points:
            env = {s: mpmath.mpf(v) for s, v in env.items()}
            try:
                for l, unit in u.units.items():
                    ins, fz, fa = layer_fns[l]
                    args = [env[s] for s in ins]
                    zv = list(fz(*args)) if fz is not None else []
                    env.update(zip(unit.hidden, zv))
                    env.update(zip(unit.outputs, list(fa(*zv, *args))))
                out.append(list(f(*(env[s] for s in base + holders))))
            except (ZeroDivisionError, ValueError, OverflowError) as exc:
                out.append([exc] * len(exprs))
    return out


def _error(p, q) -> float:
    """|p − q| / max(|p|, |q|, 1e-6): relative for gradients ≥ 1e-6, scaled absolute below."""
    if isinstance(p, Exception) or isinstance(q, Exception):
        return float("inf")
    p, q = mpmath.mpmathify(p), mpmath.mpmathify(q)
    if not (mpmath.isfinite(p) and mpmath.isfinite(q)):
        return float("inf")
    scale = max(abs(p), abs(q), mpmath.mpf("1e-6"))
    return float(abs(p - q) / scale)


def compare(network, points: int = 4, seed: int = 0, digits: int = 30, tol: float = 1e-20,
            time_budget: float = 6.0, per_gradient: float = 1.0, symbolic: bool = True,
            one_hot: bool | None = None) -> CheckResult:
    """Check that BP1–BP4 (``bp_gradients``) equal the sum over paths (``sum_over_paths_gradients``).

    Symbolically: the difference in the "z" form (independent zˡⱼ, aˡⱼ = σ(zˡⱼ); y_last = 1 − Σ others
    when the equations assume one-hot targets) with exp(zˡⱼ) as symbols over a common denominator (then
    ``sympy.simplify``), within ``per_gradient`` seconds each and ``time_budget`` seconds in all; skipped
    for piecewise / non-smooth networks.  Numerically, always: both routes evaluated with mpmath at
    ``digits`` digits at ``points`` random (x, w, b, y) (one-hot y when assumed), aˡ and zˡ from a forward
    pass at the same precision; the error |p − q| / max(|p|, |q|, 1e-6) must stay below ``tol``.  Dropout
    masks stay symbols in the symbolic check (an identity for every mask) and are 0/1 values at the numeric
    points: all kept at the first, one unit dropped in turn at the next n (n units), random after that.

    A gradient is "symbolic" when proved symbolically (and the numbers agree), "numeric" when only the
    numbers decide, "failed" when the numbers disagree.  ``one_hot`` overrides the equations' own
    assumption (to show that it matters).
    """
    start = time.perf_counter()
    u = Unrolled(network)
    eqs = network.equations()
    one_hot = bool(eqs.assumes_one_hot) if one_hot is None else bool(one_hot)
    path_ph = _path_placeholder_gradients(u)
    bp_ph = _bp_placeholder_gradients(u)
    params = u.parameters

    notes = []
    if one_hot:
        notes.append("one-hot targets assumed: y_last = 1 − Σ others symbolically, one-hot y "
                     "at the numeric points")

    sym_result: dict = {}
    if symbolic:
        oh = u.one_hot_substitution() if one_hot else {}
        budget_end = time.perf_counter() + time_budget
        zs = u.hidden
        nonsmooth = any(e.has(*_NONSMOOTH) for l, unit in u.units.items() for e in unit.in_hidden(u.A[l - 1]))
        for p in params:
            if nonsmooth or path_ph[p].has(*_NONSMOOTH) or bp_ph[p].has(*_NONSMOOTH):
                sym_result[p] = (None, "piecewise/non-smooth: left to the numeric check")
                continue
            pz = u.to_z(u.eliminate_biases(path_ph[p]))
            bz = u.to_z(bp_ph[p])
            diff = (pz - bz).xreplace(oh) if oh else pz - bz
            remaining = budget_end - time.perf_counter()
            sym_result[p] = _symbolic_zero(diff, zs, min(per_gradient, remaining))

    pts = _random_points(u, points, seed, one_hot)
    exprs = [path_ph[p] for p in params] + [bp_ph[p] for p in params]
    values = _evaluate(u, exprs, pts, digits)
    n = len(params)
    checks = []
    for i, p in enumerate(params):
        err = max(_error(v[i], v[n + i]) for v in values)
        proved, why = sym_result.get(p, (None, "symbolic check off"))
        if err >= tol:
            method, detail = "failed", f"numeric error {err:.1e} ≥ {tol:.0e}; symbolic: {why}"
        elif proved:
            method, detail = "symbolic", why
        else:
            method, detail = "numeric", f"{points} points at {digits} digits ({why})"
        checks.append(GradientCheck(p.name, method, err, detail))
    return CheckResult(network, checks, one_hot, points, time.perf_counter() - start, notes)
