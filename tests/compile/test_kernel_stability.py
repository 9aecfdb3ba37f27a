"""Numerical stability: saturated outputs (weights ×1000, |z| in the thousands) give finite costs equal to
the exact values computed in a stable form, and finite gradients.  Sigmoid outputs with cross-entropy
and log-likelihood use log σ(z) = −softplus(−z); a softmax output uses log a = z − log Σ exp z."""

from __future__ import annotations

import warnings

import compile_kit as kit
import numpy as np
import pytest

BACKENDS = ["numba", "numpy"]


def _saturated(name, backend, dtype="float64", binary=False, seed=0):
    spec = kit.POOL[name]
    m = kit.model(name, backend, dtype)
    rng = np.random.default_rng(seed)
    params = [(1000 * W, 1000 * b) for W, b in kit.random_params(spec[0], rng)]
    X, Y = kit.make_data(spec, 20, rng)
    if binary and spec[2] == "cross_entropy":
        Y = (Y > 0.5).astype(float)
    m.set_params(params)
    zs, activations = kit.ref_forward(spec, params, X)
    assert np.abs(zs[-1]).max() > 800, "the test needs outputs saturated beyond exp's range"
    return m, spec, params, X, Y, activations[-1]


def _finite_grads(grads):
    return all(np.isfinite(dW).all() and np.isfinite(db).all() for dW, db in grads)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["xent", "llsig"])  # sigmoid outputs: cross-entropy, log-likelihood
@pytest.mark.parametrize("binary", [False, True])
def test_saturated_sigmoid_output(backend, name, binary):
    m, spec, params, X, Y, A = _saturated(name, backend, binary=binary)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / divide-by-zero / invalid warnings either
        out = m.feedforward(X)
        cost = m.cost(X, Y)
        grads = m.gradients(X, Y)
    assert np.isfinite(out).all() and ((out == 0) | (out == 1)).any()  # σ(z) rounded to exactly 0 or 1
    assert np.isfinite(cost)
    assert cost == pytest.approx(kit.ref_cost(spec, params, X, Y), rel=1e-9)
    assert _finite_grads(grads)
    Yh = np.eye(2)[Y] if Y.ndim == 1 else Y
    # δᴸ = a − y (cross-entropy) and y·(a − 1) (log-likelihood): the output bias gradient is its mean
    delta = A - Yh if spec[2] == "cross_entropy" else Yh * (A - 1)
    np.testing.assert_allclose(grads[-1][1], delta.mean(axis=0), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_log_likelihood_with_huge_logits(backend, dtype):
    m, spec, params, X, Y, A = _saturated("soft", backend, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = m.feedforward(X)
        cost = m.cost(X, Y)
        grads = m.gradients(X, Y)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)
    assert np.isfinite(cost) and cost > 100  # confidently wrong somewhere: a large, finite cost
    assert cost == pytest.approx(kit.ref_cost(spec, params, X, Y), rel=1e-9 if dtype == "float64" else 1e-4)
    assert _finite_grads(grads)
    tol = dict(rtol=1e-9, atol=1e-12) if dtype == "float64" else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads[-1][1], (A - Y).mean(axis=0), **tol)  # δᴸ = a − y


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_step_on_saturated_net_stays_finite(backend):
    m, spec, params, X, Y, _ = _saturated("xent", backend)
    m.run_epoch(X, Y, np.arange(20), 5, eta=0.1, lmbda=0.1)
    assert all(np.isfinite(W).all() and np.isfinite(b).all() for W, b in m.params)
    assert np.isfinite(m.cost(X, Y))


def test_saturated_numba_and_numpy_agree():
    for name in ("xent", "llsig", "soft"):
        mb, spec, params, X, Y, _ = _saturated(name, "numba")
        mn = kit.model(name, "numpy")
        mn.set_params(params)
        assert mb.cost(X, Y) == pytest.approx(mn.cost(X, Y), rel=1e-12)
        kit.assert_params_close(mb.gradients(X, Y), mn.gradients(X, Y), rtol=1e-10, atol=1e-10, what=name)


def _exact_softmax_xent(z, Y) -> float:
    """−Σ [y ln a + (1 − y) ln(1 − a)] of softmax(z), in 50-digit arithmetic from the float64 logits, with
    1 − aⱼ = Σₖ≠ⱼ exp zₖ / Σₖ exp zₖ summed directly (mpmath's exponent range has no overflow)."""
    import mpmath

    with mpmath.workdps(50):  # restores the global precision afterwards
        total = mpmath.mpf(0)
        for zr, yr in zip(z, Y):
            e = [mpmath.exp(mpmath.mpf(float(v))) for v in zr]
            s = mpmath.fsum(e)
            for j, (ej, yj) in enumerate(zip(e, yr)):
                rest = mpmath.fsum(ek for k, ek in enumerate(e) if k != j)
                yj = mpmath.mpf(float(yj))
                total -= yj * mpmath.log(ej / s) + (1 - yj) * mpmath.log(rest / s)
        return float(total)


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_cross_entropy_with_huge_logits(backend):
    """log(1 − a) of a saturated softmax comes from its own row step, not from a = 1 rounded: the cost stays
    finite and exact where the naive form gives inf."""
    spec = ((3, 4, 3), ("tanh", "softmax"), "cross_entropy")
    m = kit.model(spec, backend)
    rng = np.random.default_rng(0)
    params = [(1000 * W, 1000 * b) for W, b in kit.random_params(spec[0], rng)]
    m.set_params(params)
    X, Y = kit.make_data(spec, 5, rng)
    (W1, b1), (W2, b2) = params
    z = np.tanh(X @ W1.T + b1) @ W2.T + b2
    assert (np.sort(z, axis=1)[:, -1] - np.sort(z, axis=1)[:, -2] > 40).any()  # some a rounds to exactly 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cost = m.cost(X, Y)
    assert np.isfinite(cost)
    assert cost == pytest.approx(_exact_softmax_xent(z, Y) / X.shape[0], rel=1e-9)
    # and in the ordinary range it is the textbook value
    m.set_params(kit.random_params(spec[0], np.random.default_rng(1)))
    assert m.cost(X, Y) == pytest.approx(kit.ref_cost(spec, m.params, X, Y), rel=1e-12)
