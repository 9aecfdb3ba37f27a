"""The chapter-1 network [784, 30, 10] (sigmoid, quadratic cost) against an independent implementation of
the book's per-sample backpropagation, written here from the equations (column vectors, network.py
style: BP1 δᴸ = (aᴸ − y) ⊙ σ′(zᴸ), BP2 δˡ = (wˡ⁺¹)ᵀδˡ⁺¹ ⊙ σ′(zˡ), BP3 ∂C/∂b = δ, BP4 ∂C/∂w = δ aᵀ)."""

from __future__ import annotations

import compile_kit as kit
import numpy as np
import pytest

SIZES = [784, 30, 10]


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _sigmoid_prime(z):
    return _sigmoid(z) * (1 - _sigmoid(z))


def book_backprop(weights, biases, x, y):
    """Gradients of C = ½‖aᴸ − y‖² for one sample (x, y column vectors)."""
    nabla_b = [np.zeros(b.shape) for b in biases]
    nabla_w = [np.zeros(w.shape) for w in weights]
    activation, activations, zs = x, [x], []
    for b, w in zip(biases, weights):
        z = w @ activation + b
        zs.append(z)
        activation = _sigmoid(z)
        activations.append(activation)
    delta = (activations[-1] - y) * _sigmoid_prime(zs[-1])  # BP1
    nabla_b[-1] = delta  # BP3
    nabla_w[-1] = delta @ activations[-2].T  # BP4
    for l in range(2, len(weights) + 1):
        delta = (weights[-l + 1].T @ delta) * _sigmoid_prime(zs[-l])  # BP2
        nabla_b[-l] = delta
        nabla_w[-l] = delta @ activations[-l - 1].T
    return nabla_b, nabla_w


def book_update_mini_batch(weights, biases, batch, eta):
    nabla_b = [np.zeros(b.shape) for b in biases]
    nabla_w = [np.zeros(w.shape) for w in weights]
    for x, y in batch:
        db, dw = book_backprop(weights, biases, x, y)
        nabla_b = [nb + d for nb, d in zip(nabla_b, db)]
        nabla_w = [nw + d for nw, d in zip(nabla_w, dw)]
    weights = [w - (eta / len(batch)) * nw for w, nw in zip(weights, nabla_w)]
    biases = [b - (eta / len(batch)) * nb for b, nb in zip(biases, nabla_b)]
    return weights, biases


def _book_params(params):
    return [W.copy() for W, _ in params], [b.reshape(-1, 1).copy() for _, b in params]


def _data(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.random((n, SIZES[0]))  # pixel-like inputs in [0, 1)
    labels = rng.integers(0, SIZES[-1], n)
    return X, np.eye(SIZES[-1])[labels]


@pytest.fixture(params=["numba", "numpy"])
def ch1(request):
    m = kit.model(kit.CH1, backend=request.param)
    m.init_params("large", seed=3)  # the book's chapter-1 N(0, 1) weights
    return m


def test_gradients_match_per_sample_backprop(ch1):
    X, Y = _data(4, seed=11)
    weights, biases = _book_params(ch1.params)
    per_sample = [book_backprop(weights, biases, x.reshape(-1, 1), y.reshape(-1, 1)) for x, y in zip(X, Y)]
    grads = ch1.gradients(X, Y)
    for l, (dW, db) in enumerate(grads):
        want_w = sum(nw[l] for _, nw in per_sample) / len(X)
        want_b = sum(nb[l] for nb, _ in per_sample).ravel() / len(X)
        np.testing.assert_allclose(dW, want_w, rtol=1e-10, atol=1e-13, err_msg=f"dW{l + 1}")
        np.testing.assert_allclose(db, want_b, rtol=1e-10, atol=1e-13, err_msg=f"db{l + 1}")
    # and the cost kernel: C = (1/n) Σ ½‖aᴸ − y‖²
    out = X
    for w, b in zip(weights, biases):
        out = _sigmoid(out @ w.T + b.ravel())
    assert ch1.cost(X, Y) == pytest.approx(0.5 * np.sum((out - Y) ** 2) / len(X), rel=1e-12)
    np.testing.assert_allclose(ch1.feedforward(X), out, rtol=1e-12, atol=1e-14)


def test_one_epoch_matches_book_sgd(ch1):
    X, Y = _data(50, seed=12)
    order = np.random.default_rng(13).permutation(50)
    weights, biases = _book_params(ch1.params)
    for k in range(5):
        rows = order[k * 10:(k + 1) * 10]
        batch = [(X[r].reshape(-1, 1), Y[r].reshape(-1, 1)) for r in rows]
        weights, biases = book_update_mini_batch(weights, biases, batch, eta=3.0)
    before = ch1.params
    ch1.run_epoch(X, Y, order, batch_size=10, eta=3.0)
    got = ch1.params
    assert any(not np.allclose(g[0], b[0]) for g, b in zip(got, before)), "run_epoch changed nothing"
    kit.assert_params_close(got, [(w, b.ravel()) for w, b in zip(weights, biases)], rtol=1e-9, atol=1e-12,
                            what="after one epoch")
