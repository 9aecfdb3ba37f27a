"""Input checking at the Model boundary: bad arrays are ValueErrors that say what was expected; arrays
that are merely inconvenient (ints, read-only, non-contiguous, Fortran order, integer labels) work and give
the same results as clean float arrays."""

from __future__ import annotations

import compile_kit as kit
import numpy as np
import pytest

BACKENDS = ["numba", "numpy"]


@pytest.fixture(params=BACKENDS)
def case(request):
    """The [4, 3, 2] sigmoid/quadratic model with fixed parameters and clean data."""
    m = kit.model("sig", request.param)
    rng = np.random.default_rng(0)
    m.set_params(kit.random_params([4, 3, 2], rng))
    X = rng.uniform(-1, 1, (6, 4))
    Y = rng.uniform(0, 1, (6, 2))
    return m, X, Y


def _all_outputs(m, X, Y):
    return m.feedforward(X), m.cost(X, Y), m.gradients(X, Y)


def _assert_same(got, want):
    np.testing.assert_allclose(got[0], want[0], rtol=1e-13, atol=1e-15)
    assert got[1] == pytest.approx(want[1], rel=1e-13)
    kit.assert_params_close(got[2], want[2], rtol=1e-13, atol=1e-15)


# ------------------------------------------------------------------------------------------- refused
@pytest.mark.parametrize("method", ["feedforward", "cost", "gradients"])
def test_wrong_width(case, method):
    m, X, Y = case
    args = (X[:, :3],) if method == "feedforward" else (X[:, :3], Y)
    with pytest.raises(ValueError, match=r"X must have 4 columns.*\(6, 3\)"):
        getattr(m, method)(*args)


def test_wrong_target_width(case):
    m, X, Y = case
    with pytest.raises(ValueError, match=r"Y must have 2 columns"):
        m.cost(X, np.ones((6, 3)))


def test_one_dimensional_X(case):
    m, X, Y = case
    with pytest.raises(ValueError, match=r"X must be 2-d.*reshape\(1, -1\)"):
        m.feedforward(X[0])
    with pytest.raises(ValueError, match=r"X must be 2-d"):
        m.gradients(X[0], Y[0])


def test_one_dimensional_X_in_run_epoch(case):
    m, X, Y = case
    with pytest.raises(ValueError, match=r"X must be 2-d"):
        m.run_epoch(X[0], Y, np.arange(1), 1, 0.1)


def test_three_dimensional_X(case):
    m, X, _ = case
    with pytest.raises(ValueError, match=r"X must be 2-d"):
        m.feedforward(X.reshape(2, 3, 4))


