"""Lowering: derived equations → kernel programs (``forward``, ``cost``, ``backward``, ``sgd_epoch``).

Takes: a ``Network`` and its ``Equations``.  Gives: ``Program`` objects (see ``program.py``) built by asking
each layer's lowering (``symbp.compile.layers``, one module per layer kind) for its steps, in order for the
forward pass and in reverse for the backward pass; this module knows no layer kind.  Elementwise steps hold
exactly the sympy expressions of ``net.equations()`` (σ, σ′ and δ), passed through the stability rewrite rules
of ``printer.stabilise`` and, in the backends, ``sympy.cse``.

Buffer names follow the equations: ``z1``, ``a1`` (layer 1), ``delta2``, ``nabla_w1``, ``nabla_b1``;
``a0`` is the input (X, or the gathered mini-batch ``x`` in ``sgd_epoch``).
"""

from __future__ import annotations

import sympy as sp

from symbp.compile.layers import LowerContext, UpdateRule, lowering
from symbp.compile.passes import optimise
from symbp.compile.printer import stabilise
from symbp.compile.program import (
    ArrayArg,
    Block,
    Buffer,
    Gather,
    Loop,
    Map,
    Program,
    RowSum,
    ScalarArg,
    elem,
    per_row,
)
from symbp.compile.symbols import l1ma, lse
from symbp.symbols import a, y, z


def param_names(eqs) -> list[tuple[str, int]]:
    """(name, ndim) of every parameter array, in layer order: W1, b1, W2, b2, ... (by each layer's specs)."""
    out = []
    for eq in eqs.layers:
        for spec in eq.layer.param_specs(eq.in_shape):
            out.append((f"{spec.name}{eq.index}", len(spec.shape)))
    return out


def _param_args(eqs, prefix: str = "") -> list[ArrayArg]:
    return [ArrayArg(f"{prefix}{name.lower() if prefix else name}", nd) for name, nd in param_names(eqs)]


