"""A model's parameters and momentum velocities: initialisation, copies out, checked copies in.

Takes: nothing at import.  Gives: ``Parameters``, the part of ``symbp.train.model.Model`` that holds them, for a
class that sets ``_specs`` ((layer index, [ParamSpec, ...]) of every layer with parameters), ``_rng``, ``dtype``
and ``kernels`` (whose backend lays the arrays out: ``kernels.impl.array``/``host``).  The kernels update the
arrays in place; they are named as in ``model.params`` and model files: W1, b1, W2, … numbered by the layers that
have parameters.
"""

from __future__ import annotations

import numpy as np

from symbp.layers import INIT_SCHEMES


class Parameters:
    """Parameters and velocities of a compiled model (see the module docstring)."""

    def _array(self, a):
        """A parameter (or velocity) as the backend's kernels take it: for the host backends a copy on a 64-byte
        boundary (``aligned_copy``), for a device backend its own array."""
        return self.kernels.impl.array(a)

    def _host(self, a) -> np.ndarray:
        """A NumPy copy of a parameter (or velocity) the backend holds."""
        return np.array(self.kernels.impl.host(a), copy=True)

    # The kernels update the parameters in place; they live on 64-byte boundaries (see ``aligned_copy``).
    def init_params(self, init: str = "default", seed=None) -> None:
        """``default``: W ~ N(0, 1/n_in), b ~ N(0, 1); ``large``: W ~ N(0, 1) (the book's chapter 1).  Each layer
        kind says how its parameters start (``Layer.param_specs``)."""
        if init not in INIT_SCHEMES:
            raise ValueError(f"init must be one of {', '.join(INIT_SCHEMES)}, got {init!r}")
        rng = self._rng if seed is None else np.random.default_rng(seed)
        self._params = [tuple(self._array(spec.init(rng, init, spec.shape).astype(self.dtype)) for spec in specs)
                        for _, specs in self._specs]
        self._velocities = None

    @property
    def velocities(self) -> list[tuple[np.ndarray, ...]] | None:
        """Copies of the momentum velocities [(vW1, vb1), ...] (shaped as ``params``), or None before any
        training with momentum.  They carry over from one ``fit``/``run_epoch`` call to the next (and are saved
        with the model); new parameters (``set_params``, ``init_params``) start them again from zero."""
        return None if self._velocities is None else [tuple(self._host(v) for v in pair) for pair in self._velocities]

    def set_velocities(self, velocities) -> None:
        """Set the momentum velocities (shaped as ``params``; None: none, as before training)."""
        if velocities is None:
            self._velocities = None
            return
        self._velocities = self._checked_params(velocities, prefix="v")  # the same checks, naming vW1, vb1, …

    def _velocity_arrays(self) -> list[np.ndarray]:
        if self._velocities is None:
            self._velocities = [tuple(self._array(np.zeros_like(p)) for p in pair) for pair in self._params]
        return [v for pair in self._velocities for v in pair]

    @property
    def params(self) -> list[tuple[np.ndarray, ...]]:
        """Copies of [(W1, b1), (W2, b2), ...]: the parameters of every layer that has them, in layer order
        (a dense layer's W of shape (n_out, n_in), b of shape (n_out,))."""
        return [tuple(self._host(p) for p in pair) for pair in self._params]

    def set_params(self, params) -> None:
        self._params = self._checked_params(params)
        self._velocities = None

    def _checked_params(self, params, prefix: str = "") -> list[tuple[np.ndarray, ...]]:
        """Aligned copies in the model's dtype, each array checked (shape, real, finite) and named as in
        ``model.params`` and model files: W1, b1, W2, … numbered by the layers that have parameters."""
        params = list(params)
        if len(params) != len(self._specs):
            raise ValueError(f"expected {len(self._specs)} (W, b) pairs, got {len(params)}")
        new = []
        for k, (pair, (l, specs)) in enumerate(zip(params, self._specs), start=1):
            try:
                arrays = tuple(pair)
            except TypeError:
                raise ValueError(f"layer {l}: expected a (W, b) pair") from None
            if len(arrays) != len(specs):
                raise ValueError(f"layer {l}: expected a ({', '.join(s.name for s in specs)}) pair")
            checked = []
            for arr, spec in zip(arrays, specs):
                name = f"{prefix}{spec.name}{k}" + (f" (layer {l})" if l != k else "")
                arr = np.asarray(arr)
                vector = len(spec.shape) == 1
                if vector and (arr.shape != spec.shape or arr.dtype.kind not in "biuf"):
                    raise ValueError(f"{name} must be a real vector of shape {spec.shape}, got {arr.shape} {arr.dtype}")
                if arr.dtype.kind not in "biuf":
                    raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
                if arr.shape != spec.shape:
                    if arr.ndim == len(spec.shape) and arr.shape[1:] != spec.shape[1:]:
                        raise ValueError(f"{name} must have {spec.shape[1]} columns (layer {l} weights), "
                                         f"got shape {arr.shape}")
                    raise ValueError(f"{name} must have shape {spec.shape}, got {arr.shape}")
                arr = np.ascontiguousarray(arr, dtype=self.dtype)
                if not np.isfinite(arr).all():
                    raise ValueError(f"{name} contains NaN or inf")
                checked.append(self._array(arr))
            new.append(tuple(checked))
        return new

    @property
    def param_names(self) -> list[tuple[str, ...]]:
        """The names of ``params``, as in model files: [("W1", "b1"), ("W2", "b2"), …], numbered by the layers
        that have parameters (a declared layer's own names, in the order of its ``params``)."""
        return [tuple(f"{spec.name}{k}" for spec in specs) for k, (_, specs) in enumerate(self._specs, start=1)]

    def _param_layers(self) -> list[int]:
        return [l for l, _ in self._specs]

    def _flat(self) -> list[np.ndarray]:
        return [arr for pair in self._params for arr in pair]

    def _first_nonfinite_param(self) -> str | None:
        for k, ((l, specs), pair) in enumerate(zip(self._specs, self._params), start=1):
            for spec, arr in zip(specs, pair):
                if not np.isfinite(arr).all():
                    return f"{spec.name}{k} (layer {l})"
        return None

    def _penalty(self, regularizer, lmbda: float, n: int) -> float:
        """The regularisation term of the cost: (λ/n)·Σ R(w) over the weights (L2: λ/2n·Σw²)."""
        weights = [arr for (_, specs), pair in zip(self._specs, self._params) for spec, arr in zip(specs, pair)
                   if spec.weight]
        if regularizer is not None:
            return regularizer.penalty(weights, n)
        if not lmbda:
            return 0.0
        return 0.5 * lmbda / n * sum(float(np.sum(W.astype(np.float64) ** 2)) for W in weights)
