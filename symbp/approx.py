"""Nielsen's chapter 4, "A visual proof that neural nets can compute any function", as symbp networks.

Takes: a function f as parser text (or a sympy expression) in ``x`` (1-D) or ``x``, ``y`` (2-D), read by the
whitelist parser only, and a box on which f must be finite (refused, naming a point, if it is not).
Gives: ``construct`` -- a real ``sb.Network`` (compiled ``Model``) whose parameters are set by the book's
construction: N bumps made of pairs of steep sigmoid steps (weight w, bias -w*s: a step at s), output weights
h and -h with h = f(midpoint), a linear output approximating f (or a sigmoid output approximating
sigma^-1(f clipped)), optionally M shifted copies at 1/M of the height; in 2-D the book's towers (a step in x
and a step in y, thresholded by a second hidden sigmoid layer with bias -3h/2).  ``bump_sum`` evaluates the
book's formula directly with NumPy (the network must agree with it); ``errors`` measures sup and mean absolute
error on a fine grid; ``bound`` the error bound of the construction; ``trained`` a network of the same hidden
size trained by ``fit`` (quadratic cost, linear output) on samples of f; ``table`` and ``plot_*`` the
chapter's numbers and pictures.

The bound (1-D, linear output, f L-Lipschitz, |f| <= F on [lo, hi], d = (hi - lo)/N): the cuts between bumps
are d apart, the two outermost steps lie d/2 outside the box.  Written as steps, the network's output is
g(x) = sum_i c_i sigma(w (x - s_i)) with c_i = h_i - h_(i-1) (|c_i| <= L d between neighbours, <= F at the two
outer steps).  The ideal staircase (w -> infinity) is within L d/2 of f (every x is within d/2 of its bump's
midpoint).  A step differs from a true step by sigma(-w |x - s|), at most 1/2 at the step itself (the failure
window) and e^(-w t) at a distance t; the steps are d apart, so

    |f(x) - g(x)| <= L d/2 + L d (sigma(-w t) + 2 e^(-w d/2) / (1 - e^(-w d))) + 2 F e^(-w d/2)

with t the distance from x to the nearest cut.  Everywhere (t = 0): <= L d + (tail), i.e. L (hi - lo)/N plus a
term exponentially small in w d: the bump-width term and the failure-window term.  Away from the failure
windows (t >= tau) the middle term is L d e^(-w tau) instead of L d / 2.  M shifted copies, each at 1/M of the
height, keep the same bound (an average of M approximations each within it), and near a cut only one copy is
in its window, so the error there falls.  2-D (towers on an N x N grid of squares of side d, the steps shared):
away from the windows, |f - g| <= (Lx + Ly) d/2 + N^2 F sigma(-h (1/2 - 4 e^(-w tau))), Lx, Ly the
Lipschitz constants of f in x and in y.  L (Lx, Ly) is taken as given, or as the largest slope on a grid of
100 001 (1001 x 1001) points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from symbp.parsing import parse
from symbp.symbols import numpy_function


def expit(x):
    """The logistic function σ(x), SciPy's (exact in the tails).  SciPy is imported on first use: ``import
    symbp`` does not pay for ``scipy.special`` (0.12 s) in every program that never builds a chapter-4 net."""
    from scipy.special import expit as f

    return f(x)


def logit(p):
    """σ⁻¹(p), SciPy's (imported on first use, as for ``expit``)."""
    from scipy.special import logit as f

    return f(p)


#: w d of the default steepness: w = DEFAULT_WD * N / (hi - lo) (e^(-w d/2) is then below 1e-13).
DEFAULT_WD = 60.0
#: The output weight h of the 2-D tower neurons (their inputs are +-h, the bias -3h/2).
DEFAULT_TOWER_H = 200.0