def test_row_count_mismatch(case):
    m, X, Y = case
    for method in (m.cost, m.gradients):
        with pytest.raises(ValueError, match=r"same number of rows, got 6 and 5"):
            method(X, Y[:5])
    with pytest.raises(ValueError, match=r"same number of rows"):
        m.run_epoch(X, Y[:5], np.arange(5), 5, 0.1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_in_inputs_and_targets(case, bad):
    m, X, Y = case
    Xb = X.copy()
    Xb[2, 1] = bad
    with pytest.raises(ValueError, match=r"X contains NaN or inf \(first at row 2, column 1\)"):
        m.feedforward(Xb)
    with pytest.raises(ValueError, match=r"X contains NaN or inf"):
        m.gradients(Xb, Y)
    with pytest.raises(ValueError, match=r"X contains NaN or inf"):
        m.run_epoch(Xb, Y, np.arange(6), 2, 0.1)
    Yb = Y.copy()
    Yb[4, 0] = bad
    with pytest.raises(ValueError, match=r"Y contains NaN or inf \(first at row 4, column 0\)"):
        m.cost(X, Yb)
    with pytest.raises(ValueError, match=r"Y contains NaN or inf"):
        m.run_epoch(X, Yb, np.arange(6), 2, 0.1)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_in_params(case, bad):
    m, X, _ = case
    before = m.params
    params = m.params
    params[1][0][0, 2] = bad
    with pytest.raises(ValueError, match=r"W2 contains NaN or inf"):
        m.set_params(params)
    params = m.params
    params[0][1][1] = bad
    with pytest.raises(ValueError, match=r"b1 contains NaN or inf"):
        m.set_params(params)
    kit.assert_params_close(m.params, before, rtol=0, atol=0, what="a refused set_params changed the model")


def test_wrong_param_shapes(case):
    m, _, _ = case
    (W1, b1), (W2, b2) = m.params
    with pytest.raises(ValueError, match=r"W1 must have shape \(3, 4\), got \(2, 4\)"):
        m.set_params([(W1[:2], b1), (W2, b2)])
    with pytest.raises(ValueError, match=r"W2 must have 3 columns"):
        m.set_params([(W1, b1), (W2[:, :2], b2)])
    with pytest.raises(ValueError, match=r"W1 must have 4 columns.*got shape \(4, 3\)"):
        m.set_params([(W1.T, b1), (W2, b2)])
    with pytest.raises(ValueError, match=r"b2 must be a real vector of shape \(2,\)"):
        m.set_params([(W1, b1), (W2, b2[:1])])
    with pytest.raises(ValueError, match=r"b1 must be a real vector of shape \(3,\)"):
        m.set_params([(W1, b1.reshape(3, 1)), (W2, b2)])
    with pytest.raises(ValueError, match=r"expected 2 \(W, b\) pairs, got 1"):
        m.set_params([(W1, b1)])
    for not_a_pair in ((W2, b2, b2), None, 3.0):
        with pytest.raises(ValueError, match=r"layer 2: expected a \(W, b\) pair"):
            m.set_params([(W1, b1), not_a_pair])


@pytest.mark.parametrize("dtype", [np.complex128, object, str])
def test_non_real_dtypes_refused(case, dtype):
    m, X, Y = case
    with pytest.raises(ValueError, match=r"X must hold real numbers, got dtype"):
        m.feedforward(X.astype(dtype))
    with pytest.raises(ValueError, match=r"Y must hold real numbers"):
        m.cost(X, Y.astype(dtype))
    (W1, b1), (W2, b2) = m.params
    with pytest.raises(ValueError, match=r"W1 must hold real numbers"):
        m.set_params([(W1.astype(dtype), b1), (W2, b2)])
    with pytest.raises(ValueError, match=r"b2 must be a real vector"):
        m.set_params([(W1, b1), (W2, b2.astype(dtype))])


def test_labels_out_of_range_or_float_refused(case):
    m, X, _ = case
    with pytest.raises(ValueError, match=r"integer labels must lie in 0..1, got 0..2"):
        m.cost(X, np.array([0, 1, 2, 0, 1, 0]))
    with pytest.raises(ValueError, match=r"integer labels must lie in 0..1, got -1..1"):
        m.gradients(X, np.array([0, 1, -1, 0, 1, 0]))
    with pytest.raises(ValueError, match=r"Y must be 2-d .* or 1-d integer labels"):
        m.cost(X, np.array([0.0, 1, 1, 0, 1, 0]))


def test_run_epoch_arguments(case):
    m, X, Y = case
    with pytest.raises(ValueError, match=r"order must be a 1-d array of row indices in 0..5"):
        m.run_epoch(X, Y, np.array([0, 6]), 1, 0.1)
    with pytest.raises(ValueError, match=r"order must be a 1-d array"):
        m.run_epoch(X, Y, np.array([0, -1]), 1, 0.1)
    with pytest.raises(ValueError, match=r"order must be a 1-d array"):
        m.run_epoch(X, Y, np.arange(6).reshape(2, 3), 1, 0.1)
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match=r"batch_size must be a positive integer"):
            m.run_epoch(X, Y, np.arange(6), bad, 0.1)
    for name, kwargs in (("eta", {"eta": -1.0}), ("eta", {"eta": np.nan}), ("lmbda", {"eta": 0.1, "lmbda": np.inf})):
        with pytest.raises(ValueError, match=rf"{name} must be a finite non-negative number"):
            m.run_epoch(X, Y, np.arange(6), 2, **kwargs)


def test_empty_inputs(case):
    m, X, Y = case
    assert m.feedforward(X[:0]).shape == (0, 2)
    with pytest.raises(ValueError, match="empty"):
        m.cost(X[:0], Y[:0])
    with pytest.raises(ValueError, match="empty"):
        m.gradients(X[:0], Y[:0])


