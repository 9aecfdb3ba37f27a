"""A fully connected layer: zⱼ = Σₖ wⱼₖ aₖ + bⱼ, aⱼ = σ(zⱼ), w of shape (n, n_in), b of shape (n,).

Takes: a width and an activation.  Gives: ``Dense`` (declaration: shapes, parameters and their init).
Its backward rule lives in ``symbp.derive.layers.dense``, its lowering in ``symbp.compile.layers.dense``.
"""

from __future__ import annotations

from dataclasses import dataclass

from symbp.activations import Activation
from symbp.layers.base import (
    Layer,
    ParamSpec,
    activation_config,
    activation_from_config,
    as_activation,
    check_size,
    fan_in_weights,
    flat,
    normal_biases,
    register_layer,
)


@register_layer
@dataclass(frozen=True)
class Dense(Layer):
    """A fully connected layer of ``n`` units with activation σ (``sb.softmax`` for a softmax output)."""

    n: int
    activation: Activation
    kind = "dense"

    def __post_init__(self):
        object.__setattr__(self, "n", check_size("Dense", self.n))
        object.__setattr__(self, "activation", as_activation(self.activation, "Dense: "))

    def out_shape(self, in_shape):
        return (self.n,)

    def param_specs(self, in_shape):
        n_in = flat(in_shape)
        return [ParamSpec("W", (self.n, n_in), fan_in_weights(n_in), weight=True),
                ParamSpec("b", (self.n,), normal_biases)]

    def config(self) -> dict:
        return {"n": self.n, "activation": activation_config(self.activation)}

    @classmethod
    def from_config(cls, doc, where):
        return cls(doc["n"], activation_from_config(doc["activation"]))

    def describe(self) -> str:
        return f"{self.n}:{self.activation.name}"

    def reference(self, params, x):
        import numpy as np

        W, b = params
        zv = x.reshape(x.shape[0], -1) @ np.asarray(W, np.float64).T + np.asarray(b, np.float64)
        if self.activation.vector:
            e = np.exp(zv - zv.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        return np.broadcast_to(self.activation.numpy_function()(zv), zv.shape).astype(np.float64)
