"""Layer declarations.

Takes: sizes and activations.  Gives: frozen descriptions of layers.  A ``Dense`` layer's forward map is
zⱼ = Σₖ wⱼₖ aₖ + bⱼ, aⱼ = σ(zⱼ), with w of shape (n, n_in) and b of shape (n,).
"""

from __future__ import annotations

from dataclasses import dataclass

from symbp.activations import BUILTIN_ACTIVATIONS, Activation


def _check_size(kind: str, n) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        try:
            import numpy as np

            if isinstance(n, np.integer):
                n = int(n)
            else:
                raise TypeError
        except TypeError:
            raise ValueError(f"{kind}: layer size must be a positive integer, got {n!r}") from None
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
            raise ValueError(f"{where}unknown activation {act!r}; built-ins: {known} "
                             "(or give sb.Activation(name, expr))") from None
    raise ValueError(f"{where}expected an Activation, got {act!r}")


@dataclass(frozen=True)
class Input:
    """The input layer: ``n`` features per sample."""

    n: int

    def __post_init__(self):
        object.__setattr__(self, "n", _check_size("Input", self.n))


@dataclass(frozen=True)
class Dense:
    """A fully connected layer of ``n`` units with activation σ."""

    n: int
    activation: Activation

    def __post_init__(self):
        object.__setattr__(self, "n", _check_size("Dense", self.n))
        object.__setattr__(self, "activation", as_activation(self.activation, "Dense: "))