def target(f, dims: int = 1):
    """(the sympy expression, its variables, a NumPy function of them) for parser text or a sympy expression
    in x (dims 1) or x, y (dims 2).  Text goes through the whitelist parser only."""
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 or 2, got {dims!r}")
    names = ("x",) if dims == 1 else ("x", "y")
    if isinstance(f, str):
        expr = parse(f, allowed=names)
    elif isinstance(f, sp.Expr):
        extra = sorted(str(s) for s in f.free_symbols if str(s) not in names)
        if extra:
            raise ValueError(f"the function may only use {', '.join(names)}, not {', '.join(extra)}")
        expr = f
    else:
        raise ValueError(f"expected an expression in {', '.join(names)} (text or sympy), got {type(f).__name__}")
    by_name = {str(s): s for s in expr.free_symbols}
    args = tuple(by_name.get(n, sp.Symbol(n, real=True)) for n in names)
    fn = numpy_function(args, expr)

    def call(*xs):  # a constant (or f of x alone in 2-D) broadcast to the points' shape
        with np.errstate(all="ignore"):
            v = np.asarray(fn(*xs), dtype=float)
        return np.array(np.broadcast_to(v, np.broadcast(*xs).shape), dtype=float)

    return expr, args, call


def _box(box, dims):
    box = np.asarray(box, dtype=float).reshape(-1, 2) if box is not None else np.array([[0.0, 1.0]] * dims)
    if box.shape[0] == 1 and dims == 2:
        box = np.vstack([box, box])
    if box.shape != (dims, 2) or not np.all(np.isfinite(box)) or np.any(box[:, 1] <= box[:, 0]):
        raise ValueError(f"the box must be {dims} finite interval(s) (lo, hi) with lo < hi, got {box.tolist()}")
    return box


def _grid(box, n):
    if box.shape[0] == 1:
        return (np.linspace(box[0, 0], box[0, 1], n),)
    gx, gy = np.meshgrid(np.linspace(box[0, 0], box[0, 1], n), np.linspace(box[1, 0], box[1, 1], n),
                         indexing="ij")
    return gx.ravel(), gy.ravel()


def check_finite(fn, expr, args, box) -> None:
    """``ValueError`` naming a point of the box (on a fine grid) where f is not finite."""
    pts = _grid(box, 100_001 if box.shape[0] == 1 else 1001)
    v = fn(*pts)
    bad = np.flatnonzero(~np.isfinite(v))
    if bad.size:
        i = bad[0]
        where = ", ".join(f"{a} = {p[i]:.6g}" for a, p in zip(args, pts, strict=True))
        ranges = " x ".join(f"[{lo:g}, {hi:g}]" for lo, hi in box)
        raise ValueError(f"f = {expr} is not finite at {where} (value {v[i]}) on the box {ranges}")


def lipschitz(fn, box) -> tuple[float, ...]:
    """The largest slope of f on a fine grid, per variable (1-D: 100 001 points; 2-D: 1001 x 1001)."""
    if box.shape[0] == 1:
        x = np.linspace(box[0, 0], box[0, 1], 100_001)
        return (float(np.max(np.abs(np.diff(fn(x)) / np.diff(x)))),)
    n = 1001
    gx, gy = np.meshgrid(np.linspace(*box[0], n), np.linspace(*box[1], n), indexing="ij")
    v = fn(gx, gy)
    return (float(np.max(np.abs(np.diff(v, axis=0)) / ((box[0, 1] - box[0, 0]) / (n - 1)))),
            float(np.max(np.abs(np.diff(v, axis=1)) / ((box[1, 1] - box[1, 0]) / (n - 1)))))


def _pieces(lo, hi, n, offset):
    """(left, right, mid) of the bumps of one copy: cuts at lo + offset + i d inside (lo, hi), the outer
    boundaries d/2 outside the box; mid: the middle of the bump's part inside the box."""
    d = (hi - lo) / n
    cuts = lo + offset + d * np.arange(-1, n + 1)
    cuts = cuts[(cuts > lo + 1e-9 * d) & (cuts < hi - 1e-9 * d)]
    inner = np.concatenate([[lo], cuts, [hi]])
    mid = (inner[:-1] + inner[1:]) / 2
    left = np.concatenate([[lo - d / 2], cuts])
    right = np.concatenate([cuts, [hi + d / 2]])
    return left, right, mid


