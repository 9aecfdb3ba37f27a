"""The layer protocol, declaration side: what every layer kind says about itself.

Takes: nothing (base classes and a registry).  Gives: ``Layer`` — the base of every layer kind — with
shape inference (``out_shape``), its parameters (``param_specs``: names, shapes, init schemes), its
hyper-parameters (``config``/``from_config``: the layer's part of ``Network.config()``, which model files,
sweeps and the kernel cache key share); the
``LAYER_KINDS`` registry (kind name → class), filled by ``@register_layer``; ``ParamSpec``.  ``Layer.parse``
and ``Layer.declare`` build the kind registered as ``"declared"`` (``symbp.layers.declared.Declared``, which
``symbp.layers`` imports), so this base imports none of its kinds.

The other stages keep their own registries keyed by the layer class (``symbp.derive.layers`` for the
backward rule and its rendering, ``symbp.compile.layers`` for the lowering to kernel steps), so a new kind is
one module per stage and no stage tests a layer's type.  Shapes are tuples: ``(n,)`` for a flat layer,
``(channels, height, width)`` for an image-shaped one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from symbp.activations import BUILTIN_ACTIVATIONS, Activation
from symbp.parsing import close_names, did_you_mean, parse

#: kind name → layer class, for model files and the CLI.
LAYER_KINDS: dict[str, type] = {}


def register_layer(cls):
    """Class decorator: make ``cls`` a layer kind known by its ``kind`` name."""
    if cls.kind in LAYER_KINDS and LAYER_KINDS[cls.kind] is not cls:
        raise ValueError(f"layer kind {cls.kind!r} is registered twice")
    LAYER_KINDS[cls.kind] = cls
    return cls


def check_size(kind: str, n) -> int:
    """A positive integer (NumPy integers accepted), or ValueError naming the layer kind."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"{kind}: layer size must be a positive integer, got {n!r}")
    n = int(n)
    if n <= 0:
        raise ValueError(f"{kind}: layer size must be a positive integer, got {n}")
    return n


def as_activation(act, where: str = "") -> Activation:
    """An ``Activation`` from an Activation or a built-in name."""
    if isinstance(act, Activation):
        return act
    if isinstance(act, str):
        try:
            return BUILTIN_ACTIVATIONS[act]
        except KeyError:
            known = ", ".join(BUILTIN_ACTIVATIONS)
            raise ValueError(f"{where}unknown activation {act!r}{did_you_mean(close_names(act, BUILTIN_ACTIVATIONS))} "
                             f"(built-ins: {known}; or give sb.Activation(name, expr))") from None
    raise ValueError(f"{where}expected an Activation, got {act!r}")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter array of a layer: ``name`` ("W", "b"), ``shape``, and how to initialise it:
    ``init(rng, scheme, shape) -> float64 array`` for ``scheme`` in ``INIT_SCHEMES``; ``weight``: a weight (it
    multiplies the layer's input: regularisers penalise it), not a bias."""

    name: str
    shape: tuple[int, ...]
    init: Callable
    weight: bool = False

    @property
    def size(self) -> int:
        return math.prod(self.shape)


#: Initialisation schemes every parameterised kind understands.
INIT_SCHEMES = ("default", "large")


def fan_in_weights(fan_in: int) -> Callable:
    """Weights ~ N(0, 1/fan_in) ("default") or N(0, 1) ("large", the book's chapter 1)."""
    def init(rng, scheme, shape):
        scale = 1.0 / math.sqrt(fan_in) if scheme == "default" else 1.0
        return rng.standard_normal(shape) * scale
    return init


def normal_biases(rng, scheme, shape):
    """Biases ~ N(0, 1), whatever the scheme (as the book)."""
    return rng.standard_normal(shape)


def activation_config(act: Activation) -> dict:
    """An activation as model-file JSON: its name, its expression as parser text, and whether it normalises."""
    return {"name": act.name, "expr": act.text, "vector": act.vector}


def activation_from_config(doc: dict) -> Activation:
    """The inverse of ``activation_config``: the expression goes through the whitelist parser."""
    return Activation(doc["name"], parse(doc["expr"], allowed=("z",)), vector=bool(doc.get("vector", False)))


class Layer:
    """Base of every layer kind (frozen dataclasses).  Subclasses set ``kind`` and override what applies."""

    kind: ClassVar[str] = ""
    #: the activation applied by this layer, or None (Dropout, pooling without one, ...)
    activation: Activation | None = None

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        raise NotImplementedError

    def param_specs(self, in_shape: tuple[int, ...]) -> list[ParamSpec]:
        return []

    def config(self) -> dict:
        """The hyper-parameters as JSON-able values (expressions as parser text), without ``kind``: everything
        that changes the generated code, since the kernel cache keys on it (``Network.config()``)."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, doc: dict, where: str) -> Layer:
        """The layer from ``config()`` output; expressions go through the whitelist parser."""
        raise NotImplementedError

    def describe(self) -> str:
        """A short label for ``repr(network)``."""
        raise NotImplementedError

    def reference(self, params: tuple, x):
        """The forward map in plain NumPy (float64, rows = samples, inference behaviour): an implementation
        independent of the generated kernels, used to name the layer of a non-finite result and by tests."""
        raise NotImplementedError

    @staticmethod
    def parse(name: str, text: str, out=None, params=None, activation=None, init=None) -> Layer:
        """A layer declared by its forward map in index notation, read by the whitelist parser, e.g.
        ``Layer.parse("conv", "z[f,i,j] = sum(W[f,c,p,q]*x[c,i+p,j+q] for c in range(3) for p in range(3) for q in
        range(3)) + b[f]", params={"W": (16, 3, 3, 3), "b": (16,)}, activation=sb.relu)`` (see
        ``symbp.layers.declared``)."""
        return LAYER_KINDS["declared"].create(name, text, out, params, activation, init)

    @staticmethod
    def declare(name: str, lhs, rhs, out=None, params=None, activation=None, init=None) -> Layer:
        """A layer declared from sympy objects: ``lhs`` = ``z[f,i,j]`` (``IndexedBase("z")``), ``rhs`` a
        ``Sum`` of products of ``Indexed`` reads of ``x`` and the parameters (see ``Layer.parse``)."""
        return LAYER_KINDS["declared"].create(name, rhs, out, params, activation, init, lhs=lhs)

    @property
    def trains(self) -> bool:
        """Does the layer behave differently while training (Dropout)?"""
        return False


def flat(shape: tuple[int, ...]) -> int:
    return math.prod(shape)