# -------------------------------------------------------------------------------------------- accepted
def test_int_and_bool_inputs_are_converted(case):
    m, _, _ = case
    Xi = np.arange(24).reshape(6, 4) % 3 - 1
    Yi = (np.arange(12).reshape(6, 2) % 2).astype(np.int32)
    _assert_same(_all_outputs(m, Xi, Yi), _all_outputs(m, Xi.astype(float), Yi.astype(float)))
    Xb = Xi > 0
    np.testing.assert_array_equal(m.feedforward(Xb), m.feedforward(Xb.astype(float)))
    Xl = [[0.5, 1, 0, -1]]  # nested lists too
    np.testing.assert_array_equal(m.feedforward(Xl), m.feedforward(np.array(Xl)))


def test_float32_inputs_in_float64_model(case):
    m, X, Y = case
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    _assert_same(_all_outputs(m, X32, Y32), _all_outputs(m, X32.astype(float), Y32.astype(float)))


def test_read_only_arrays(case):
    m, X, Y = case
    want = _all_outputs(m, X, Y)
    Xr, Yr = X.copy(), Y.copy()
    Xr.setflags(write=False)
    Yr.setflags(write=False)
    _assert_same(_all_outputs(m, Xr, Yr), want)
    params = m.params
    for W, b in params:
        W.setflags(write=False)
        b.setflags(write=False)
    m.set_params(params)
    _assert_same(_all_outputs(m, X, Y), want)
    order = np.arange(6)
    order.setflags(write=False)
    m.run_epoch(Xr, Yr, order, 3, 0.5)
    after_ro = m.params
    m.set_params(params)
    m.run_epoch(X, Y, np.arange(6), 3, 0.5)
    kit.assert_params_close(after_ro, m.params, rtol=0, atol=0, what="read-only run_epoch")


def test_non_contiguous_and_fortran_arrays(case):
    m, X, Y = case
    want = _all_outputs(m, X, Y)
    wide = np.zeros((6, 8))
    wide[:, ::2] = X  # X[:, ::2] of a wider array: strided columns
    Ywide = np.zeros((12, 2))
    Ywide[::2] = Y  # strided rows
    _assert_same(_all_outputs(m, wide[:, ::2], Ywide[::2]), want)
    _assert_same(_all_outputs(m, np.asfortranarray(X), np.asfortranarray(Y)), want)
    # reversed rows (negative strides) and a transposed view
    _assert_same(_all_outputs(m, X[::-1][::-1], np.ascontiguousarray(Y.T).T), want)
    params = m.params
    m.set_params([(np.asfortranarray(W), b[::-1][::-1]) for W, b in params])
    _assert_same(_all_outputs(m, X, Y), want)
    m.run_epoch(wide[:, ::2], np.asfortranarray(Y), np.arange(6)[::-1], 2, 0.5)
    after = m.params
    m.set_params(params)
    m.run_epoch(X, Y, np.arange(6)[::-1].copy(), 2, 0.5)
    kit.assert_params_close(after, m.params, rtol=0, atol=0, what="strided run_epoch")


def test_integer_labels_as_targets():
    """Labels (n,) give the same cost and gradients as their one-hot rows."""
    m = kit.model("soft")
    rng = np.random.default_rng(3)
    X, labels = kit.make_data(kit.POOL["soft"], 8, rng, labels=True)
    for lab in (labels, labels.astype(np.int32), labels.astype(np.uint8)):
        onehot = np.eye(3)[lab]
        assert m.cost(X, lab) == m.cost(X, onehot)
        kit.assert_params_close(m.gradients(X, lab), m.gradients(X, onehot), rtol=0, atol=0, what="labels")


def test_params_keep_their_true_shapes(case):
    m, _, _ = case
    assert [(W.shape, b.shape) for W, b in m.params] == [((3, 4), (3,)), ((2, 3), (2,))]
    assert [(dW.shape, db.shape) for dW, db in m.gradients(np.zeros((1, 4)), np.zeros((1, 2)))] == \
        [((3, 4), (3,)), ((2, 3), (2,))]