@dataclass
class Construction:
    """The book's network for f: ``net`` (an ``sb.Network``), ``model`` (compiled, parameters set) and the
    pieces of the formula: per copy the bumps' left and right steps and heights (1-D), or the steps and the
    towers' heights (2-D)."""

    expr: sp.Expr
    fn: object
    box: np.ndarray
    n: int
    w: float
    m: int
    output: str
    net: object
    model: object
    copies: list = field(default_factory=list)  # 1-D: [(left, right, heights)] per copy
    steps: tuple = ()  # 2-D: (x boundaries, y boundaries)
    heights2d: np.ndarray | None = None
    h: float = DEFAULT_TOWER_H
    clip: float = 1e-3

    @property
    def dims(self) -> int:
        return self.box.shape[0]

    def __call__(self, *xs):
        X = np.column_stack([np.asarray(x, dtype=float).ravel() for x in xs])
        return self.model.feedforward(X)[:, 0]


def construct(f, n: int, *, box=None, w: float | None = None, m: int = 1, output: str = "linear",
              dims: int = 1, h: float = DEFAULT_TOWER_H, clip: float = 1e-3, backend: str = "numpy",
              dtype: str = "float64") -> Construction:
    """The book's network approximating f with ``n`` bumps per axis (see the module docstring)."""
    import symbp as sb

    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"the number of bumps must be a positive integer, got {n!r}")
    if not isinstance(m, int | np.integer) or m < 1:
        raise ValueError(f"the number of copies M must be a positive integer, got {m!r}")
    if output not in ("linear", "sigmoid"):
        raise ValueError(f"output must be 'linear' or 'sigmoid', got {output!r}")
    expr, args, fn = target(f, dims)
    box = _box(box, dims)
    check_finite(fn, expr, args, box)
    widths = box[:, 1] - box[:, 0]
    if w is None:
        w = DEFAULT_WD * n / float(widths.min())
    if not (w > 0 and math.isfinite(w)):
        raise ValueError(f"the steepness w must be positive and finite, got {w!r}")
    out_act = sb.linear if output == "linear" else sb.sigmoid

    def heights(v):
        if output == "linear":
            return v
        return logit(np.clip(v, clip, 1 - clip))

    if dims == 1:
        lo, hi = box[0]
        d = (hi - lo) / n
        copies, W1, b1, W2 = [], [], [], []
        for k in range(m):
            left, right, mid = _pieces(lo, hi, n, d * k / m)
            hk = heights(fn(mid))
            copies.append((left, right, hk))
            for s_left, s_right, hj in zip(left, right, hk, strict=True):
                W1 += [w, w]
                b1 += [-w * s_left, -w * s_right]
                W2 += [hj / m, -hj / m]
        size = len(W1)
        net = sb.Network([sb.Input(1), sb.Dense(size, sb.sigmoid), sb.Dense(1, out_act)], cost=sb.quadratic)
        model = net.compile(backend=backend, dtype=dtype, seed=0)
        model.set_params([(np.array(W1).reshape(-1, 1), np.array(b1)), (np.array(W2).reshape(1, -1), np.zeros(1))])
        return Construction(expr, fn, box, n, float(w), m, output, net, model, copies=copies, clip=clip)

    if m != 1:
        raise ValueError("M shifted copies are built in 1-D only")
    bx = [np.concatenate([[lo - dd / 2], lo + dd * np.arange(1, n), [hi + dd / 2]])
          for (lo, hi), dd in zip(box, widths / n, strict=True)]
    mids = [lo + dd * (np.arange(n) + 0.5) for (lo, hi), dd in zip(box, widths / n, strict=True)]
    mx, my = np.meshgrid(mids[0], mids[1], indexing="ij")
    H = heights(fn(mx, my))  # (n, n): tower (i, j) at x-bump i, y-bump j
    nb = n + 1
    W1 = np.zeros((2 * nb, 2))
    W1[:nb, 0] = w
    W1[nb:, 1] = w
    b1 = np.concatenate([-w * bx[0], -w * bx[1]])
    W2 = np.zeros((n * n, 2 * nb))
    for i in range(n):
        for j in range(n):
            t = i * n + j
            W2[t, i], W2[t, i + 1] = h, -h
            W2[t, nb + j], W2[t, nb + j + 1] = h, -h
    b2 = np.full(n * n, -1.5 * h)
    W3 = H.reshape(1, -1)
    net = sb.Network([sb.Input(2), sb.Dense(2 * nb, sb.sigmoid), sb.Dense(n * n, sb.sigmoid), sb.Dense(1, out_act)],
                     cost=sb.quadratic)
    model = net.compile(backend=backend, dtype=dtype, seed=0)
    model.set_params([(W1, b1), (W2, b2), (W3, np.zeros(1))])
    return Construction(expr, fn, box, n, float(w), 1, output, net, model, steps=tuple(bx), heights2d=H, h=h,
                        clip=clip)


