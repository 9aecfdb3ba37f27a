"""The checks of a model's arguments and arrays, each refusal a one-line ``ValueError`` naming the argument.

Takes: what a caller hands ``Model``: numbers, arrays, a regularizer, a momentum, a network and a dtype.  Gives:
``as_matrix`` (inputs or targets as C-contiguous rows of the model's dtype, or of uint8 codes), ``as_targets``
(targets, integer labels turned into one-hot rows), ``checked_scale`` (``input_scale``), ``whole_number``,
``non_negative``, ``real_number``, ``checked_regularizer``, ``checked_momentum``, ``check_weight_decay`` (the L2
decay 1 − ηλ/n inside [−1, 1]), ``check_constants`` (the expressions' constants fit the dtype) and ``shown`` (a
value for a one-line message).
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def real_number(v) -> float | None:
    """v as a float when it is a real number (Python's or NumPy's, not a bool; an integer too large for a float
    is inf), else None."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        return None
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def shown(v) -> str:
    """repr(v) for a one-line message: a huge integer by its size."""
    text = repr(v)
    return text if len(text) <= 40 else f"{text[:12]}…({len(text)} characters)"


def whole_number(name: str, v, lo: int, hi: int | None = None) -> int:
    """v as an int in lo..hi (an integral float such as 30.0 too), else a ValueError naming ``name``."""
    if isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)):
        f = int(v)  # compared exactly: 2**63 - 1 is not a float
    else:
        f = real_number(v)
        f = f if f is not None and math.isfinite(f) and f.is_integer() else None
    if f is None or f < lo or (hi is not None and f > hi):
        bounds = "a non-negative integer" if (lo, hi) == (0, None) else \
            "a positive integer" if (lo, hi) == (1, None) else f"an integer in {lo}..{hi}"
        raise ValueError(f"{name} must be {bounds}, got {shown(v)}")
    return int(v)


def non_negative(name: str, v) -> float:
    f = real_number(v)
    if f is None or not math.isfinite(f) or f < 0:
        raise ValueError(f"{name} must be a finite non-negative number, got {shown(v)}")
    return f


def check_weight_decay(eta: float, lmbda: float, n: int, what: str = "lmbda") -> None:
    """L2's update multiplies every weight by 1 − ηλ/n: outside [−1, 1] the weights grow geometrically, whatever
    the data, so such a λ is refused before training rather than reported as a divergence."""
    if n and eta * lmbda / n > 2:
        raise ValueError(f"{what} = {lmbda:g} with eta = {eta:g} and n = {n} training samples makes the weight decay "
                         f"1 − ηλ/n = {1 - eta * lmbda / n:.3g}, outside [−1, 1]: the weights would grow without "
                         f"bound; use {what} ≤ {2 * n / eta:.3g} (the book uses 0.1 to 5)")


def checked_scale(scale) -> float | None:
    """``input_scale`` checked: None, or a finite positive number."""
    if scale is None:
        return None
    f = real_number(scale)
    if f is None or not math.isfinite(f) or f <= 0:
        raise ValueError(f"input_scale must be a finite positive number (1/255 for 8-bit pixels), got {shown(scale)}")
    return f


def as_matrix(arr, name: str, cols: int, dtype, what: str, rows=None, scale=None) -> np.ndarray:
    """``arr`` as a C-contiguous matrix of ``dtype`` (or, with ``scale``, of the uint8 codes it must hold)."""
    arr = np.asarray(arr)
    if arr.dtype == np.uint8 and what == "inputs" and scale is None:
        raise ValueError(f"{name} holds uint8 codes: give input_scale, the factor that turns them into the network's "
                         "inputs (1/255 for 8-bit pixels: sb.data.load_mnist(dtype='uint8') hands them out with "
                         "split.input_scale)")
    if scale is not None:
        if arr.dtype != np.uint8:
            raise ValueError(f"input_scale is for uint8 inputs, but {name} has dtype {arr.dtype}: give {name} as "
                             "uint8 codes, or leave input_scale out and pass the inputs themselves")
        dtype = np.uint8
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = f" (one sample? use {name}.reshape(1, -1))" if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-d ({what}: rows × {cols}), got shape {arr.shape}{hint}")
    if arr.shape[1] != cols:
        raise ValueError(f"{name} must have {cols} columns ({what}), got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    part = arr if rows is None else arr[rows]
    if part.size and not np.isfinite(part).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} contains NaN or inf (first at row {bad[0]}, column {bad[1]})")
    return arr


def as_targets(Y, n_out: int, dtype, rows: int, visit=None) -> np.ndarray:
    Y = np.asarray(Y)
    if Y.ndim == 1 and Y.dtype.kind in "iu":
        if Y.size and (Y.min() < 0 or Y.max() >= n_out):
            raise ValueError(f"integer labels must lie in 0..{n_out - 1}, got {Y.min()}..{Y.max()}")
        onehot = np.zeros((Y.shape[0], n_out), dtype=dtype)
        onehot[np.arange(Y.shape[0]), Y] = 1
        Y = onehot
    elif Y.ndim == 1:
        raise ValueError(f"Y must be 2-d (rows × {n_out} targets) or 1-d integer labels, got shape {Y.shape} "
                         f"of dtype {Y.dtype}")
    Y = as_matrix(Y, "Y", n_out, dtype, "targets", rows=visit)
    if Y.shape[0] != rows:
        raise ValueError(f"X and Y must have the same number of rows, got {rows} and {Y.shape[0]}")
    return Y


def checked_regularizer(regularizer, lmbda):
    """(regularizer or None, lmbda) checked: an ``sb.Regularizer`` replaces ``lmbda`` (L2), not both."""
    from symbp.regularizers import Regularizer

    lmbda = non_negative("lmbda", lmbda)
    if regularizer is None:
        return None, float(lmbda)
    if not isinstance(regularizer, Regularizer):
        raise ValueError(f"regularizer must be an sb.Regularizer (sb.L1(λ), sb.L2(λ), sb.Regularizer(name, expr, "
                         f"λ)), got {regularizer!r}")
    if lmbda:
        raise ValueError(f"give either lmbda= (L2) or regularizer=, not both (got lmbda={lmbda!r} and "
                         f"{regularizer!r}); sb.L2(λ) is the same as lmbda=λ")
    return regularizer, 0.0


def checked_momentum(momentum) -> float:
    f = real_number(momentum)
    if f is None or not 0 <= f < 1:
        raise ValueError(f"momentum must be a number in [0, 1) (the book's μ, e.g. 0.9), got {momentum!r}")
    return f


def check_constants(network, dtype: str) -> None:
    """Refuse expressions whose constants the dtype cannot hold (e.g. 1e39·z in float32)."""
    from symbp.activations import check_dtype_range

    for l, layer in enumerate(network.layers[1:], start=1):
        if layer.activation is not None:
            check_dtype_range(layer.activation.expr, dtype, f"layer {l} ({layer.activation.name})")
    check_dtype_range(network.cost.expr, dtype, f"cost {network.cost.name!r}")
