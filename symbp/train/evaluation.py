"""Running a trained model: outputs, mean cost, gradients and accuracy over rows of inputs.

Takes: inputs X (rows; images (n, C, H, W) for an image input; uint8 codes with ``input_scale``) and targets Y
(rows or integer labels).  Gives: ``Evaluation``, the part of ``symbp.train.model.Model`` with ``feedforward``,
``cost``, ``gradients``, ``evaluate`` and ``learning_speed``, for a class that has ``network``, ``sizes``,
``dtype``, the parameters (``symbp.train.parameters.Parameters``), ``_kernel(name)`` (a compiled kernel) and
``_blocks(X, scale)`` (X in blocks of float rows).  A NaN/inf result is a ``FloatingPointError`` naming the first
layer that gives it.
"""

from __future__ import annotations

import math

import numpy as np

from symbp.train.checks import as_matrix, as_targets, checked_scale


class Evaluation:
    """Forward passes, cost and gradients of a compiled model (see the module docstring)."""

    def _X(self, X, scale=None, name: str = "X") -> np.ndarray:
        """X checked: rows of the model's dtype, or (with ``scale``) of uint8 codes."""
        return as_matrix(self._flat_images(X), name, self.sizes[0], self.dtype, "inputs", scale=scale)

    def _floats(self, X, scale) -> np.ndarray:
        """The inputs themselves: ``scale``·X in float64, rounded to the model's dtype (as the epoch kernel's
        gather does); X unchanged without a scale."""
        if scale is None:
            return X
        return (X.astype(np.float64) * scale).astype(self.dtype, copy=False)

    def _flat_images(self, X):
        """(n, C, H, W) images as the (n, C·H·W) rows the kernels read (channel, row, column order)."""
        shape = self.network.shapes[0]
        if len(shape) > 1 and np.ndim(X) == len(shape) + 1:
            X = np.asarray(X)
            if X.shape[1:] != shape:
                raise ValueError(f"X must be (n, {', '.join(map(str, shape))}) images or (n, {self.sizes[0]}) rows, "
                                 f"got shape {X.shape}")
            return X.reshape(X.shape[0], math.prod(shape))  # (0, C, H, W) too: -1 is ambiguous for no rows
        return X

    def feedforward(self, X, input_scale=None) -> np.ndarray:
        """The network's output aᴸ for every row of X: shape (n, n_out).  Dropout is off (the identity).
        ``input_scale``: X holds uint8 codes of the inputs input_scale·X (see the module docstring)."""
        scale = checked_scale(input_scale)
        X = self._X(X, scale)
        out = np.empty((X.shape[0], self.sizes[-1]), dtype=self.dtype)
        if X.shape[0]:
            kernel, flat = self._kernel("forward"), self._flat()
            for lo, part in self._blocks(X, scale):
                kernel(part, *flat, out[lo:lo + part.shape[0]])
            if not np.isfinite(out).all():
                raise self._nonfinite("feedforward", self._floats(X, scale), out)
        return out

    def cost(self, X, Y, input_scale=None) -> float:
        """Mean cost over the rows (regularisation excluded)."""
        scale = checked_scale(input_scale)
        X = self._X(X, scale)
        Y = as_targets(Y, self.sizes[-1], self.dtype, X.shape[0])
        if X.shape[0] == 0:
            raise ValueError("cost of an empty set of rows is undefined")
        kernel, flat = self._kernel("cost"), self._flat()
        total = sum(float(kernel(part, Y[lo:lo + part.shape[0]], *flat)) for lo, part in self._blocks(X, scale))
        if not math.isfinite(total):
            raise self._nonfinite("cost", self._floats(X, scale))
        return total / X.shape[0]

    def gradients(self, X, Y, input_scale=None) -> list[tuple[np.ndarray, ...]]:
        """[(dW1, db1), ...]: gradients of the mean cost over the rows of X (dropout off)."""
        scale = checked_scale(input_scale)
        X = self._floats(self._X(X, scale), scale)
        Y = as_targets(Y, self.sizes[-1], self.dtype, X.shape[0])
        if X.shape[0] == 0:
            raise ValueError("gradients of an empty set of rows are undefined")
        grads = [tuple(np.empty_like(p) for p in pair) for pair in self._params]
        self._kernel("backward")(X, Y, *self._flat(), *[g for pair in grads for g in pair])
        for (l, specs), pair in zip(self._specs, grads):
            for spec, arr in zip(specs, pair):
                if not np.isfinite(arr).all():
                    raise self._nonfinite("gradients", X, what=f"∂C/∂{spec.name}{l}")
        return grads

    def _nonfinite(self, where: str, X, out=None, what: str | None = None) -> FloatingPointError:
        """The error for a non-finite result: the first layer whose activation is NaN/inf on finite input,
        found by the layers' own NumPy forward maps (``Layer.reference``), off the fast path."""
        a = X.astype(np.float64)
        params = iter(self._params)
        shapes = self.network.shapes
        for l, layer in enumerate(self.network.layers[1:], start=1):
            theta = next(params) if layer.param_specs(shapes[l - 1]) else ()
            with np.errstate(all="ignore"):  # each layer reads its input in its own shape: (n, C, H, W) for images
                nxt = layer.reference(theta, a.reshape(a.shape[0], *shapes[l - 1]))
            bad = ~np.isfinite(nxt.reshape(nxt.shape[0], -1)).all(axis=1)
            if bad.any():
                row = int(np.argmax(bad))
                return FloatingPointError(
                    f"{where}: layer {l} ({layer.describe()}) gives NaN/inf at row {row} from finite inputs (the "
                    "first non-finite activation); its weighted inputs are too large for the activation or the "
                    "dtype: scale the inputs, use a smaller eta, or another activation")
            a = nxt
        thing = what or ("the output" if out is not None else "the cost")
        return FloatingPointError(f"{where}: {thing} is NaN/inf although every activation is finite (e.g. a cost "
                                  "such as log(a) at a = 0, or a derivative that overflows)")

    def _data(self, data, name: str, scale=None):
        try:
            X, Y = data
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be an (X, Y) pair") from None
        X = self._X(X, scale, name=f"{name}'s X")
        return X, as_targets(Y, self.sizes[-1], self.dtype, X.shape[0])

    def evaluate(self, data, input_scale=None) -> float:
        """Fraction of rows whose largest output is the target class (Y as labels or one-hot)."""
        scale = checked_scale(input_scale)
        X, Y = self._data(data, "data", scale)
        if X.shape[0] == 0:
            raise ValueError("cannot evaluate on an empty set")
        return self._accuracy(X, Y, scale)

    def _accuracy(self, X, Y, scale=None) -> float:
        """Fraction correct on already-validated arrays."""
        return float(np.mean(self.feedforward(X, scale).argmax(axis=1) == Y.argmax(axis=1)))

    def learning_speed(self, X, Y) -> list[float]:
        """The book's "speed of learning" (chapter 5): ‖∂C/∂bˡ‖ for every layer with parameters, for the mean
        cost over the rows of X."""
        from symbp.train.diagnostics import learning_speed

        return learning_speed(self, X, Y)