def bump_sum(c: Construction, *xs) -> np.ndarray:
    """The book's formula evaluated directly with NumPy: 1-D, (1/M) sum over copies and bumps of
    h [sigma(w (x - left)) - sigma(w (x - right))]; 2-D, sum over towers of f_ij sigma(h (X_i + Y_j) - 3h/2) with
    X_i, Y_j the x and y bumps (of height 1).  Through the output's sigmoid when it has one."""
    if c.dims == 1:
        x = np.asarray(xs[0], dtype=float).ravel()[:, None]
        total = np.zeros(x.shape[0])
        for left, right, hk in c.copies:
            total += (hk[None, :] * (expit(c.w * (x - left[None, :])) - expit(c.w * (x - right[None, :])))).sum(1)
        total /= c.m
    else:
        x = np.asarray(xs[0], dtype=float).ravel()[:, None]
        y = np.asarray(xs[1], dtype=float).ravel()[:, None]
        bx, by = c.steps
        X = expit(c.w * (x - bx[None, :-1])) - expit(c.w * (x - bx[None, 1:]))  # (p, n)
        Y = expit(c.w * (y - by[None, :-1])) - expit(c.w * (y - by[None, 1:]))
        T = expit(c.h * (X[:, :, None] + Y[:, None, :]) - 1.5 * c.h)  # (p, n, n)
        total = (T * c.heights2d[None]).sum((1, 2))
    return total if c.output == "linear" else expit(total)


def cut_distance(c: Construction, *xs) -> np.ndarray:
    """The distance from each point to the nearest interior cut of the first copy (per axis, the smaller)."""
    if c.dims == 1:
        x = np.asarray(xs[0], dtype=float).ravel()
        cuts = c.copies[0][0][1:]
        return np.min(np.abs(x[:, None] - cuts[None, :]), axis=1) if cuts.size else np.full(x.shape, np.inf)
    out = np.full(np.asarray(xs[0]).size, np.inf)
    for v, b in zip(xs, c.steps, strict=True):
        cuts = b[1:-1]
        if cuts.size:
            out = np.minimum(out, np.min(np.abs(np.asarray(v).ravel()[:, None] - cuts[None, :]), axis=1))
    return out


def grid(c: Construction, points: int | None = None):
    """A fine grid of the box (1-D: 20 001 points; 2-D: 301 x 301)."""
    return _grid(c.box, points or (20_001 if c.dims == 1 else 301))


