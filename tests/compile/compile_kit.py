"""Helpers shared by the compiler tests: a small pool of networks, data, an independent NumPy forward
pass and cost, and central finite differences of ``Model.cost``.

Compiled models are memoised per process: a numba compile of one network costs seconds, so every test
draws from a small fixed set of (sizes, activations, cost) specs.  ``model(...)`` re-initialises the
parameters of the memoised model on every call, so tests never see another test's parameters.
"""

from __future__ import annotations

import numpy as np
import scipy.special
import sympy as sp

import symbp as sb
from symbp import z

# ---------------------------------------------------------------------------------------------- pool
ACTS: dict[str, sb.Activation] = {
    "sigmoid": sb.sigmoid,
    "tanh": sb.tanh,
    "relu": sb.relu,
    "linear": sb.linear,
    "softplus": sb.softplus,
    "softmax": sb.softmax,
    "softsign": sb.Activation("softsign", z / (1 + sp.Abs(z))),
    "ztanh": sb.Activation.parse("ztanh", "z*tanh(z)"),
    "erf": sb.Activation.parse("erf", "erf(z)"),
}
#: Activations with a kink (a jump in σ′ or σ″) at z = 0: finite differences must not step across it.
KINKY = {"relu", "softsign"}
COSTS: dict[str, sb.Cost] = {"quadratic": sb.quadratic, "cross_entropy": sb.cross_entropy,
                             "log_likelihood": sb.log_likelihood}
#: Activations whose outputs lie in (0, 1), as cross-entropy and log-likelihood need.
UNIT_OUTPUTS = ("sigmoid", "softmax")

#: The networks the numba tests compile (one compile each per dtype and process).
POOL: dict[str, tuple] = {
    "sig": ((4, 3, 2), ("sigmoid", "sigmoid"), "quadratic"),
    "soft": ((3, 4, 3), ("tanh", "softmax"), "log_likelihood"),
    "xent": ((2, 5, 3, 2), ("relu", "softsign", "sigmoid"), "cross_entropy"),
    "smooth": ((3, 4, 3, 2), ("ztanh", "erf", "linear"), "quadratic"),
    "llsig": ((4, 3, 2), ("softplus", "sigmoid"), "log_likelihood"),
}
CH1 = ((784, 30, 10), ("sigmoid", "sigmoid"), "quadratic")

_networks: dict[tuple, sb.Network] = {}
_models: dict[tuple, object] = {}


def network(spec) -> sb.Network:
    sizes, acts, cost = spec
    key = (tuple(sizes), tuple(acts), cost)
    if key not in _networks:
        _networks[key] = sb.Network(list(sizes), activation=[ACTS[a] for a in acts], cost=COSTS[cost])
    return _networks[key]


def model(spec, backend: str = "numba", dtype: str = "float64", seed: int = 0):
    """The memoised compiled model of ``spec``, with parameters freshly initialised from ``seed``."""
    spec = POOL.get(spec, spec) if isinstance(spec, str) else spec
    key = (tuple(spec[0]), tuple(spec[1]), spec[2], backend, dtype)
    if key not in _models:
        _models[key] = network(spec).compile(backend=backend, dtype=dtype, seed=seed)
    m = _models[key]
    m.init_params("default", seed=seed)
    return m


# ---------------------------------------------------------------------------------------------- data
def random_params(sizes, rng, scale: float = 1.0):
    return [(rng.standard_normal((n_out, n_in)) * scale, rng.standard_normal(n_out) * scale)
            for n_in, n_out in zip(sizes[:-1], sizes[1:])]


def make_data(spec, rows: int, rng, labels: bool = False):
    """Inputs in [-1, 1] and targets that suit the cost: in (0, 1) for cross-entropy, one-hot (or integer
    labels when ``labels``) for log-likelihood."""
    sizes, acts, cost = spec
    X = rng.uniform(-1, 1, (rows, sizes[0]))
    n_out = sizes[-1]
    if cost == "log_likelihood":
        lab = rng.integers(0, n_out, rows)
        return X, (lab if labels else np.eye(n_out)[lab])
    if cost == "cross_entropy":
        return X, rng.uniform(0.05, 0.95, (rows, n_out))
    if acts[-1] in UNIT_OUTPUTS:
        return X, rng.uniform(0, 1, (rows, n_out))
    return X, rng.uniform(-1, 1, (rows, n_out))


# ------------------------------------------------------------------------------ independent reference
_lambdified: dict[str, object] = {}


def _act_fn(name):
    """σ as a NumPy function: sympy.lambdify of the declared expression, except where that overflows
    (1/(1 + e⁻ᶻ) and log(1 + eᶻ) for large |z|): there the textbook stable forms."""
    if name == "sigmoid":
        return scipy.special.expit
    if name == "softplus":
        return lambda Z: np.logaddexp(0.0, Z)
    if name not in _lambdified:
        f = sp.lambdify(z, ACTS[name].expr, modules=["scipy", "numpy"])
        _lambdified[name] = lambda Z, f=f: np.broadcast_to(np.asarray(f(Z), dtype=np.float64), Z.shape)
    return _lambdified[name]


def ref_forward(spec, params, X):
    """Weighted inputs and activations of every layer, in float64 NumPy (σ from sympy.lambdify)."""
    _, acts, _ = spec
    A = np.asarray(X, dtype=np.float64)
    zs, activations = [], [A]
    with np.errstate(over="ignore", under="ignore"):
        for (W, b), name in zip(params, acts):
            Z = A @ np.asarray(W, np.float64).T + np.asarray(b, np.float64)
            if name == "softmax":
                e = np.exp(Z - Z.max(axis=1, keepdims=True))
                A = e / e.sum(axis=1, keepdims=True)
            else:
                A = _act_fn(name)(Z)
            zs.append(Z)
            activations.append(A)
    return zs, activations


