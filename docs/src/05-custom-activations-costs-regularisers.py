# %% [markdown]
# # Your own activations, costs and regularisers
#
# Anything written as a sympy expression — or as text, read by symbp's whitelist parser — is an activation
# (in `z`), a cost (in `a` and `y`) or a weight penalty (in `w`). symbp derives what backpropagation needs,
# shows it, and generates the kernels. This guide needs no data: it trains on a small synthetic problem.

# %%
import numpy as np
import sympy as sp

import symbp as sb
from symbp import a, w, y, z

softsign = sb.Activation("softsign", z / (1 + sp.Abs(z)))
swish = sb.Activation.parse("swish", "z*sigmoid(z)")
xent = sb.Cost("xent", -(y * sp.log(a) + (1 - y) * sp.log(1 - a)))
elastic = sb.Regularizer("elastic", sp.Abs(w) / 2 + w**2 / 4, 5.0)

net = sb.Network([sb.Input(2), sb.Dense(16, swish), sb.Dense(16, softsign), sb.Dense(1, sb.sigmoid)], cost=xent)
print(net.equations(regularizer=elastic))

# %% [markdown]
# σ′ of `swish` has no form in the stored activation alone, so its z is kept for the backward pass; the notes
# under "Simplifications" say what was found and why. Cross-entropy written by hand simplifies with the sigmoid
# output to δᴸ = a − y, as the built-in does.
#
# Train it on points inside and outside a circle:

# %%
rng = np.random.default_rng(0)
X = rng.uniform(-1, 1, size=(2000, 2))
labels = (np.hypot(X[:, 0], X[:, 1]) < 0.7).astype(float)[:, None]   # one output: the target itself
model = net.compile(seed=0)
hist = model.fit((X[:1500], labels[:1500]), epochs=20, batch_size=10, eta=0.5, regularizer=elastic, seed=0,
                 evaluation_data=(X[1500:], labels[1500:]))
print("held-out cost, first and last epoch:", round(hist.evaluation_cost[0], 4), round(hist.evaluation_cost[-1], 4))
print("held-out error rate:", float(np.mean((model.feedforward(X[1500:]) > 0.5) != labels[1500:])))

# %% [markdown]
# ## Text: the whitelist parser
#
# Expressions given on the command line, read from a model file or a sweep's configuration go through the
# whitelist parser (`symbp/parsing.py`): Python's `ast`, walked by hand, with a fixed table of functions;
# `eval`, `exec` and `sympify` never see user text. Misspelt names get a suggestion, and a syntax error a caret
# under its column.

# %%
for text in ["where(z > 0, z, 0.01*z)", "sigmod(z)", "z*tanh(softplus(z))", "__import__('os')", "z +* 2"]:
    try:
        print("ok:", sb.Activation.parse("mine", text).expr)
    except ValueError as e:
        print(e)

# %% [markdown]
# ## What is refused, and why
#
# - An activation that is not real for some real z (`sqrt(z)`, `log(z)`) is refused, naming a z; constants
#   beyond the dtype's range are refused (`1e39*z` in float32).
# - Penalties must be real and finite for every w, with a derivative almost everywhere that is finite too (a step
#   is refused at declaration, and so is a pole such as 1/w, log|w| or √|w|'s derivative at 0, looked for at 0
#   and round numbers). Every function of the parser works in a penalty, `erf` included.
# - Derivation has a budget (time and expression size) for every user expression
#   (`sb.derive.budget(seconds=..., max_ops=...)`, `SYMBP_DERIVE_SECONDS`, default 10 s). Optional
#   simplifications that run out of their share fall back to the plain derivative with a note; past the budget a
#   `ValueError` names the expression and the budget. Power towers are bounded (`(((z**100)**100)**100)**100` is
#   refused at once).
# - A step activation (a perceptron) runs `feedforward` and `cost`, and training it is refused with the book's
#   reason.

# %%
for make in [lambda: sb.Activation.parse("root", "sqrt(z)"),
             lambda: sb.Regularizer.parse("inverse", "1/w", 1.0),
             lambda: sb.Activation.parse("tower", "(((z**100)**100)**100)**100")]:
    try:
        make()
    except ValueError as e:
        print(e)

# %% [markdown]
# ## On the command line
#
# `--activation`, `--output-activation`, `--cost` and `--regularizer` take the same text:
#
# ```bash
# symbp train --activation "z/(1+abs(z))" --output-activation sigmoid --epochs 5 --plot curves.png --save model
# symbp train --regularizer "abs(w)/2 + w^2/4" --epochs 10
# symbp show --activation "z*sigmoid(z)" --cost "-(y*log(a) + (1-y)*log(1-a))" --format markdown
# ```

# %%
!symbp show --layers 784,30,10 --activation "z*sigmoid(z)" --cost "-(y*log(a) + (1-y)*log(1-a))" --format latex
