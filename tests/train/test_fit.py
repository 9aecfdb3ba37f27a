"""Training on small slices of real MNIST: learning, history, early stopping, continuation, evaluation."""

import numpy as np
import pytest

import symbp as sb


@pytest.fixture(scope="module")
def mnist(data_dir):
    return sb.data.load_mnist(data_dir)


@pytest.fixture(scope="module")
def small(mnist):
    X, y = mnist.train
    Xv, yv = mnist.validation
    return (X[:3000], y[:3000]), (Xv[:1000], yv[:1000])


def ch1_net():
    return sb.Network([784, 30, 10], activation=sb.sigmoid, cost=sb.quadratic)


def test_fit_learns_real_digits(small):
    train, val = small
    model = ch1_net().compile(seed=0)
    before = model.evaluate(val)
    hist = model.fit(train, epochs=3, batch_size=10, eta=3.0, evaluation_data=val, seed=1, progress=False)
    assert len(hist.evaluation_accuracy) == 3 and len(hist.epoch_seconds) == 3
    assert hist.evaluation_accuracy[-1] > 0.80 > before + 0.3  # chance is 10%
    assert model.evaluate(val) == pytest.approx(hist.evaluation_accuracy[-1])


def test_cross_entropy_with_l2_and_monitoring(small):
    train, val = small
    model = sb.Network([784, 30, 10], activation=sb.sigmoid, cost=sb.cross_entropy).compile(seed=0)
    hist = model.fit(train, epochs=2, batch_size=10, eta=0.5, lmbda=5.0, evaluation_data=val,
                     monitor_training=True, seed=0, progress=False)
    assert len(hist.training_cost) == len(hist.training_accuracy) == 2
    assert hist.training_cost[1] < hist.training_cost[0]
    assert hist.evaluation_accuracy[-1] > 0.8
    # the reported cost includes the L2 term (λ/2n)Σw²
    W2sum = sum(float((W**2).sum()) for W, _ in model.params)
    assert hist.training_cost[-1] == pytest.approx(model.cost(*train) + 0.5 * 5.0 / 3000 * W2sum, rel=1e-9)


def test_fit_is_seeded_and_continues(small):
    train, _ = small
    m1, m2 = ch1_net().compile(seed=3), ch1_net().compile(seed=3)
    m1.fit(train, epochs=1, batch_size=10, eta=3.0, seed=7, progress=False)
    m2.fit(train, epochs=1, batch_size=10, eta=3.0, seed=7, progress=False)
    for (W1, b1), (W2, b2) in zip(m1.params, m2.params):
        np.testing.assert_array_equal(W1, W2)
        np.testing.assert_array_equal(b1, b2)
    after_one = m1.params
    m1.fit(train, epochs=1, batch_size=10, eta=3.0, seed=8, progress=False)
    assert not np.array_equal(m1.params[0][0], after_one[0][0])  # continued from the current parameters


def test_fit_equals_run_epoch_with_the_same_permutation(small):
    (X, y), _ = small
    X, y = X[:500], y[:500]
    m1, m2 = ch1_net().compile(seed=4), ch1_net().compile(seed=4)
    m1.fit((X, y), epochs=1, batch_size=10, eta=3.0, lmbda=1.0, seed=11, progress=False)
    order = np.random.default_rng(11).permutation(500)
    m2.run_epoch(X, np.eye(10)[y], order, 10, 3.0, lmbda=1.0)
    for (W1, b1), (W2, b2) in zip(m1.params, m2.params):
        np.testing.assert_allclose(W1, W2, rtol=0, atol=1e-13)
        np.testing.assert_allclose(b1, b2, rtol=0, atol=1e-13)


def test_early_stopping_keeps_the_best_parameters(small):
    train, val = small
    model = ch1_net().compile(seed=0)
    # A huge learning rate makes accuracy stall or fall after the first epochs.
    hist = model.fit(train, epochs=30, batch_size=10, eta=60.0, evaluation_data=val, early_stopping=2,
                     seed=0, progress=False)
    assert hist.stopped_early and len(hist.epochs) < 30
    best = max(hist.evaluation_accuracy)
    assert hist.evaluation_accuracy[hist.best_epoch - 1] == best
    assert len(hist.epochs) - hist.best_epoch == 2
    assert model.evaluate(val) == pytest.approx(best)


def test_labels_may_be_integers_or_one_hot(small):
    (X, y), _ = small
    model = ch1_net().compile(seed=0)
    assert model.evaluate((X[:200], y[:200])) == model.evaluate((X[:200], np.eye(10)[y[:200]]))
    assert model.cost(X[:50], y[:50]) == pytest.approx(model.cost(X[:50], np.eye(10)[y[:50]]))


def test_fit_rejects_bad_arguments(small):
    train, val = small
    model = ch1_net().compile(seed=0)
    for kwargs, msg in [({"batch_size": 0}, "batch_size"), ({"eta": float("nan")}, "eta"),
                        ({"epochs": -1}, "epochs"), ({"lmbda": -1.0}, "lmbda"), ({"early_stopping": 0}, "early")]:
        with pytest.raises(ValueError, match=msg):
            model.fit(train, **kwargs)
    with pytest.raises(ValueError, match="pair"):
        model.fit(train[0])
    bad = train[0][:20].copy()
    bad[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit((bad, train[1][:20]), epochs=1)


def test_divergence_is_reported_not_silent(small):
    (X, y), _ = small
    model = sb.Network([784, 30, 10], activation=sb.linear, cost=sb.quadratic).compile(seed=0)
    with pytest.raises(FloatingPointError, match="diverged"):
        model.fit((X[:500], y[:500]), epochs=5, batch_size=10, eta=1e6, progress=False)


def test_float32_training(small):
    train, val = small
    model = ch1_net().compile(dtype="float32", seed=0)
    hist = model.fit(train, epochs=2, batch_size=10, eta=3.0, evaluation_data=val, seed=0, progress=False)
    assert model.params[0][0].dtype == np.float32
    assert hist.evaluation_accuracy[-1] > 0.8


def test_numpy_backend_trains_the_same(small):
    (X, y), _ = small
    m1 = ch1_net().compile(backend="numba", seed=5)
    m2 = ch1_net().compile(backend="numpy", seed=5)
    m1.fit((X[:400], y[:400]), epochs=1, batch_size=10, eta=3.0, seed=2, progress=False)
    m2.fit((X[:400], y[:400]), epochs=1, batch_size=10, eta=3.0, seed=2, progress=False)
    for (W1, b1), (W2, b2) in zip(m1.params, m2.params):
        np.testing.assert_allclose(W1, W2, rtol=0, atol=1e-12)
        np.testing.assert_allclose(b1, b2, rtol=0, atol=1e-12)