def _softplus(x):
    return np.logaddexp(0.0, x)


def ref_cost(spec, params, X, Y):
    """Mean cost over the rows, computed stably from the output's weighted input."""
    _, acts, cost = spec
    zs, activations = ref_forward(spec, params, X)
    Z, A = zs[-1], activations[-1]
    Y = np.asarray(Y)
    Y = np.eye(Z.shape[1])[Y] if Y.ndim == 1 else Y.astype(np.float64)
    if cost == "quadratic":
        per = 0.5 * (A - Y) ** 2
    elif acts[-1] == "sigmoid":  # log σ(z) = −softplus(−z), log(1 − σ(z)) = −softplus(z)
        per = Y * _softplus(-Z) + ((1 - Y) * _softplus(Z) if cost == "cross_entropy" else 0.0)
    else:  # softmax: log a = z − log Σ exp z
        lse = Z.max(axis=1, keepdims=True) + np.log(np.exp(Z - Z.max(axis=1, keepdims=True)).sum(1, keepdims=True))
        per = -Y * (Z - lse)
        if cost == "cross_entropy":
            per = per - (1 - Y) * np.log1p(-A)
    return float(np.sum(per)) / Z.shape[0]


def kink_pattern(spec, params, X):
    """For each layer with a kinked activation, the sign pattern of its weighted inputs."""
    zs, _ = ref_forward(spec, params, X)
    return [Z > 0 for Z, name in zip(zs, spec[1]) if name in KINKY]


def kink_margin(spec, params, X) -> float:
    """Smallest |z| over units with a kinked activation (inf when the network has none)."""
    zs, _ = ref_forward(spec, params, X)
    vals = [np.abs(Z).min() for Z, name in zip(zs, spec[1]) if name in KINKY]
    return float(min(vals)) if vals else float("inf")


# --------------------------------------------------------------------------------- finite differences
def fd_gradients(m, spec, X, Y, h: float | None = None):
    """Central differences (fourth order: 8·(C(+h) − C(−h)) − (C(+2h) − C(−2h)), over 12h) of
    ``m.cost`` for every parameter.

    The step is 1e-3 (round-off ≈ 1e-15·|C|/h stays far below the tolerance; the truncation error is
    O(h⁴)).  Where a kinked unit (relu, softsign) would cross its kink within the stencil, the step shrinks
    to 1e-4, then 1e-5; if it still crosses, returns None (no valid reference at this point)."""
    kinky = any(name in KINKY for name in spec[1])
    steps = (h,) if h is not None else ((1e-3, 1e-4, 1e-5) if kinky else (1e-3,))
    base = [(np.array(W, dtype=np.float64), np.array(b, dtype=np.float64)) for W, b in m.params]
    try:
        for step in steps:
            grads = _fd(m, spec, X, Y, base, step, kinky)
            if grads is not None:
                return grads
        return None
    finally:
        m.set_params(base)


def _fd(m, spec, X, Y, base, h, kinky):
    pattern = kink_pattern(spec, base, X) if kinky else None
    grads = []
    for l, pair in enumerate(base):
        out_pair = []
        for k, arr in enumerate(pair):
            g = np.zeros_like(arr)
            for idx in np.ndindex(arr.shape):
                vals = {}
                for s in (-2, -1, 1, 2):
                    trial = [(W.copy(), b.copy()) for W, b in base]
                    trial[l][k][idx] += s * h
                    if kinky and any((p != q).any() for p, q in zip(pattern, kink_pattern(spec, trial, X))):
                        return None
                    m.set_params(trial)
                    vals[s] = m.cost(X, Y)
                g[idx] = (8 * (vals[1] - vals[-1]) - (vals[2] - vals[-2])) / (12 * h)
            out_pair.append(g)
        grads.append(tuple(out_pair))
    return grads


def assert_grads_match_fd(bp, fd, cost_value: float, rtol: float = 1e-6, floor: float = 1e-3):
    """|bp − fd| ≤ rtol · max(|bp|, |fd|, floor·max(1, |C|)) for every parameter.

    The floor makes the test absolute for gradients smaller than ``floor`` (relative to the cost's size):
    there the round-off of the differences (≈ 1e-15·|C|/h) is comparable to ``rtol`` times the gradient.
    """
    lim = floor * max(1.0, abs(cost_value))
    worst = 0.0
    for l, ((dW, db), (fW, fb)) in enumerate(zip(bp, fd), start=1):
        for name, g, f in ((f"W{l}", dW, fW), (f"b{l}", db, fb)):
            g = np.asarray(g, dtype=np.float64)
            assert g.shape == f.shape, f"{name}: gradient shape {g.shape}, expected {f.shape}"
            rel = np.abs(g - f) / np.maximum(np.maximum(np.abs(g), np.abs(f)), lim)
            worst = max(worst, float(rel.max()))
            assert rel.max() < rtol, (f"d{name}: backprop {g.ravel()} vs finite differences {f.ravel()} "
                                      f"(relative error {rel.max():.2e})")
    return worst


def assert_params_close(got, want, rtol: float, atol: float, what: str = ""):
    assert len(got) == len(want)
    for l, ((gW, gb), (wW, wb)) in enumerate(zip(got, want), start=1):
        np.testing.assert_allclose(gW, wW, rtol=rtol, atol=atol, err_msg=f"{what} W{l}")
        np.testing.assert_allclose(gb, wb, rtol=rtol, atol=atol, err_msg=f"{what} b{l}")