def errors(c: Construction, points: int | None = None, away: float | None = None,
           near: float | None = None) -> dict:
    """Sup and mean absolute error of the network on a fine grid; ``away``: only at points at least that far
    from every cut (of the first copy); ``near``: only at points closer than that to one."""
    pts = grid(c, points)
    err = np.abs(c(*pts) - c.fn(*pts))
    if away is not None:
        err = err[cut_distance(c, *pts) >= away]
    if near is not None:
        err = err[cut_distance(c, *pts) < near]
    return {"sup": float(err.max()), "mean": float(err.mean())}


def bound(c: Construction, lipschitz_constants=None, away: float = 0.0) -> float:
    """The construction's bound on the sup error (linear output; see the module docstring) everywhere
    (``away=0``) or at least ``away`` from every cut."""
    if c.output != "linear":
        raise ValueError("the bound is derived for the linear output")
    L = tuple(lipschitz_constants) if lipschitz_constants is not None else lipschitz(c.fn, c.box)
    F = float(np.max(np.abs(c.fn(*grid(c)))))
    d = float((c.box[0, 1] - c.box[0, 0]) / c.n)
    wd = c.w * d
    if c.dims == 1:
        tail = 2 * math.exp(-wd / 2) / -math.expm1(-wd)
        return L[0] * d / 2 + L[0] * d * (float(expit(-c.w * away)) + tail) + 2 * F * math.exp(-wd / 2)
    if away <= 0:
        raise ValueError("the 2-D bound holds away from the failure windows: give away > 0")
    eta = math.exp(-c.w * away)
    dy = float((c.box[1, 1] - c.box[1, 0]) / c.n)
    return L[0] * d / 2 + L[1] * dy / 2 + c.n ** 2 * F * float(expit(-c.h * (0.5 - 4 * eta)))


def trained(f, hidden: int, *, box=None, samples: int = 200, epochs: int = 300, eta: float | None = None,
            batch_size: int = 10, seed: int = 0, backend: str = "numpy"):
    """A [1, hidden, 1] network (sigmoid hidden, linear output, quadratic cost) trained by ``fit`` on
    ``samples`` random points of f in the box (inputs scaled to [-1, 1]), learning rate 2/hidden unless ``eta``
    is given (the linear output sums the hidden layer): (the model, its sup and mean error on the fine grid)."""
    import symbp as sb

    expr, args, fn = target(f, 1)
    box = _box(box, 1)
    check_finite(fn, expr, args, box)
    lo, hi = box[0]
    rng = np.random.default_rng(seed)
    x = rng.uniform(lo, hi, samples)
    scale = lambda v: (2 * v - lo - hi) / (hi - lo)  # noqa: E731  inputs in [-1, 1]
    net = sb.Network([sb.Input(1), sb.Dense(hidden, sb.sigmoid), sb.Dense(1, sb.linear)], cost=sb.quadratic)
    model = net.compile(backend=backend, dtype="float64", seed=seed)
    eta = 2.0 / hidden if eta is None else eta
    model.fit((scale(x)[:, None], fn(x)[:, None]), epochs=epochs, batch_size=batch_size, eta=eta, seed=seed,
              progress=False, monitor_evaluation=False)
    g = np.linspace(lo, hi, 20_001)
    err = np.abs(model.feedforward(scale(g)[:, None])[:, 0] - fn(g))
    return model, {"sup": float(err.max()), "mean": float(err.mean())}


def table(f, neurons, *, box=None, w_per_bump: float = DEFAULT_WD, m: int = 1, train: bool = True,
          epochs: int = 300, lipschitz_constant: float | None = None) -> list[dict]:
    """Per N: hidden size, sup and mean error of the construction, the bound, and the trained net's errors."""
    rows = []
    L = None
    for n in neurons:
        b = _box(box, 1)
        c = construct(f, int(n), box=b, w=w_per_bump * n / float(b[0, 1] - b[0, 0]), m=m)
        if L is None:
            L = (lipschitz_constant,) if lipschitz_constant is not None else lipschitz(c.fn, c.box)
        e = errors(c)
        row = {"N": int(n), "hidden": c.model.params[0][0].shape[0], "w": c.w, "sup": e["sup"], "mean": e["mean"],
               "bound": bound(c, L)}
        if train:
            _, t = trained(f, row["hidden"], box=b, epochs=epochs)
            row["trained_sup"], row["trained_mean"] = t["sup"], t["mean"]
        rows.append(row)
    return rows


