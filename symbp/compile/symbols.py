"""The internal symbols of kernel programs, in one place (they never reach generated comments as text the user
wrote, and no user expression can contain them: user expressions are in z, a, y only).

- ``g``: ∂C/∂aˡ propagated back into a layer (BP2's first factor), from ``symbp.derive.calculus``;
- ``S``: Σₖ aₖ ∂C/∂aₖ of a softmax output whose sum does not cancel, from ``symbp.derive.calculus``;
- ``zr``: the bias-free product zˡ before the bias is added; ``b``: the bias of a unit;
- ``lse``: log Σ exp z of a softmax row; ``l1ma``: log(1 − aⱼ) of a softmax row;
- ``sp_``: σ′(zˡ) stored in the forward pass when it has no form in a;
- ``u``: a uniform random number; ``x``: a layer's input element.
"""

import sympy as sp

from symbp.derive.calculus import S, g

zr = sp.Symbol("zr", real=True)
b = sp.Symbol("b", real=True)
lse = sp.Symbol("lse", real=True)
l1ma = sp.Symbol("l1ma", real=True)
sp_ = sp.Symbol("sp", real=True)
u = sp.Symbol("u", real=True)
x = sp.Symbol("x", real=True)

__all__ = ["S", "b", "g", "l1ma", "lse", "sp_", "u", "x", "zr"]
