"""symbp: declare a network with sympy expressions, derive BP1–BP4, compile them to numba/NumPy kernels.

    import symbp as sb
    net = sb.Network([784, 30, 10], activation=sb.sigmoid, cost=sb.quadratic)
    print(net.equations())                       # the derived backpropagation equations
    model = net.compile(backend="numba", seed=0)  # kernels generated from those equations
"""

from importlib import import_module as _import_module

from symbp._version import __version__
from symbp.activations import Activation, linear, relu, sigmoid, softmax, softplus, tanh
from symbp.costs import Cost, cross_entropy, log_likelihood, quadratic
from symbp.derive.equations import Equations  # registers the "derive" stage of Network (net.equations())
from symbp.layers import AvgPool, Conv2D, Dense, Dropout, Input, Layer, MaxPool
from symbp.network import Network
from symbp.parsing import parse
from symbp.regularizers import L1, L2, Regularizer
from symbp.sweep import sweep, vote  # eager: importing the package symbp.sweep would rebind sb.sweep to it
from symbp.symbols import a, w, y, z
from symbp.train.model import Model  # registers the "compile" stage of Network (net.compile())
from symbp.train.serialize import load

#: Modules that a script declaring, deriving and training a network does not need, imported on first use as
#: ``sb.approx`` and ``sb.data`` (PEP 562): ``import symbp`` is then about 25 ms shorter.
_ON_USE = ("approx", "data")


def __getattr__(name):
    if name not in _ON_USE:
        raise AttributeError(f"module 'symbp' has no attribute {name!r}")
    return _import_module(f"symbp.{name}")  # the import binds symbp.<name> itself


def __dir__():
    return sorted(set(globals()) | set(_ON_USE))


__all__ = [
    "__version__",
    "Activation",
    "AvgPool",
    "Conv2D",
    "Cost",
    "Dense",
    "Dropout",
    "Equations",
    "Input",
    "Layer",
    "L1",
    "L2",
    "MaxPool",
    "Model",
    "Network",
    "Regularizer",
    "a",
    "approx",
    "cross_entropy",
    "data",
    "linear",
    "load",
    "log_likelihood",
    "parse",
    "quadratic",
    "relu",
    "sigmoid",
    "softmax",
    "softplus",
    "sweep",
    "tanh",
    "vote",
    "w",
    "y",
    "z",
]