def format_table(rows) -> str:
    head = f"{'N':>5} {'hidden':>6} {'w':>9} {'sup error':>10} {'mean error':>10} {'bound':>10}"
    if rows and "trained_sup" in rows[0]:
        head += f" {'trained sup':>11} {'trained mean':>12}"
    lines = [head]
    for r in rows:
        line = f"{r['N']:>5} {r['hidden']:>6} {r['w']:>9.4g} {r['sup']:>10.3e} {r['mean']:>10.3e} {r['bound']:>10.3e}"
        if "trained_sup" in r:
            line += f" {r['trained_sup']:>11.3e} {r['trained_mean']:>12.3e}"
        lines.append(line)
    return "\n".join(lines)


def table2d(f, neurons, *, box=None, w_per_bump: float = DEFAULT_WD, h: float = DEFAULT_TOWER_H,
            lipschitz_constants=None) -> list[dict]:
    """Per N (towers per axis): hidden sizes, sup error everywhere and at least d/10 from every step (the
    failure windows left out), the bound there, and the mean error."""
    rows = []
    L = lipschitz_constants
    for n in neurons:
        b = _box(box, 2)
        c = construct(f, int(n), box=b, dims=2, w=w_per_bump * n / float((b[:, 1] - b[:, 0]).min()), h=h)
        if L is None:
            L = lipschitz(c.fn, c.box)
        tau = float((b[:, 1] - b[:, 0]).min()) / n / 10
        e, a = errors(c), errors(c, away=tau)
        rows.append({"N": int(n), "hidden": f"{2 * (n + 1)}+{n * n}", "w": c.w, "sup": e["sup"], "mean": e["mean"],
                     "sup_away": a["sup"], "bound": bound(c, L, away=tau)})
    return rows


def format_table2d(rows) -> str:
    lines = [f"{'N':>4} {'hidden':>10} {'w':>9} {'sup error':>10} {'mean error':>10} {'sup (>= d/10 from steps)':>24} "
             f"{'bound there':>11}"]
    for r in rows:
        lines.append(f"{r['N']:>4} {r['hidden']:>10} {r['w']:>9.4g} {r['sup']:>10.3e} {r['mean']:>10.3e} "
                     f"{r['sup_away']:>24.3e} {r['bound']:>11.3e}")
    return "\n".join(lines)


# -- pictures ------------------------------------------------------------------------------------------------
def plot_construction(c: Construction, path):
    """The hidden neurons' steps, the bumps (output weight times step pair) and their sum against f (1-D)."""
    from symbp.train.plot import open_figure, save_figure

    path, plt, fig, axes = open_figure(path, 1, 3, size=(15, 4.2))
    lo, hi = c.box[0]
    x = np.linspace(lo, hi, 2001)
    left, right, hk = c.copies[0]
    for s in left:
        axes[0].plot(x, expit(c.w * (x - s)), lw=1)
    axes[0].set(title=f"hidden neurons: steps sigma(w(x - s)), w = {c.w:.3g}", xlabel="x", ylabel="activation")
    for j, (a, b, hj) in enumerate(zip(left, right, hk, strict=True)):
        axes[1].plot(x, hj / c.m * (expit(c.w * (x - a)) - expit(c.w * (x - b))), lw=1,
                     label="h·(step(s_j) − step(s_j+1))" if j == 0 else None)
    axes[1].set(title=f"bumps: N = {c.n} (first copy of M = {c.m})", xlabel="x", ylabel="weighted output")
    axes[1].legend(loc="best", fontsize=8)
    axes[2].plot(x, c.fn(x), "k--", label=f"f = {c.expr}")
    axes[2].plot(x, c(x), label=f"network ({c.model.params[0][0].shape[0]} hidden)")
    axes[2].set(title="weighted sum of the bumps against f", xlabel="x", ylabel="output")
    axes[2].legend(loc="best", fontsize=8)
    return save_figure(plt, fig, path, "Chapter 4: steps, bumps and their sum")


