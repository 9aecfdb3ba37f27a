"""One call of the whole-epoch kernel (``run_epoch``) equals the same mini-batch updates done one by one
through ``gradients``: W ← (1 − ηλ/n)·W − η·∂C/∂W, b ← b − η·∂C/∂b per mini-batch order[k·m:(k+1)·m],
n = len(order) unless given, and a final partial mini-batch skipped."""

from __future__ import annotations

import compile_kit as kit
import numpy as np
import pytest

BACKENDS = ["numba", "numpy"]
CLOSE = dict(rtol=1e-12, atol=1e-13)


def step_by_step(m, X, Y, order, m_batch, eta, lmbda, n=None):
    """The reference: Python loop over mini-batches, one ``gradients`` call each."""
    n = len(order) if n is None else n
    decay = 1.0 - eta * lmbda / n
    params = m.params
    for k in range(0, len(order), m_batch):  # the book's epoch: a short last mini-batch too, with η/its size
        rows = order[k:k + m_batch]
        m.set_params(params)
        grads = m.gradients(X[rows], Y[rows])
        params = [(decay * W - eta * dW, b - eta * db) for (W, b), (dW, db) in zip(params, grads)]
    return params


def _case(name, rows, seed=0):
    spec = kit.POOL[name]
    rng = np.random.default_rng(seed)
    params = kit.random_params(spec[0], rng, scale=0.7)
    X, Y = kit.make_data(spec, rows, rng)
    return params, X, Y, rng


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["sig", "soft", "xent"])
@pytest.mark.parametrize("lmbda", [0.0, 2.5])
def test_run_epoch_equals_minibatch_updates(backend, name, lmbda):
    m = kit.model(name, backend)
    params, X, Y, rng = _case(name, 23)
    order = rng.permutation(23)  # 4 mini-batches of 5, then one of 3
    eta = 0.8
    m.set_params(params)
    want = step_by_step(m, X, Y, order, 5, eta, lmbda)
    m.set_params(params)
    m.run_epoch(X, Y, order, 5, eta, lmbda)
    kit.assert_params_close(m.params, want, what=f"{name}/{backend} λ={lmbda}", **CLOSE)


@pytest.mark.parametrize("backend", BACKENDS)
def test_decay_uses_len_order_or_given_n(backend):
    """Training on a subset of rows: n defaults to len(order), not to the number of rows of X."""
    m = kit.model("sig", backend)
    params, X, Y, rng = _case("sig", 30, seed=1)
    order = rng.permutation(30)[:12]
    eta, lmbda = 0.5, 3.0
    for n in (None, 12, 1000):
        m.set_params(params)
        want = step_by_step(m, X, Y, order, 4, eta, lmbda, n=n)
        m.set_params(params)
        m.run_epoch(X, Y, order, 4, eta, lmbda, n=n)
        kit.assert_params_close(m.params, want, what=f"n={n}", **CLOSE)
    # the factor itself: with a zero learning signal only the decay acts (η·∂C/∂W ≡ 0 needs η = 0, so
    # compare λ > 0 against λ = 0 instead: the difference is −(ηλ/n)·W for the first mini-batch alone)
    m.set_params(params)
    m.run_epoch(X, Y, order[:4], 4, eta, lmbda)
    with_decay = m.params
    m.set_params(params)
    m.run_epoch(X, Y, order[:4], 4, eta, 0.0)
    without = m.params
    for (Wd, bd), (W0, b0), (W, _) in zip(with_decay, without, params):
        np.testing.assert_allclose(Wd - W0, -(eta * lmbda / 4) * W, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(bd, b0, rtol=0, atol=0)  # biases are not decayed


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_batch_and_unused_rows_do_not_matter(backend):
    """With ``drop_last`` the short last mini-batch is skipped: its rows cannot change the result."""
    m = kit.model("soft", backend)
    params, X, Y, rng = _case("soft", 17, seed=2)
    order = rng.permutation(17)  # 3 mini-batches of 5, two samples skipped
    m.set_params(params)
    m.run_epoch(X, Y, order, 5, 0.6, 0.1, drop_last=True)
    want = m.params
    X2 = X.copy()
    X2[order[15:]] = 1e3  # the skipped samples
    m.set_params(params)
    m.run_epoch(X2, Y, order, 5, 0.6, 0.1, drop_last=True)
    kit.assert_params_close(m.params, want, rtol=0, atol=0, what="skipped rows changed the result")
    m.set_params(params)
    m.run_epoch(X2, Y, order, 5, 0.6, 0.1)  # by default they are trained
    assert not np.allclose(m.params[0][0], want[0][0])
    # a mini-batch larger than the epoch: no update at all with drop_last (not even the weight decay); one
    # step over all the rows without
    m.set_params(params)
    m.run_epoch(X, Y, order, 18, 0.6, 0.1, drop_last=True)
    kit.assert_params_close(m.params, params, rtol=0, atol=0, what="no full mini-batch")
    m.set_params(params)
    one_step = step_by_step(m, X, Y, order, 18, 0.6, 0.1)
    m.set_params(params)
    m.run_epoch(X, Y, order, 18, 0.6, 0.1)
    kit.assert_params_close(m.params, one_step, **CLOSE, what="one short step")


@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_labels_in_run_epoch(backend):
    m = kit.model("soft", backend)
    spec = kit.POOL["soft"]
    rng = np.random.default_rng(4)
    params = kit.random_params(spec[0], rng)
    X, labels = kit.make_data(spec, 12, rng, labels=True)
    order = rng.permutation(12)
    m.set_params(params)
    m.run_epoch(X, labels, order, 4, 1.0)
    with_labels = m.params
    m.set_params(params)
    m.run_epoch(X, np.eye(3)[labels], order, 4, 1.0)
    kit.assert_params_close(with_labels, m.params, rtol=0, atol=0, what="labels vs one-hot")


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_epoch_large_batches_blas_path(backend):
    """Mini-batches big enough for BLAS in the numba kernel (α = −η/m, β = 1 − ηλ/n in one ?gemm)."""
    m = kit.model("sig", backend)
    params, X, Y, rng = _case("sig", 1200, seed=5)
    order = rng.permutation(1200)
    m.set_params(params)
    want = step_by_step(m, X, Y, order, 500, 2.0, 5.0)
    m.set_params(params)
    m.run_epoch(X, Y, order, 500, 2.0, 5.0)
    kit.assert_params_close(m.params, want, rtol=1e-11, atol=1e-13, what="BLAS-sized batches")


def test_run_epoch_updates_in_place_and_params_are_copies():
    m = kit.model("sig")
    params, X, Y, rng = _case("sig", 10, seed=6)
    m.set_params(params)
    snapshot = m.params
    snapshot[0][0][...] = 123.0  # editing a copy must not touch the model
    assert not np.any(m.params[0][0] == 123.0)
    m.run_epoch(X, Y, np.arange(10), 5, 1.0)
    assert all(not np.array_equal(a[0], b[0]) for a, b in zip(m.params, params))
