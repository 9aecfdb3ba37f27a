# %% [markdown]
# # A visual proof that nets can compute any function (chapter 4)
#
# `sb.approx` builds the chapter's networks as ordinary symbp networks (a `Network`, compiled, parameters set by
# the construction; `net.equations()`, `model.feedforward` and the kernels as for any other). A hidden sigmoid
# neuron with weight w and bias −w·s is a step at s; two steps with output weights h and −h are a bump of height
# h; N bumps across [lo, hi] (2N hidden neurons, the two outermost steps d/2 outside the box, d = (hi − lo)/N)
# with h = f(midpoint) and a linear output approximate f (a sigmoid output approximates σ⁻¹∘f, f clipped to
# [10⁻³, 1 − 10⁻³]). `m=M` adds M copies shifted by d/M, each at 1/M of the height. In 2-D the book's towers:
# steps in x and in y (shared), a second hidden sigmoid layer with one neuron per square (inputs ±h, bias −3h/2,
# h = 200) and a linear output weighting each tower by f at its centre. f is parser text in `x` (or `x`, `y`),
# read by the whitelist parser; one that is not finite on the box is refused, naming a point.
#
# This guide needs no data. The measured table (N up to 200, trained nets beside the construction) is in
# [benchmarks/README.md](../benchmarks/README.md#chapter-4-approximating-functions).

# %%
import matplotlib.pyplot as plt
import numpy as np

from symbp import approx

c = approx.construct("sin(3*x) + 0.5*x", 20)    # w = 60·N/(hi − lo): w·d = 60
print(c.net)
print("sup and mean error on 20 001 points:", approx.errors(c))
print("the bound below, with L = 3.5:", round(approx.bound(c, (3.5,)), 4))

x = np.linspace(0, 1, 801)[:, None]
fig, ax = plt.subplots(figsize=(6, 2.8), dpi=72)
ax.plot(x, np.sin(3 * x) + 0.5 * x, label="f")
ax.plot(x, c.model.feedforward(x), label="network, N = 20")
ax.legend()
fig.tight_layout()

# %% [markdown]
# **The bound.** Write the output as steps, g(x) = Σᵢ cᵢ σ(w(x − sᵢ)), cᵢ = hᵢ − hᵢ₋₁: |cᵢ| ≤ L·d between
# neighbours (f L-Lipschitz), ≤ F = max|f| at the two outer steps. With true steps g is a staircase within L·d/2
# of f (each x is within d/2 of its bump's midpoint). A sigmoid step differs from a true one by σ(−w|x − s|):
# 1/2 at the step (the failure window), e^(−wt) at distance t; the cuts are d apart. So, t the distance to the
# nearest cut,
#
# &nbsp;&nbsp;&nbsp;&nbsp;|f − g| ≤ L·d/2 + L·d·(σ(−wt) + 2e^(−wd/2)/(1 − e^(−wd))) + 2F·e^(−wd/2),
#
# everywhere (t = 0) **L·(hi − lo)/N** plus a term exponentially small in w·d, and away from the windows
# (t ≥ τ) L·d/2 + L·d·e^(−wτ) + the same tail. M copies keep the bound (an average of approximations each within
# it) and near a cut only one copy is in its window. Towers, away from the windows (t ≥ τ in x and y):
# (Lx + Ly)·d/2 + N²F·σ(−h(1/2 − 4e^(−wτ))).

# %%
print(approx.format_table(approx.table("sin(3*x) + 0.5*x", [5, 10, 20, 50], train=False)))

# %% [markdown]
# The same from the command line (a table, and plots of the construction and of the error against N):
#
# ```bash
# symbp approx "sin(3*x) + 0.5*x" --neurons 5,10,20,50,100 --plot approx.png   # table, approx.png, approx-bumps.png
# symbp approx "sin(3*x)*y + 0.5" --dims 2 --neurons 4,8,16 --plot towers.png  # towers.png, towers-towers.png
# ```

# %%
!symbp approx "sin(3*x)*y + 0.5" --dims 2 --neurons 4,8
