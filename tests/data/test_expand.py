"""sb.data.expand_mnist: the book's expanded training set (each image and its four one-pixel shifts)."""

import tracemalloc

import numpy as np
import pytest

import symbp as sb
from symbp.data import expand_mnist


def book_expand(X, y):
    """The loop of the book's expand_mnist.py (without its final shuffle)."""
    out_x, out_y = [], []
    for x, label in zip(X, y):
        out_x.append(x)
        out_y.append(label)
        image = np.reshape(x, (-1, 28))
        for d, axis, index_position, index in [(1, 0, "first", 0), (-1, 0, "first", 27),
                                               (1, 1, "last", 0), (-1, 1, "last", 27)]:
            new_img = np.roll(image, d, axis)
            if index_position == "first":
                new_img[index, :] = np.zeros(28)
            else:
                new_img[:, index] = np.zeros(28)
            out_x.append(np.reshape(new_img, 784))
            out_y.append(label)
    return np.array(out_x), np.array(out_y)


def one_pixel(r, c, value=1.0, dtype=np.float32):
    img = np.zeros((28, 28), dtype)
    img[r, c] = value
    return img.reshape(1, 784)


def pixels(X):
    """The (row, column) of every nonzero pixel of each image."""
    return [list(zip(*np.nonzero(x.reshape(28, 28)))) for x in X]


def test_a_bright_pixel_moves_by_one():
    X, y = expand_mnist((one_pixel(10, 17), np.array([3])))
    assert X.shape == (5, 784) and y.tolist() == [3] * 5
    # the original, then down, up, right, left (the book's order)
    assert pixels(X) == [[(10, 17)], [(11, 17)], [(9, 17)], [(10, 18)], [(10, 16)]]
    assert X.sum(axis=1).tolist() == [1.0] * 5


@pytest.mark.parametrize("r, c, lost", [(27, 5, 1), (0, 5, 2), (5, 27, 3), (5, 0, 4)])
def test_the_border_pixel_falls_off(r, c, lost):
    X, _ = expand_mnist((one_pixel(r, c), np.array([0])))
    assert pixels(X)[0] == [(r, c)]
    for k in range(1, 5):
        assert (pixels(X)[k] == []) == (k == lost), (k, pixels(X)[k])


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_equals_the_books_loop_and_keeps_the_dtype(dtype):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (7, 784)).astype(dtype)
    if dtype != np.uint8:
        X /= 255
    y = rng.integers(0, 10, 7)
    got_x, got_y = expand_mnist((X, y))
    want_x, want_y = book_expand(X, y)
    assert got_x.dtype == dtype and got_x.shape == (35, 784)
    np.testing.assert_array_equal(got_x, want_x)
    assert got_y.dtype == y.dtype and np.array_equal(got_y, want_y)
    assert np.array_equal(got_y, np.repeat(y, 5))
    assert np.array_equal(got_x[::5], X)  # every fifth is an original, in order


def test_image_layouts_and_read_only_input():
    rng = np.random.default_rng(1)
    X = rng.random((4, 784), dtype=np.float32)
    X.flags.writeable = False  # as load_mnist's arrays
    y = np.arange(4)
    flat, _ = expand_mnist((X, y))
    assert flat.flags.writeable and flat.flags.c_contiguous
    for shape in ((4, 28, 28), (4, 1, 28, 28)):
        got, labels = expand_mnist(sb.data.Split(X.reshape(shape), y))
        assert got.shape == (20, *shape[1:]) and np.array_equal(got.reshape(20, 784), flat)
    empty, labels = expand_mnist((X[:0], y[:0]))
    assert empty.shape == (0, 784) and labels.shape == (0,)


def test_bad_input_is_a_value_error():
    X, y = np.zeros((3, 784), np.float32), np.zeros(3, np.int64)
    for bad, match in [(X, "expected the training split"), ((X[:, :700], y), "28x28 images"),
                       ((X.reshape(3, 28, 28, 1), y), "28x28 images"), ((X, y[:2]), "one label per image"),
                       ((X.astype(object), y), "must hold numbers")]:
        with pytest.raises(ValueError, match=match):
            expand_mnist(bad)


def test_memory_is_one_preallocated_result():
    """No Python per image and no temporaries: the peak is the result itself (plus the labels)."""
    X = np.random.default_rng(2).random((2000, 784), dtype=np.float32)
    y = np.zeros(2000, np.int64)
    tracemalloc.start()
    try:
        got, _ = expand_mnist((X, y))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    result = got.nbytes + 5 * y.nbytes
    assert peak < 1.05 * result + 1e6, (peak, result)


def test_expanded_mnist(data_dir):
    train = sb.data.load_mnist(data_dir, dtype="float32").train
    X, y = expand_mnist(train)
    assert X.shape == (250_000, 784) and X.dtype == np.float32 and y.shape == (250_000,)
    assert np.array_equal(X[::5], train.X) and np.array_equal(y[::5], train.labels)
    k = 12_345
    want_x, _ = book_expand(train.X[k:k + 1], train.labels[k:k + 1])
    np.testing.assert_array_equal(X[5 * k:5 * k + 5], want_x)
