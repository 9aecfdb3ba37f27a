"""The book's expanded MNIST training set (chapter 6, ``expand_mnist.py``).

Takes: a training split ``(X, labels)``, ``X`` of shape (n, 784) (MNIST's flat rows; also (n, 28, 28) or
(n, 1, 28, 28)), float or uint8.  Gives: ``expand_mnist(train)``, a ``Split`` of 5n images: for each image,
in order, the image itself, then its one-pixel shifts down, up, right and left (the order of the book's
loop: ``np.roll`` by +1 and −1 along the rows, then along the columns), the row or column shifted in filled
with zeros; the labels repeated five times each; ``X`` in the input's dtype and layout.

The book then shuffles the 250,000 pairs; this does not (``fit`` shuffles every epoch).  The result is one
preallocated array filled by five whole-array slice copies (no Python per image, no temporaries): 250,000
float32 rows take 784 MB beside the input.  The returned arrays are new and writeable.
"""

from __future__ import annotations

import numpy as np

from symbp.data.datasets import IMAGE_SHAPE, Split

#: images per original image in the expanded set
EXPANSION = 5


def expand_mnist(train) -> Split:
    """Each image of ``train = (X, labels)`` followed by its one-pixel shifts down, up, right and left."""
    try:
        X, labels = train
    except (TypeError, ValueError):
        raise ValueError("expand_mnist: expected the training split (X, labels), e.g. sb.data.load_mnist().train, "
                         f"got {type(train).__name__}") from None
    X, labels = np.asarray(X), np.asarray(labels)
    h, w = IMAGE_SHAPE
    if X.ndim not in (2, 3, 4) or X.shape[1:] not in ((h * w,), (h, w), (1, h, w)):
        raise ValueError(f"expand_mnist: X must hold {h}x{w} images as (n, {h * w}) rows (or (n, {h}, {w}), "
                         f"(n, 1, {h}, {w})), got shape {X.shape}")
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        raise ValueError(f"expand_mnist: X must hold numbers (float or uint8 pixels), got dtype {X.dtype}")
    if labels.ndim < 1 or labels.shape[0] != X.shape[0]:
        raise ValueError(f"expand_mnist: expected one label per image ({X.shape[0]}), got labels of shape "
                         f"{labels.shape}")
    n = X.shape[0]
    img = X.reshape(n, h, w)
    out = np.zeros((n, EXPANSION, h, w), dtype=X.dtype)  # zero pages until written: only the result's memory
    out[:, 0] = img
    out[:, 1, 1:, :] = img[:, :-1, :]  # down: np.roll(image, 1, axis=0), first row zeroed
    out[:, 2, :-1, :] = img[:, 1:, :]  # up: np.roll(image, -1, axis=0), last row zeroed
    out[:, 3, :, 1:] = img[:, :, :-1]  # right: np.roll(image, 1, axis=1), first column zeroed
    out[:, 4, :, :-1] = img[:, :, 1:]  # left: np.roll(image, -1, axis=1), last column zeroed
    return Split(out.reshape((n * EXPANSION, *X.shape[1:])), np.repeat(labels, EXPANSION, axis=0))
