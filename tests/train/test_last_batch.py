"""The book's epoch, exactly: a training set that is not a multiple of the mini-batch size trains its short last
mini-batch too (network.py's ``mini_batches = [training_data[k:k+m] for k in range(0, n, m)]``, each step with
η/len(mini_batch)); ``drop_last=True`` drops it, as symbp used to.

The reference is independent of the epoch kernel: one plain-NumPy SGD step per mini-batch from ``gradients``
(the mean gradient over the mini-batch's rows): w ← (1 − ηλ/n)·w − η·∂C/∂w, b ← b − η·∂C/∂b.
"""

import numpy as np
import pytest

import symbp as sb

N, M, ETA, LMBDA = 2005, 10, 0.5, 2.0


def data(n=N, n_in=6, n_out=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, n_in)), rng.integers(0, n_out, size=n)


def one_by_one(model, X, y, order, m, eta, lmbda, n):
    """SGD step by step: the mini-batches order[k:k+m] for k = 0, m, 2m, ... (the last one shorter)."""
    steps = 0
    for k in range(0, len(order), m):
        rows = order[k:k + m]
        grads = model.gradients(X[rows], y[rows])
        model.set_params([((1 - eta * lmbda / n) * W - eta * dW, b - eta * db)
                          for (W, b), (dW, db) in zip(model.params, grads)])
        steps += 1
    return steps


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("cost", [sb.quadratic, sb.cross_entropy], ids=["quadratic", "cross_entropy"])
def test_an_epoch_of_2005_rows_is_201_updates(backend, cost):
    net = sb.Network([6, 5, 3], activation=sb.sigmoid, cost=cost)
    X, y = data()
    order = np.random.default_rng(1).permutation(N)
    epoch = net.compile(backend=backend, seed=0)
    steps = net.compile(backend=backend, seed=0)
    epoch.run_epoch(X, y, order, M, ETA, lmbda=LMBDA)
    assert one_by_one(steps, X, y, order, M, ETA, LMBDA, N) == 201  # the last with 5 rows
    for (W1, b1), (W2, b2) in zip(epoch.params, steps.params):
        np.testing.assert_allclose(W1, W2, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(b1, b2, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_drop_last_makes_200_updates(backend):
    net = sb.Network([6, 5, 3], activation=sb.sigmoid, cost=sb.quadratic)
    X, y = data()
    order = np.random.default_rng(1).permutation(N)
    epoch = net.compile(backend=backend, seed=0)
    steps = net.compile(backend=backend, seed=0)
    default = net.compile(backend=backend, seed=0)
    epoch.run_epoch(X, y, order, M, ETA, lmbda=LMBDA, drop_last=True)
    default.run_epoch(X, y, order, M, ETA, lmbda=LMBDA)
    assert one_by_one(steps, X, y, order[:2000], M, ETA, LMBDA, N) == 200
    for (W1, _), (W2, _), (W3, _) in zip(epoch.params, steps.params, default.params):
        np.testing.assert_allclose(W1, W2, rtol=1e-12, atol=1e-14)
        assert not np.allclose(W1, W3)  # the short mini-batch did change the default epoch


def test_fit_trains_the_short_mini_batch_and_momentum_carries_through_it():
    """fit's default is the book's epoch; with momentum the last step uses the velocities of the others."""
    net = sb.Network([6, 5, 3], activation=sb.tanh, cost=sb.quadratic)
    X, y = data(n=23)
    a, b, c = (net.compile(seed=0) for _ in range(3))
    a.fit((X, y), epochs=2, batch_size=5, eta=0.2, seed=3, progress=False, momentum=0.5)
    b.fit((X, y), epochs=2, batch_size=5, eta=0.2, seed=3, progress=False, momentum=0.5, drop_last=True)
    rng = np.random.default_rng(3)
    for epoch in range(2):  # fit's own shuffles, replayed
        c.run_epoch(X, y, rng.permutation(23), 5, 0.2, n=23, epoch=epoch, momentum=0.5)
    for (Wa, ba), (Wb, _), (Wc, bc) in zip(a.params, b.params, c.params):
        np.testing.assert_array_equal(Wa, Wc)
        np.testing.assert_array_equal(ba, bc)
        assert not np.allclose(Wa, Wb)


def test_a_set_smaller_than_the_mini_batch_is_one_step():
    net = sb.Network([6, 5, 3], activation=sb.sigmoid, cost=sb.quadratic)
    X, y = data(n=7)
    a, b = net.compile(seed=0), net.compile(seed=0)
    a.run_epoch(X, y, np.arange(7), 10, ETA)
    assert one_by_one(b, X, y, np.arange(7), 10, ETA, 0.0, 7) == 1
    for (W1, _), (W2, _) in zip(a.params, b.params):
        np.testing.assert_allclose(W1, W2, rtol=1e-12)
