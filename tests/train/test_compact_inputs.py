"""Compact inputs: uint8 codes with ``input_scale`` give the results of the float inputs they stand for.

The whole-epoch kernel converts the rows it gathers (x = scale·X in float64, rounded to the model's dtype); the
other methods convert blocks of rows.  Float inputs for the comparisons are made as ``X / 255``, the loaders' way,
so the two differ only by the rounding of the scale (x/255 against x·(1/255)).
"""

import numpy as np
import pytest

import symbp as sb
from symbp.train import model as model_module

SCALE = 1 / 255


def codes(n, cols, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, cols), dtype=np.uint8)


def dense_net():
    return sb.Network([12, 7, 4], activation=sb.sigmoid, cost=sb.cross_entropy)


def conv_net():
    return sb.Network([sb.Input((1, 8, 8)), sb.Conv2D(3, (3, 3), sb.relu), sb.MaxPool((2, 2)),
                       sb.Dense(4, sb.softmax)], cost=sb.log_likelihood)


def rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-300))


CASES = [(backend, dtype, tol, dense_net) for backend in ("numba", "numpy")
         for dtype, tol in (("float64", 1e-12), ("float32", 1e-5))]
CASES += [("numba", "float32", 1e-5, conv_net), ("numpy", "float64", 1e-12, conv_net)]  # conv: compiling dominates


@pytest.mark.parametrize(("backend", "dtype", "tol", "make"), CASES,
                         ids=[f"{c[3].__name__}-{c[0]}-{c[1]}" for c in CASES])
def test_an_epoch_on_uint8_equals_the_epoch_on_floats(backend, dtype, tol, make):
    net = make()
    n_in = net.sizes[0]
    X8 = codes(203, n_in)  # not a multiple of the mini-batch: the short last one runs on codes too
    Xf = (X8 / 255).astype(dtype)
    y = np.random.default_rng(1).integers(0, net.sizes[-1], size=203)
    order = np.random.default_rng(2).permutation(203)
    a = net.compile(backend=backend, dtype=dtype, seed=0)
    b = net.compile(backend=backend, dtype=dtype, seed=0)
    a.run_epoch(Xf, y, order, 10, 0.5, lmbda=1.0)
    b.run_epoch(X8, y, order, 10, 0.5, lmbda=1.0, input_scale=SCALE)
    for pa, pb in zip(a._flat(), b._flat()):
        assert rel(pa, pb) <= tol
    assert any(name.endswith("_u8") for name in b.kernels.sources)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_uint8_images_train_as_their_float_images(backend):
    """(n, C, H, W) uint8 images are flattened like float ones, and fit takes input_scale for both datasets."""
    net = conv_net()
    X8 = codes(60, 64, seed=3).reshape(60, 1, 8, 8)
    y = np.arange(60) % 4
    a = net.compile(backend=backend, seed=0)
    b = net.compile(backend=backend, seed=0)
    ha = a.fit((X8 / 255, y), epochs=2, batch_size=7, eta=0.1, evaluation_data=(X8[:20] / 255, y[:20]), seed=0,
               progress=False)
    hb = b.fit((X8, y), epochs=2, batch_size=7, eta=0.1, evaluation_data=(X8[:20], y[:20]), seed=0,
               progress=False, input_scale=SCALE)
    assert ha.evaluation_accuracy == hb.evaluation_accuracy
    assert np.allclose(ha.evaluation_cost, hb.evaluation_cost, rtol=1e-12)
    for pa, pb in zip(a._flat(), b._flat()):
        assert rel(pa, pb) <= 1e-12


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_inference_on_uint8_in_blocks(backend, monkeypatch):
    monkeypatch.setattr(model_module, "CHUNK", 16)  # several blocks, the last one short
    model = dense_net().compile(backend=backend, seed=0)
    X8 = codes(50, 12, seed=4)
    Xf = X8 / 255
    y = np.arange(50) % 4
    assert rel(model.feedforward(Xf), model.feedforward(X8, input_scale=SCALE)) <= 1e-12
    assert model.cost(X8, y, input_scale=SCALE) == pytest.approx(model.cost(Xf, y), rel=1e-12)
    assert model.evaluate((X8, y), input_scale=SCALE) == model.evaluate((Xf, y))
    for ga, gb in zip(model.gradients(Xf, y), model.gradients(X8, y, input_scale=SCALE)):
        for u, v in zip(ga, gb):
            assert rel(u, v) <= 1e-12
    assert model.feedforward(X8[:0], input_scale=SCALE).shape == (0, 4)


