"""Layer declarations, one module per kind (``input``, ``dense``, ``dropout``, ``conv``, ``pool``),
registered by kind name.

Takes: sizes, activations, hyper-parameters.  Gives: frozen layer descriptions following the protocol of
``symbp.layers.base.Layer`` (shapes, parameters, config for model files, parts for cache keys).
"""

from symbp.layers.base import INIT_SCHEMES, LAYER_KINDS, Layer, ParamSpec, as_activation, register_layer
from symbp.layers.conv import Conv2D
from symbp.layers.declared import Declared
from symbp.layers.dense import Dense
from symbp.layers.dropout import Dropout
from symbp.layers.input import Input
from symbp.layers.pool import AvgPool, MaxPool

__all__ = ["INIT_SCHEMES", "LAYER_KINDS", "AvgPool", "Conv2D", "Declared", "Dense", "Dropout", "Input", "Layer",
           "MaxPool", "ParamSpec", "as_activation", "register_layer"]
