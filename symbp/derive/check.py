"""An independent check of the derived BP1–BP4: the book's sum over paths, unit by unit.

Takes: a tiny ``Network`` (at most ``MAX_UNITS`` units per layer, ``MAX_LAYERS`` weighted layers).
Gives: ``sum_over_paths_gradients`` — ∂C/∂wˡⱼₖ and ∂C/∂bˡⱼ of the network unrolled into scalar sympy
expressions and differentiated by the chain rule over every path (the formula at the end of chapter 2 of
Nielsen's book); ``bp_gradients`` — the same gradients evaluated from ``network.equations()`` (BP1–BP4);
``compare`` — proves they agree, symbolically where sympy can decide within a time budget, otherwise
numerically at random points in 30-digit arithmetic, and reports which method proved each gradient.

Nothing here calls ``symbp.derive.calculus``: every local factor is ``sympy.diff`` of one unit's own
expression with respect to one of its own inputs, and the cost gradient is ``sympy.diff`` of the cost.

Symbols (indices 0-based, matching ``Wˡ[j, k]``): ``w{l}_{j}{k}``, ``b{l}_{j}``, ``x{k}``, ``y{j}``; the
unrolled forward pass uses placeholders ``a{l}_{j}`` for activations and, in the "z" form, independent
symbols ``z{l}_{j}`` for the weighted inputs (bˡⱼ ↔ zˡⱼ is a bijection once w and aˡ⁻¹ are fixed, so an
identity in (x, w, z, y) is an identity in (x, w, b, y)).
"""

from __future__ import annotations

import itertools
import random
import signal
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

import mpmath
import sympy as sp

from symbp.symbols import a as _a
from symbp.symbols import y as _y
from symbp.symbols import z as _z

MAX_UNITS = 4
MAX_LAYERS = 4