def test_the_kernel_converts_exactly_as_scale_times_codes():
    """Not just close: the gathered inputs are float64(code)·scale rounded to the dtype, as ``_floats``."""
    net = sb.Network([5, 3], activation=sb.linear, cost=sb.quadratic)
    X8 = codes(4, 5, seed=5)
    for dtype in ("float64", "float32"):
        a = net.compile(dtype=dtype, seed=0)
        b = net.compile(dtype=dtype, seed=0)
        floats = (X8.astype(np.float64) * 0.37).astype(dtype)
        a.run_epoch(floats, np.zeros((4, 3)), np.arange(4), 4, 0.1)
        b.run_epoch(X8, np.zeros((4, 3)), np.arange(4), 4, 0.1, input_scale=0.37)
        for pa, pb in zip(a._flat(), b._flat()):
            assert np.array_equal(pa, pb)


@pytest.mark.parametrize("scale", [0, -1 / 255, float("nan"), float("inf"), True, "1/255", None])
def test_uint8_without_a_usable_scale_is_refused(scale):
    model = dense_net().compile(seed=0)
    X8, y = codes(10, 12), np.zeros(10, dtype=np.int64)
    match = "input_scale" if scale is not None else "uint8 codes: give input_scale"
    for call in (lambda: model.feedforward(X8, input_scale=scale),
                 lambda: model.cost(X8, y, input_scale=scale),
                 lambda: model.gradients(X8, y, input_scale=scale),
                 lambda: model.evaluate((X8, y), input_scale=scale),
                 lambda: model.run_epoch(X8, y, np.arange(10), 5, 0.1, input_scale=scale),
                 lambda: model.fit((X8, y), epochs=1, progress=False, input_scale=scale)):
        with pytest.raises(ValueError, match=match):
            call()


def test_a_scale_with_float_inputs_is_refused():
    model = dense_net().compile(seed=0)
    X8, y = codes(10, 12), np.zeros(10, dtype=np.int64)
    with pytest.raises(ValueError, match="input_scale is for uint8 inputs"):
        model.feedforward(X8 / 255, input_scale=SCALE)
    with pytest.raises(ValueError, match="evaluation_data's X"):  # uint8 training, float evaluation: say which
        model.fit((X8, y), epochs=1, evaluation_data=(X8 / 255, y), progress=False, input_scale=SCALE)


def test_diagnostics_read_uint8_inputs_as_their_floats():
    net = dense_net()
    X8 = codes(40, 12, seed=6)
    y = np.arange(40) % 4
    a, b = net.compile(seed=0), net.compile(seed=0)
    ha = a.fit((X8 / 255, y), epochs=1, batch_size=8, eta=0.5, seed=0, progress=False, diagnostics=True)
    hb = b.fit((X8, y), epochs=1, batch_size=8, eta=0.5, seed=0, progress=False, diagnostics=True,
               input_scale=SCALE)
    assert np.allclose(ha.diagnostics[-1]["speed"], hb.diagnostics[-1]["speed"], rtol=1e-10)


def test_load_mnist_hands_out_pixels_and_their_scale(data_dir):
    d = sb.data.load_mnist(data_dir, dtype="uint8")
    f = sb.data.load_mnist(data_dir)
    assert d.train.X.dtype == np.uint8 and d.train.X.shape == (50_000, 784) and not d.train.X.flags.writeable
    assert d.input_scale == d.test.input_scale == SCALE and f.input_scale is None
    assert np.array_equal(d.validation.labels, f.validation.labels)
    assert np.allclose(d.test.X * d.input_scale, f.test.X, rtol=1e-15, atol=0)
    assert d.train.X.nbytes * 8 == f.train.X.nbytes
