"""Lowering: derived equations → kernel programs (``forward``, ``cost``, ``backward``, ``sgd_epoch``).

Takes: a ``Network`` and its ``Equations``.  Gives: ``Program`` objects (see ``program.py``) whose
elementwise steps hold exactly the sympy expressions of ``net.equations()`` (σ, σ′ and δ), passed through
the stability rewrite rules of ``printer.stabilise`` and, in the backends, ``sympy.cse``.

Buffer names follow the equations: ``z1``, ``a1`` (layer 1), ``delta2``, ``nabla_w1``, ``nabla_b1``;
``a0`` is the input (X, or the gathered mini-batch ``x`` in ``sgd_epoch``).
"""

from __future__ import annotations

import sympy as sp

from symbp.compile.printer import stabilise
from symbp.compile.program import (
    Access,
    Buffer,
    ColSum,
    Gather,
    Gemm,
    Loop,
    Map,
    Program,
    RowSoftmax,
    RowSum,
)
from symbp.derive.calculus import S
from symbp.derive.equations import g
from symbp.symbols import a, y, z

#: A symbol for the bias-free product zˡ before the bias is added in the forward map.
_zr = sp.Symbol("zr", real=True)
_b = sp.Symbol("b", real=True)
_lse = sp.Symbol("lse", real=True)
_l1ma = sp.Symbol("l1ma", real=True)


def _params(L: int) -> list[str]:
    out = []
    for l in range(1, L + 1):
        out += [f"W{l}", f"b{l}"]
    return out


def _param_types(L: int) -> list[str]:
    return ["X2", "V1"] * L


