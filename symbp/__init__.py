"""symbp: declare a network with sympy expressions, derive BP1–BP4, compile them to numba/NumPy kernels.

    import symbp as sb
    net = sb.Network([784, 30, 10], activation=sb.sigmoid, cost=sb.quadratic)
    print(net.equations())                       # the derived backpropagation equations
    model = net.compile(backend="numba", seed=0)  # kernels generated from those equations
"""

from symbp import approx, data
from symbp._version import __version__
from symbp.activations import Activation, linear, relu, sigmoid, softmax, softplus, tanh
from symbp.costs import Cost, cross_entropy, log_likelihood, quadratic
from symbp.derive.equations import Equations  # registers the "derive" stage of Network (net.equations())
from symbp.layers import AvgPool, Conv2D, Dense, Dropout, Input, Layer, MaxPool
from symbp.network import Network
from symbp.parsing import parse
from symbp.regularizers import L1, L2, Regularizer
from symbp.sweep import sweep, vote
from symbp.symbols import a, w, y, z
from symbp.train.model import Model  # registers the "compile" stage of Network (net.compile())
from symbp.train.serialize import load

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