class _Lowerer:
    def __init__(self, network):
        self.net = network
        self.eqs = network.equations()
        self.out = self.eqs.layers[-1]
        self.L = len(self.eqs.layers)

    def _context(self, a0: str, rows: str, **flags) -> LowerContext:
        ctx = LowerContext(self.eqs, a0, rows, **flags)
        for eq in self.eqs.layers:
            lowering(eq).scratch(eq, ctx)
        return ctx

    def _forward(self, ctx: LowerContext, **output_flags) -> list:
        steps = []
        for eq in self.eqs.layers:
            flags = output_flags if eq is self.out else {}
            steps += _block(f"layer {eq.index} forward", lowering(eq).forward(eq, ctx, **flags))
        return steps

    def _backward(self, ctx: LowerContext, yb: str) -> list:
        steps = _block(f"layer {self.out.index} output error", lowering(self.out).output_error(self.out, ctx, yb))
        for eq in reversed(self.eqs.layers):
            steps += _block(f"layer {eq.index} backward", lowering(eq).backward(eq, ctx))
        return steps

    # -- programs ------------------------------------------------------------------------------------
    def forward(self) -> Program:
        ctx = self._context("X", "n")
        steps = self._forward(ctx)
        n_out = self.out.out_shape[0]
        steps.append(Map("n", n_out, {a: elem(ctx.act(self.L))}, [(elem("out"), a)], eq="out = aᴸ"))
        args = [ArrayArg("X", 2, readonly=True), *_param_args(self.eqs), ArrayArg("out", 2)]
        return Program("forward", args, ctx.buffers, steps, doc="aᴸ for every row of X",
                       row_vars={"n": "X.shape[0]"})

    def cost(self) -> Program:
        out, L = self.out, self.L
        vector = out.activation.vector
        c = self.net.cost.expr
        # log(1 − aⱼ) of a softmax from its own row step (see the emitters): a saturated aⱼ rounds to exactly 1.
        keep_l1ma = vector and out.n_out > 1 and c.has(sp.log(1 - a))
        ctx = self._context("X", "n")
        steps = self._forward(ctx, keep_lse=vector, keep_l1ma=keep_l1ma)
        reads = {a: elem(f"a{L}"), y: elem("Y"), z: elem(f"z{L}")}
        if vector:
            # log aⱼ = zⱼ − log Σₖ exp zₖ: never log(0) for a saturated softmax.
            c_stable = c.replace(sp.log(a), z - lse)
            reads[lse] = per_row(f"lse{L}")
            ctx.buffer(f"lse{L}", "n")
            if keep_l1ma:
                c_stable = c_stable.replace(sp.log(1 - a), l1ma)
                reads[l1ma] = elem(f"l1ma{L}")
                ctx.buffer(f"l1ma{L}", "n", out.n_out)
        else:
            in_z = stabilise(c.subs(a, out.activation.expr))
            c_stable = in_z if len(in_z.atoms(sp.log)) < len(c.atoms(sp.log)) else stabilise(c)
        steps.append(RowSum("@total", "n", out.n_out, reads, c_stable,
                            eq=f"C = Σ over rows and outputs of {self.net.cost.text}" + (
                                "  (log a of the softmax as z − log Σ exp z)" if vector else "")))
        args = [ArrayArg("X", 2, readonly=True), ArrayArg("Y", 2, readonly=True), *_param_args(self.eqs)]
        return Program("cost", args, ctx.buffers, steps, returns="total",
                       doc="Σ of the cost over the rows (regularisation excluded)", row_vars={"n": "X.shape[0]"})

    def backward(self) -> Program:
        ctx = self._context("X", "m", grads=True)  # dropout off: the identity
        steps = self._forward(ctx) + self._backward(ctx, "Y")
        args = [ArrayArg("X", 2, readonly=True), ArrayArg("Y", 2, readonly=True), *_param_args(self.eqs),
                *_param_args(self.eqs, "nabla_")]
        return Program("backward", args, ctx.buffers, steps,
                       doc="gradients of the mean cost over the rows of X (dropout off)",
                       row_vars={"m": "X.shape[0]"})

    def sgd_epoch(self, rule: UpdateRule | None = None, name: str = "sgd_epoch", compact: bool = False) -> Program:
        """The whole-epoch kernel; ``compact``: X holds uint8 codes, turned into inputs xscale·X as gathered."""
        rule = rule or UpdateRule()
        ctx = LowerContext(self.eqs, "x", "m", masks=True, grads=True, update=True, rule=rule)
        ctx.buffer("x", "m", self.net.sizes[0])
        ctx.buffer("yb", "m", self.out.n_out)
        for eq in self.eqs.layers:
            lowering(eq).scratch(eq, ctx)
        body = [Gather([("X", "x"), ("Y", "yb")], scale={"X": "xscale"} if compact else {})]
        body += self._forward(ctx)
        body += self._backward(ctx, "yb")
        args = [ArrayArg("X", 2, "uint8" if compact else "float", readonly=True), ArrayArg("Y", 2, readonly=True),
                ArrayArg("order", 1, "int64", readonly=True), ScalarArg("m", "int"), ScalarArg("eta", "float"),
                ScalarArg("decay", "float"), ScalarArg("seed", "int"), ScalarArg("epoch", "int"),
                *([ScalarArg("xscale", "float")] if compact else []),
                *([ScalarArg("pen", "float")] if not rule.plain else []),
                *([ScalarArg("mu", "float")] if rule.momentum else []),
                *_param_args(self.eqs), *(_param_args(self.eqs, "v") if rule.momentum else [])]
        if rule.plain:
            how = "decay = 1 − ηλ/n (L2 weight decay)"
        else:
            penalty = "w (L2)" if rule.penalty is None else str(rule.penalty)
            how = f"pen = ηλ/n times the regulariser's R′(w) = {penalty}"
            if rule.momentum:
                how += ", mu = μ and the velocities v (book eqs. 107–108: v ← μv − η∇C, w ← w + v)"
        return Program(name, args, ctx.buffers, [Loop(body, eq="for every mini-batch: start = k·m")],
                       returns="bad",
                       doc="one epoch of mini-batch SGD in place: order gives the sample order, m the mini-batch "
                           f"size, {how}, (seed, epoch) the dropout masks"
                           + ("; X holds uint8 codes, the inputs are xscale·X" if compact else "")
                           + "; a final partial batch is skipped (the caller runs it as a call of its own). "
                           "Returns True, before updating, at the first mini-batch holding a NaN or inf in X or Y",
                       row_vars={})


def _block(label: str, steps: list) -> list:
    return [Block(label, steps)] if steps else []


def lower_update(network, rule: UpdateRule, name: str, compact: bool = False) -> Program:
    """The whole-epoch kernel of ``network`` with another update rule (a regulariser's R′, momentum) or for
    uint8 inputs (``compact``)."""
    return optimise(_Lowerer(network).sgd_epoch(rule, name, compact))


def lower(network, training: bool = True) -> dict[str, Program]:
    """The four programs of a network (``forward`` and ``cost`` only, without ``training``)."""
    lw = _Lowerer(network)
    programs = {"forward": lw.forward(), "cost": lw.cost()}
    if training:
        programs.update(backward=lw.backward(), sgd_epoch=lw.sgd_epoch())
    return {name: optimise(prog) for name, prog in programs.items()}


__all__ = ["Buffer", "lower", "param_names"]