class _Lowerer:
    def __init__(self, network):
        self.net = network
        self.eqs = network.equations()
        self.sizes = network.sizes
        self.L = len(self.sizes) - 1

    # -- forward -------------------------------------------------------------------------------------
    def forward_steps(self, a0: str, rows: str, train: bool, keep_lse: bool = False, keep_l1ma: bool = False) -> list:
        steps = []
        for layer in self.eqs.layers:
            l, n = layer.index, layer.n_out
            steps.append(Gemm(f"z{l}", a0 if l == 1 else f"a{l - 1}", f"W{l}", False, True,
                              eq=f"z{l} = a{l - 1} · W{l}ᵀ  (zˡ = wˡaˡ⁻¹ + bˡ for every sample; bias below)"))
            if layer.activation.vector:
                steps.append(RowSoftmax(f"z{l}", f"a{l}", f"b{l}", rows, n, lse=f"lse{l}" if keep_lse else None,
                                        l1ma=f"l1ma{l}" if keep_l1ma else None,
                                        eq=f"a{l} = softmax(z{l} + b{l}), stabilised by the row maximum"))
                continue
            zb = _zr + _b
            writes = [(Access(f"z{l}"), zb), (Access(f"a{l}"), stabilise(layer.activation.expr.subs(z, zb)))]
            eq = f"z{l} += b{l};  a{l} = σ(z{l}) = {layer.activation.text}"
            if train and not layer.is_output and not layer.derivative.uses_a:
                writes.append((Access(f"sp{l}"), stabilise(layer.derivative.expr.subs(z, zb))))
                eq += f";  sp{l} = σ′(z{l}) = {layer.derivative.expr} (same pass, shared subexpressions)"
            steps.append(Map(rows, n, {_zr: Access(f"z{l}"), _b: Access(f"b{l}", "j")}, writes, eq=eq))
        return steps

    # -- backward ------------------------------------------------------------------------------------
    def output_error_steps(self, yb: str, rows: str) -> list:
        out = self.eqs.layers[-1]
        L, n = out.index, out.n_out
        reads = {a: Access(f"a{L}"), y: Access(yb), z: Access(f"z{L}")}
        steps = []
        delta = out.delta
        if delta.has(S):
            grad_term = sp.expand(a * self.eqs.cost_gradient)
            steps.append(RowSum(f"S{L}", rows, n, dict(reads), grad_term,
                                eq=f"S{L} = Σₖ a{L}ₖ ∂C/∂a{L}ₖ  (softmax Jacobian)"))
            reads[S] = Access(f"S{L}", "i")
        steps.append(Map(rows, n, reads, [(Access(f"delta{L}"), stabilise(delta))],
                         eq=f"BP1: {out.bp1}"))
        return steps

    def hidden_error_step(self, layer, rows: str) -> Map:
        l = layer.index
        reads = {g: Access(f"delta{l}"), a: Access(f"a{l}"), z: Access(f"z{l}")}
        deriv = layer.derivative
        expr = layer.delta
        if not deriv.uses_a:
            sp_sym = sp.Symbol("sp", real=True)
            reads[sp_sym] = Access(f"sp{l}")
            expr = g * sp_sym
        return Map(rows, layer.n_out, reads, [(Access(f"delta{l}"), stabilise(expr))], eq=f"BP2: {layer.bp2}")

    def scratch(self, rows: str, train: bool) -> list[Buffer]:
        bufs = []
        for layer in self.eqs.layers:
            l, n = layer.index, layer.n_out
            bufs += [Buffer(f"z{l}", n, rows), Buffer(f"a{l}", n, rows)]
            if train:
                bufs.append(Buffer(f"delta{l}", n, rows))
                if layer.derivative is not None and not layer.is_output and not layer.derivative.uses_a:
                    bufs.append(Buffer(f"sp{l}", n, rows))
        out = self.eqs.layers[-1]
        if train and out.delta.has(S):
            bufs.append(Buffer(f"S{out.index}", None, rows))
        return bufs

    # -- programs ------------------------------------------------------------------------------------
    def forward(self) -> Program:
        L = self.L
        steps = self.forward_steps("X", "n", train=False)
        steps.append(Map("n", self.sizes[-1], {a: Access(f"a{L}")}, [(Access("out"), a)], eq="out = aᴸ"))
        return Program("forward", ["X", *_params(L), "out"], ["R2", *_param_types(L), "X2"],
                       self.scratch("n", train=False), steps, doc="aᴸ for every row of X",
                       row_vars={"n": "X.shape[0]"})

    def cost(self) -> Program:
        L = self.L
        out = self.eqs.layers[-1]
        vector = out.activation.vector
        c = self.net.cost.expr
        # log(1 − aⱼ) of a softmax from its own row step (see codegen): a saturated aⱼ rounds to exactly 1.
        keep_l1ma = vector and out.n_out > 1 and c.has(sp.log(1 - a))
        steps = self.forward_steps("X", "n", train=False, keep_lse=vector, keep_l1ma=keep_l1ma)
        reads = {a: Access(f"a{L}"), y: Access("Y"), z: Access(f"z{L}")}
        if vector:
            # log aⱼ = zⱼ − log Σₖ exp zₖ: never log(0) for a saturated softmax.
            c_stable = c.replace(sp.log(a), z - _lse)
            reads[_lse] = Access(f"lse{L}", "i")
            if keep_l1ma:
                c_stable = c_stable.replace(sp.log(1 - a), _l1ma)
                reads[_l1ma] = Access(f"l1ma{L}")
        else:
            in_z = stabilise(c.subs(a, out.activation.expr))
            c_stable = in_z if len(in_z.atoms(sp.log)) < len(c.atoms(sp.log)) else stabilise(c)
        steps.append(RowSum("@total", "n", out.n_out, reads, c_stable,
                            eq=f"C = Σ over rows and outputs of {self.net.cost.text} (stable form: {c_stable})"))
        bufs = self.scratch("n", train=False)
        if vector:
            bufs.append(Buffer(f"lse{L}", None, "n"))
        if keep_l1ma:
            bufs.append(Buffer(f"l1ma{L}", out.n_out, "n"))
        return Program("cost", ["X", "Y", *_params(L)], ["R2", "R2", *_param_types(L)], bufs, steps,
                       returns="total", doc="Σ of the cost over the rows (regularisation excluded)",
                       row_vars={"n": "X.shape[0]"})

    def backward_steps(self, a0: str, rows: str, update: bool) -> list:
        steps = []
        scale = "-eta / m" if update else "1.0 / m"
        for layer in reversed(self.eqs.layers):
            l = layer.index
            prev = a0 if l == 1 else f"a{l - 1}"
            if l > 1:
                # (wˡ)ᵀδˡ for every sample, with the weights before this mini-batch's update.
                steps.append(Gemm(f"delta{l - 1}", f"delta{l}", f"W{l}", False, False,
                                  eq=f"delta{l - 1} = delta{l} · W{l}  ((w{l})ᵀδ{l} per sample, BP2's first factor)"))
            if update:
                steps.append(Gemm(f"W{l}", f"delta{l}", prev, True, False, alpha=scale, beta="decay",
                                  eq=f"BP4 + SGD: W{l} ← (1 − ηλ/n)·W{l} − (η/m)·Σ δ{l}ᵀ a{l - 1}"))
                steps.append(ColSum(f"b{l}", f"delta{l}", rows, layer.n_out, alpha=scale, beta="1.0",
                                    eq=f"BP3 + SGD: b{l} ← b{l} − (η/m)·Σ δ{l}"))
            else:
                steps.append(Gemm(f"nabla_w{l}", f"delta{l}", prev, True, False, alpha=scale,
                                  eq=f"BP4: nabla_w{l} = (1/m)·Σ δ{l}ᵀ a{l - 1}"))
                steps.append(ColSum(f"nabla_b{l}", f"delta{l}", rows, layer.n_out, alpha=scale,
                                    eq=f"BP3: nabla_b{l} = (1/m)·Σ δ{l}"))
            if l > 1:
                steps.append(self.hidden_error_step(self.eqs.layers[l - 2], rows))
        return steps

    def backward(self) -> Program:
        L = self.L
        steps = self.forward_steps("X", "m", train=True)
        steps += self.output_error_steps("Y", "m")
        steps += self.backward_steps("X", "m", update=False)
        grads = []
        for l in range(1, L + 1):
            grads += [f"nabla_w{l}", f"nabla_b{l}"]
        return Program("backward", ["X", "Y", *_params(L), *grads],
                       ["R2", "R2", *_param_types(L), *_param_types(L)],
                       self.scratch("m", train=True), steps,
                       doc="gradients of the mean cost over the rows of X", row_vars={"m": "X.shape[0]"})

    def sgd_epoch(self) -> Program:
        L = self.L
        body = [Gather([("X", "x"), ("Y", "yb")])]
        body += self.forward_steps("x", "m", train=True)
        body += self.output_error_steps("yb", "m")
        body += self.backward_steps("x", "m", update=True)
        bufs = [Buffer("x", self.sizes[0], "m"), Buffer("yb", self.sizes[-1], "m"), *self.scratch("m", train=True)]
        return Program("sgd_epoch", ["X", "Y", "order", "m", "eta", "decay", *_params(L)],
                       ["R2", "R2", "I1", "int", "float", "float", *_param_types(L)], bufs,
                       [Loop(body, eq="for every mini-batch: start = k·m")], returns="bad",
                       doc="one epoch of mini-batch SGD in place: order gives the sample order, m the mini-batch "
                           "size, decay = 1 − ηλ/n (L2 weight decay); a final partial batch is skipped. Returns "
                           "True, before updating, at the first mini-batch holding a NaN or inf in X or Y",
                       row_vars={})


def lower(network) -> dict[str, Program]:
    """The four programs of a network."""
    lw = _Lowerer(network)
    return {"forward": lw.forward(), "cost": lw.cost(), "backward": lw.backward(), "sgd_epoch": lw.sgd_epoch()}