def plot_errors(rows, path, title: str = ""):
    """Sup error against N, log-log: the construction, its bound and the trained network."""
    from symbp.train.plot import open_figure, save_figure

    path, plt, fig, axes = open_figure(path)
    ax = axes[0]
    n = [r["N"] for r in rows]
    ax.loglog(n, [r["sup"] for r in rows], "o-", label="constructed: sup error")
    ax.loglog(n, [r["mean"] for r in rows], "o:", label="constructed: mean error")
    ax.loglog(n, [r["bound"] for r in rows], "k--", label="bound L(hi-lo)/N + tail")
    if rows and "trained_sup" in rows[0]:
        ax.loglog(n, [r["trained_sup"] for r in rows], "s-", label="trained (same hidden size): sup error")
        ax.loglog(n, [r["trained_mean"] for r in rows], "s:", label="trained: mean error")
    ax.set(xlabel="N (bumps; hidden = 2N)", ylabel="|f - network| on a grid of 20 001 points")
    ax.legend(loc="best", fontsize=8)
    return save_figure(plt, fig, path, title or "error against N: constructed vs trained")


def plot_errors2d(rows, path, title: str = ""):
    """2-D: sup error (everywhere and away from the failure windows), mean error and the bound against N."""
    from symbp.train.plot import open_figure, save_figure

    path, plt, fig, axes = open_figure(path)
    ax = axes[0]
    n = [r["N"] for r in rows]
    ax.loglog(n, [r["sup"] for r in rows], "o-", label="sup error (failure windows included)")
    ax.loglog(n, [r["sup_away"] for r in rows], "o-", label="sup error at least d/10 from the steps")
    ax.loglog(n, [r["mean"] for r in rows], "o:", label="mean error")
    ax.loglog(n, [r["bound"] for r in rows], "k--", label="bound (Lx + Ly) d/2 + tail, away from the steps")
    ax.set(xlabel="N (towers per axis)", ylabel="|f - network| on a 301 x 301 grid")
    ax.legend(loc="best", fontsize=8)
    return save_figure(plt, fig, path, title or "2-D towers: error against N")


def plot_towers(c: Construction, path):
    """The 2-D construction as heat maps: f, the network and the error."""
    from symbp.train.plot import open_figure, save_figure

    path, plt, fig, axes = open_figure(path, 1, 3, size=(15, 4.4))
    k = 201
    gx, gy = np.meshgrid(np.linspace(*c.box[0], k), np.linspace(*c.box[1], k), indexing="ij")
    ext = [c.box[0, 0], c.box[0, 1], c.box[1, 0], c.box[1, 1]]
    fv = c.fn(gx, gy)
    nv = c(gx.ravel(), gy.ravel()).reshape(k, k)
    for ax, v, t in ((axes[0], fv, f"f = {c.expr}"), (axes[1], nv, f"network: {c.n}x{c.n} towers"),
                     (axes[2], np.abs(nv - fv), "|f - network| (failure windows at the steps)")):
        im = ax.imshow(v.T, origin="lower", extent=ext, aspect="auto", cmap="viridis")
        ax.set(title=t, xlabel="x", ylabel="y")
        fig.colorbar(im, ax=ax, label="value")
    return save_figure(plt, fig, path, "Chapter 4 in 2-D: towers")