def _sym(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


def _heaviside_to_piecewise(expr: sp.Expr) -> sp.Expr:
    """Heaviside(u) → 1 if u > 0 else 0 (the value at the kink is a convention; random points avoid it)."""
    return expr.replace(
        lambda e: isinstance(e, sp.Heaviside),
        lambda e: sp.Piecewise((sp.Integer(1), e.args[0] > 0), (sp.Integer(0), True)),
    )


class Unrolled:
    """One tiny network written out unit by unit."""

    def __init__(self, network):
        sizes = list(network.sizes)
        if len(sizes) - 1 > MAX_LAYERS or max(sizes) > MAX_UNITS:
            raise ValueError(
                f"sum over paths is for tiny networks (≤ {MAX_UNITS} units per layer, ≤ {MAX_LAYERS} weighted "
                f"layers); got sizes {sizes}"
            )
        self.network = network
        self.sizes = sizes
        self.L = L = len(sizes) - 1
        self.acts = {l: network.layers[l].activation for l in range(1, L + 1)}
        self.x = [_sym(f"x{k}") for k in range(sizes[0])]
        self.y = [_sym(f"y{j}") for j in range(sizes[L])]
        self.w = {l: [[_sym(f"w{l}_{j}{k}") for k in range(sizes[l - 1])] for j in range(sizes[l])]
                  for l in range(1, L + 1)}
        self.b = {l: [_sym(f"b{l}_{j}") for j in range(sizes[l])] for l in range(1, L + 1)}
        # Placeholders: a⁰ = x; aˡ (l ≥ 1) and zˡ are symbols here, replaced by one of the two forms below.
        self.A = {0: self.x} | {l: [_sym(f"a{l}_{j}") for j in range(sizes[l])] for l in range(1, L + 1)}
        self.Z = {l: [_sym(f"z{l}_{j}") for j in range(sizes[l])] for l in range(1, L + 1)}

    @property
    def parameters(self) -> list[sp.Symbol]:
        """w¹, b¹, w², b², … in order, each flattened row by row."""
        out = []
        for l in range(1, self.L + 1):
            out += [w for row in self.w[l] for w in row] + list(self.b[l])
        return out

    def parameter_layer(self, p: sp.Symbol) -> int:
        return int(p.name[1:].split("_")[0])

    def weighted_input(self, l: int, j: int, prev=None) -> sp.Expr:
        """zˡⱼ = Σₖ wˡⱼₖ aˡ⁻¹ₖ + bˡⱼ, with aˡ⁻¹ the placeholders (or ``prev``)."""
        prev = self.A[l - 1] if prev is None else prev
        return sp.Add(*(w * ak for w, ak in zip(self.w[l][j], prev))) + self.b[l][j]

    def activate(self, l: int, zs: list[sp.Expr]) -> list[sp.Expr]:
        """aˡ from the weighted inputs ``zs``: σ elementwise, or normalised over the layer (softmax)."""
        act = self.acts[l]
        f = [act.expr.xreplace({_z: zj}) for zj in zs]
        if act.vector:
            total = sp.Add(*f)
            return [fj / total for fj in f]
        return f

    def local(self, l: int) -> list[sp.Expr]:
        """Each unit's own expression aˡ_q(aˡ⁻¹, wˡ, bˡ) in the placeholders of layer l − 1."""
        return self.activate(l, [self.weighted_input(l, j) for j in range(self.sizes[l])])

    @cached_property
    def forward(self) -> tuple[dict, dict]:
        """(zˡⱼ, aˡⱼ) as expressions in x, w, b only."""
        fa, fz = {0: list(self.x)}, {}
        for l in range(1, self.L + 1):
            fz[l] = [self.weighted_input(l, j, fa[l - 1]) for j in range(self.sizes[l])]
            fa[l] = self.activate(l, fz[l])
        return fz, fa

    def to_xwb(self, expr: sp.Expr) -> sp.Expr:
        """Placeholders aˡⱼ, zˡⱼ replaced by the forward pass in x, w, b."""
        fz, fa = self.forward
        rep = {}
        for l in range(1, self.L + 1):
            rep.update(zip(self.A[l], fa[l]))
            rep.update(zip(self.Z[l], fz[l]))
        if expr.has(sp.Piecewise):
            with sp.evaluate(False):  # re-evaluating piecewise conditions on nested expressions is slow
                return expr.xreplace(rep)
        return expr.xreplace(rep)

    def to_z(self, expr: sp.Expr) -> sp.Expr:
        """Placeholders aˡⱼ replaced by σ(zˡⱼ), the zˡⱼ kept as independent symbols."""
        rep = {}
        for l in range(1, self.L + 1):
            rep.update(zip(self.A[l], self.activate(l, self.Z[l])))
        return expr.xreplace(rep)

    def eliminate_biases(self, expr: sp.Expr) -> sp.Expr:
        """bˡⱼ → zˡⱼ − Σₖ wˡⱼₖ aˡ⁻¹ₖ: every occurrence of a unit's weighted input collapses to zˡⱼ."""
        rep = {}
        for l in range(1, self.L + 1):
            for j in range(self.sizes[l]):
                rep[self.b[l][j]] = self.Z[l][j] - (self.weighted_input(l, j) - self.b[l][j])
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

    grads = {}
    for p in u.parameters:
        l = u.parameter_layer(p)
        terms = []
        for q in range(sizes[l]):
            dq = sp.diff(local[l][q], p)  # ∂aˡ_q/∂p (zero unless q = j, or the layer is normalised)
            if dq == 0:
                continue
            # every path q → m_{l+1} → … → m_L through the later layers
            for path in itertools.product(*(range(sizes[i]) for i in range(l + 1, L + 1))):
                units = (q, *path)
                term = dC[units[-1]] * dq
                for step, i in enumerate(range(l + 1, L + 1), start=1):
                    term *= factor(i, units[step], units[step - 1])
                terms.append(term)
        grads[p] = _heaviside_to_piecewise(sp.Add(*terms))
    return grads


def sum_over_paths_gradients(network, form: str = "xwb") -> dict:
    """∂C/∂p for every weight and bias p of a tiny ``network``, by the chain rule over every path.

    ∂C/∂wˡⱼₖ = Σ_{q, m, …, n} ∂C/∂aᴸₙ ⋯ ∂aˡ⁺¹ₘ/∂aˡ_q · ∂aˡ_q/∂wˡⱼₖ, each local factor ``sympy.diff`` of one
    unit's expression in its own inputs.  ``form``: "xwb" (in x, w, b, y), "z" (biases eliminated in
    favour of independent weighted inputs zˡⱼ, activations written σ(zˡⱼ)) or "placeholders".
    Returns {parameter symbol: expression}.
    """
    u = Unrolled(network)
    grads = _path_placeholder_gradients(u)
    if form == "z":
        return {p: u.to_z(u.eliminate_biases(e)) for p, e in grads.items()}
    return _in_form(u, grads, form)


def _bp_placeholder_gradients(u: Unrolled) -> dict:
    eqs = u.network.equations()
    L, sizes = u.L, u.sizes
    delta = {}
    out = eqs.output_error
    rep_common = {}
    if any(s.name == "S" for s in out.free_symbols):
        S = next(s for s in out.free_symbols if s.name == "S")
        dc = sp.diff(u.network.cost.expr, _a)  # S = Σₖ aₖ ∂C/∂aₖ, from the cost itself
        rep_common[S] = sp.Add(*(ak * dc.xreplace({_a: ak, _y: yk}) for ak, yk in zip(u.A[L], u.y)))
    delta[L] = [out.xreplace(rep_common | {_a: u.A[L][j], _y: u.y[j], _z: u.Z[L][j]}) for j in range(sizes[L])]
    for l in range(L - 1, 0, -1):
        sigma_prime = eqs.layers[l - 1].activation_derivative
        delta[l] = []
        for j in range(sizes[l]):
            back = sp.Add(*(u.w[l + 1][q][j] * delta[l + 1][q] for q in range(sizes[l + 1])))  # ((wˡ⁺¹)ᵀδˡ⁺¹)ⱼ
            delta[l].append(back * sigma_prime.xreplace({_a: u.A[l][j], _z: u.Z[l][j]}))
    grads = {}
    for l in range(1, L + 1):
        for j in range(sizes[l]):
            for k in range(sizes[l - 1]):
                grads[u.w[l][j][k]] = u.A[l - 1][k] * delta[l][j]  # BP4
        for j in range(sizes[l]):
            grads[u.b[l][j]] = delta[l][j]  # BP3
    return {p: _heaviside_to_piecewise(grads[p]) for p in u.parameters}


def bp_gradients(network, form: str = "xwb") -> dict:
    """∂C/∂p from BP1–BP4 as derived by ``network.equations()``, for every weight and bias p.

    δᴸ is ``.output_error`` with a, y, z replaced per unit (and S by Σₖ aₖ ∂C/∂aₖ of the cost when it
    appears); δˡ = ((wˡ⁺¹)ᵀδˡ⁺¹) ⊙ σ′ with each layer's ``.activation_derivative``; ∂C/∂bˡⱼ = δˡⱼ and
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


class _Timeout(Exception):
    pass


@contextmanager
def _time_limit(seconds: float):
    """Raise ``_Timeout`` after ``seconds``, and again every 50 ms until the block ends (SIGALRM; without a
    timer off the main thread)."""
    usable = (hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
              and signal.getitimer(signal.ITIMER_REAL)[0] == 0)
    if not usable:
        yield
        return

    def _raise(signum, frame):
        raise _Timeout

    old = signal.signal(signal.SIGALRM, _raise)
    # Repeat every 50 ms until disarmed: an exception raised while Python runs a callback it cannot propagate
    # from (a gc callback, a __del__) is printed and dropped, and a one-shot timer would then never stop us.
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3), 0.05)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


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
    try:
        with _time_limit(seconds):
            r = _exp_to_symbols(diff.rewrite(sp.exp), zs)
            if sp.expand(sp.fraction(sp.together(r))[0]) == 0:
                return True, "exp(zˡⱼ) as symbols, common denominator, numerator expands to 0"
            if sp.simplify(r) == 0:
                return True, "simplify"
            return None, "sympy did not reduce the difference to 0"
    except _Timeout:
        return None, f"symbolic simplification timed out ({seconds:.1f}s)"
    except (sp.PolynomialError, NotImplementedError, TypeError, ValueError, RecursionError) as exc:
        return None, f"sympy could not simplify: {type(exc).__name__}"


def _random_points(u: Unrolled, n: int, seed: int, one_hot: bool) -> list[dict]:
    rng = random.Random(seed)
    pts = []
    for i in range(n):
        env = {}
        for xk in u.x:
            env[xk] = rng.uniform(-1.0, 1.0)
        for l in range(1, u.L + 1):
            for row in u.w[l]:
                for w in row:
                    env[w] = rng.uniform(-1.2, 1.2)
            for b in u.b[l]:
                env[b] = rng.uniform(-0.8, 0.8)
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
    base = list(u.x) + list(u.y) + u.parameters
    holders = [s for l in range(1, u.L + 1) for s in u.A[l] + u.Z[l]]
    f = sp.lambdify(base + holders, exprs, modules="mpmath", cse=True)
    layer_fns = {}
    for l in range(1, u.L + 1):
        ins = list(u.A[l - 1]) + [w for row in u.w[l] for w in row] + list(u.b[l])
        zs = [u.weighted_input(l, j) for j in range(u.sizes[l])]
        layer_fns[l] = (ins, sp.lambdify(ins, zs, modules="mpmath"),
                        sp.lambdify(u.Z[l], u.activate(l, u.Z[l]), modules="mpmath"))
    out = []
    with mpmath.workdps(digits):
        for env in points:
            env = {s: mpmath.mpf(v) for s, v in env.items()}
            try:
                for l in range(1, u.L + 1):
                    ins, fz, fa = layer_fns[l]
                    zv = list(fz(*(env[s] for s in ins)))
                    env.update(zip(u.Z[l], zv))
                    env.update(zip(u.A[l], list(fa(*zv))))
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
    pass at the same precision; the error |p − q| / max(|p|, |q|, 1e-6) must stay below ``tol``.

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
        zs = [zj for l in range(1, u.L + 1) for zj in u.Z[l]]
        nonsmooth = any(act.expr.has(*_NONSMOOTH) for act in u.acts.values())
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
