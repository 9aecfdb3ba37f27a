"""``runtime.vexp``: float32 e^x as a branch-free polynomial the loop vectoriser can widen (float64 is math.exp),
and the float32 sigmoid built on it."""

import math

import numpy as np
from numba import njit

from symbp.compile.backends.numba import runtime as rt


@njit(cache=False)
def _exp_all(x, out):
    for i in range(x.size):
        out[i] = rt.vexp(x[i])


@njit(cache=False)
def _sigmoid_all(x, out):
    for i in range(x.size):
        out[i] = rt.sigmoid(x[i])


def test_float32_exp_is_within_two_ulp_of_the_true_value():
    x = np.linspace(-87.3, 88.3, 1_000_001).astype(np.float32)
    out = np.empty_like(x)
    _exp_all(x, out)
    true = np.exp(x.astype(np.float64))
    ulp = np.spacing(true.astype(np.float32)).astype(np.float64)
    assert out.dtype == np.float32
    assert np.max(np.abs(out - true) / ulp) <= 2.0


def test_float32_exp_clamps_and_keeps_nan():
    x = np.array([np.nan, np.inf, -np.inf, 1000.0, -1000.0, 0.0], dtype=np.float32)
    out = np.empty_like(x)
    _exp_all(x, out)
    assert np.isnan(out[0]) and out[5] == 1.0
    assert np.isfinite(out[1:5]).all() and out[1] == out[3] > 1e38 and 0 < out[2] == out[4] < 1.2e-38


def test_float64_exp_is_math_exp():
    x = np.random.default_rng(0).uniform(-700, 700, 10_000)
    out = np.empty_like(x)
    _exp_all(x, out)
    assert all(o == math.exp(v) for o, v in zip(out, x))


def test_float32_sigmoid_is_accurate_and_saturates_without_nan():
    x = np.concatenate([np.linspace(-30, 30, 100_001), [-1e30, 1e30, -np.inf, np.inf]]).astype(np.float32)
    out = np.empty_like(x)
    _sigmoid_all(x, out)
    true = 1 / (1 + np.exp(-x[:-4].astype(np.float64)))
    assert np.max(np.abs(out[:-4] - true) / true) < 3e-7
    assert list(out[-4:]) == [out[-4], 1.0, out[-2], 1.0] and 0 <= out[-4] < 1e-38 and 0 <= out[-2] < 1e-38
