"""The network facade users touch.

Takes: a list of layers (``Input`` then any registered kinds: ``Dense``, ``Dropout`` …) and a ``Cost`` — or
Nielsen's shorthand ``Network([784, 30, 10], activation=sigmoid, cost=quadratic)``.  Shapes are inferred layer
by layer (each kind's ``out_shape``), so an impossible stack is refused here, naming the layer.
Gives: ``.equations()`` (the derived BP1–BP4, inspectable) and ``.compile(...)`` (a ``Model`` running
kernels generated from those equations).

The declaration imports no later stage: each later stage registers itself here with ``register_stage``
(``"derive"``: ``symbp.derive.equations.derive``; ``"compile"``: ``symbp.train.model.Model``), and
``import symbp`` imports both, so ``.equations()`` and ``.compile()`` find them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from functools import cached_property

import sympy as sp

from symbp.activations import Activation
from symbp.costs import BUILTIN_COSTS, Cost
from symbp.layers import Dense, Input, Layer, as_activation
from symbp.parsing import close_names, did_you_mean
from symbp.symbols import z

#: The most layers a network may have, ``Input`` included: what a model file may hold (``symbp.train.serialize``),
#: so every network that trains can be saved and loaded again.
MAX_LAYERS = 1024

#: The format of a network's declaration, ``Network.config()``.
DECLARATION_FORMAT = "symbp-network"
DECLARATION_VERSION = 1

#: The stages after the declaration, by name: ``"derive"`` (network → ``Equations``) and ``"compile"``
#: (network, options → ``Model``), each registered by the module that implements it.
STAGES: dict[str, Callable] = {}


def register_stage(name: str):
    """Decorator: the decorated function (or class) becomes the stage ``name`` of every network."""
    def register(fn):
        known = STAGES.get(name)
        same = known is not None and (known.__module__, known.__qualname__) == (fn.__module__, fn.__qualname__)
        if known is not None and known is not fn and not same:  # a reloaded module replaces its own stage
            raise ValueError(f"the {name!r} stage is registered twice ({known.__module__}.{known.__qualname__} "
                             f"and {fn.__module__}.{fn.__qualname__})")
        STAGES[name] = fn
        return fn
    return register


def _stage(name: str) -> Callable:
    try:
        return STAGES[name]
    except KeyError:
        raise RuntimeError(f"no {name!r} stage is registered: import symbp (it imports every stage)") from None


def as_cost(cost) -> Cost:
    if isinstance(cost, Cost):
        return cost
    if isinstance(cost, str):
        try:
            return BUILTIN_COSTS[cost.replace("-", "_")]
        except KeyError:
            known = ", ".join(BUILTIN_COSTS)
            raise ValueError(f"unknown cost {cost!r}{did_you_mean(close_names(cost, BUILTIN_COSTS))} (built-ins: "
                             f"{known}; or give sb.Cost(name, expr))") from None
    raise ValueError(f"expected a Cost, got {cost!r}")


class Network:
    """A feed-forward network: ``Input(n)`` followed by ``Dense`` layers, and a cost."""

    def __init__(self, layers: Sequence, cost=None, activation=None):
        if cost is None:
            raise ValueError("Network needs a cost, e.g. cost=sb.quadratic")
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or len(layers) < 2:
            raise ValueError("Network needs a list of at least two layers, e.g. [784, 30, 10] "
                             "or [sb.Input(784), sb.Dense(10, sb.sigmoid)]")
        if len(layers) > MAX_LAYERS:
            raise ValueError(f"Network has {len(layers)} layers; at most {MAX_LAYERS} are supported (Input included)")
        self.cost = as_cost(cost)
        if all(isinstance(x, Layer) for x in layers):
            if activation is not None:
                raise ValueError("activation= is for the shorthand Network([sizes], activation=...); "
                                 "with layer objects give each Dense its own activation")
            parsed = list(layers)
        elif any(isinstance(x, Layer) for x in layers):
            raise ValueError("mix of sizes and layer objects: give either [784, 30, 10] with activation=, "
                             "or [sb.Input(784), sb.Dense(30, act), ...]")
        else:
            parsed = self._shorthand(layers, activation)
        if not isinstance(parsed[0], Input):
            raise ValueError(f"the first layer must be sb.Input(n), got {parsed[0]!r}")
        shapes = [parsed[0].shape]
        for i, layer in enumerate(parsed[1:], start=1):
            if isinstance(layer, Input):
                raise ValueError(f"layer {i}: expected sb.Dense, sb.Dropout or another layer kind; "
                                 "sb.Input can only be the first layer")
            act = layer.activation
            if act is not None and act.vector and i != len(parsed) - 1:
                raise ValueError(f"layer {i}: {act.name} normalises over the whole layer and is "
                                 "supported as the output layer only")
            try:
                shapes.append(tuple(layer.out_shape(shapes[-1])))
            except ValueError as exc:
                raise ValueError(f"layer {i} ({layer.describe()}): {exc}") from None
        if len(shapes[-1]) != 1:  # an image-shaped output (Conv2D, MaxPool): the costs and BP1 are per unit of a vector
            raise ValueError(f"layer {len(parsed) - 1} ({parsed[-1].describe()}): the output layer must be flat, got "
                             f"shape {shapes[-1]}; end with sb.Dense(n, ...) (e.g. sb.Dense(10, sb.softmax))")
        if parsed[-1].activation is None:
            raise ValueError(f"the last layer must have an activation (e.g. sb.Dense(10, sb.softmax)), "
                             f"got {parsed[-1]!r}")
        self.layers: tuple = tuple(parsed)
        self.shapes: tuple = tuple(shapes)

    @staticmethod
    def _shorthand(sizes, activation):
        if activation is None:
            raise ValueError("the shorthand Network([784, 30, 10], ...) needs activation=, e.g. sb.sigmoid")
        n_weighted = len(sizes) - 1
        if isinstance(activation, (Activation, str)):
            acts = [activation] * n_weighted
        elif isinstance(activation, Sequence):
            acts = list(activation)
            if len(acts) != n_weighted:
                raise ValueError(f"{len(sizes)} layer sizes need {n_weighted} activations (one per weighted "
                                 f"layer), got {len(acts)}")
        else:
            raise ValueError(f"activation= must be an Activation or a list of them, got {activation!r}")
        try:
            layers = [Input(sizes[0])]
        except ValueError as exc:
            raise ValueError(f"layer 0 (input): {exc}") from None
        for i, (n, act) in enumerate(zip(sizes[1:], acts), start=1):
            try:
                layers.append(Dense(n, as_activation(act, f"layer {i}: ")))
            except ValueError as exc:
                msg = str(exc)
                raise ValueError(msg if msg.startswith(f"layer {i}:") else f"layer {i}: {msg}") from None
        return layers

    @property
    def sizes(self) -> list[int]:
        """The flat width of every layer's output, the input first (for dense nets: the book's sizes)."""
        return [math.prod(shape) for shape in self.shapes]

    @property
    def activations(self) -> list[Activation]:
        """The activation of every layer that has one, in order."""
        return [layer.activation for layer in self.layers[1:] if layer.activation is not None]

    @cached_property
    def untrainable(self) -> str | None:
        """Why gradient descent cannot train this network, or None when it can: an activation whose σ′ is zero
        almost everywhere (a step, ``Heaviside(z)``: the perceptron of the book's chapter 1), so that no small
        change of a weight changes the cost.  Such a network still runs ``feedforward`` and ``cost``."""
        for l, layer in enumerate(self.layers[1:], start=1):
            act = layer.activation
            if act is None:
                continue
            d = sp.diff(act.expr, z)
            if d.has(sp.DiracDelta) and d.replace(sp.DiracDelta, lambda *args: sp.S.Zero).equals(0) is not False:
                return (f"layer {l} ({act.name}) has σ′(z) = {d}, zero wherever it is defined (a step), so gradient "
                        "descent cannot learn: no small change of a weight or bias changes the output or the cost. "
                        "This is why the book (chapter 1) moves from perceptrons to sigmoid neurons: use a smooth "
                        "activation such as sb.sigmoid to train (feedforward and cost still work)")
        return None

    @cached_property
    def _equations(self):
        return _stage("derive")(self)

    def equations(self, regularizer=None, momentum: float = 0.0):
        """BP1–BP4 derived for this network (see ``symbp.derive.equations.Equations``), with the SGD update rule
        of ``fit(regularizer=..., momentum=...)`` (default: L2 by ``lmbda``, no momentum)."""
        if regularizer is None and not momentum:
            return self._equations
        return self._equations.with_update(regularizer, momentum)

    def compile(self, backend: str = "numba", dtype: str = "float64", seed=None, init: str = "default",
                progress=None):
        """Generate, compile and load the kernels; return a ``Model`` with initialised parameters.
        ``progress(text)``, when given, is told each stage as it starts (deriving, generating), or that the
        kernels' source came from the cache."""
        return _stage("compile")(self, backend=backend, dtype=dtype, seed=seed, init=init, progress=progress)

    def config(self) -> dict:
        """The declaration as plain data: ``{"format": "symbp-network", "version": 1, "layers": [{"kind": ...,
        **layer.config()}, ...], "cost": {"name": ..., "expr": ...}}``, every expression as text the whitelist
        parser reads back.  The one encoding of a network: model files hold it (with the dtype, the backend and
        the parameters), sweeps send it to their workers, the kernel cache keys on it and the bench's compile
        probes rebuild networks from it (``symbp.train.manifest.network_from_config``; ``declaration_text`` is
        its canonical text).  A layer declared with its own ``init=`` functions lists their parameters under
        ``"init"``: it keys the cache, but no file can rebuild the functions, so saving refuses it."""
        return {"format": DECLARATION_FORMAT, "version": DECLARATION_VERSION,
                "layers": [{"kind": layer.kind, **layer.config()} for layer in self.layers],
                "cost": {"name": self.cost.name, "expr": self.cost.text}}

    def __repr__(self):
        return f"Network([{', '.join(layer.describe() for layer in self.layers)}], cost={self.cost.name})"


def declaration_text(doc: dict) -> str:
    """The JSON text of a declaration, no spaces, keys in their order: that order is part of the declaration (a
    declared layer's parameters are its kernels' arguments in that order), and ``config()`` writes every other
    object's keys in a fixed order, so equal declarations give equal text."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
