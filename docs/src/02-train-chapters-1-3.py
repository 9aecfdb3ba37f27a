# needs: mnist
# %% [markdown]
# # Train the book's networks: chapters 1–3
#
# This guide trains on a slice of MNIST for a few epochs so that it runs in seconds; the full runs (50,000
# images, 30–60 epochs) and their accuracies are in [benchmarks/README.md](../benchmarks/README.md).
#
# `sb.data.load_mnist()` gives Nielsen's split: 50,000 training, 10,000 validation and 10,000 test images, rows of
# 784 pixels in [0, 1]. It finds the files in `data_dir=`, else `$SYMBP_DATA_DIR`, else symbp's cache folder, else
# downloads them from the usual public mirrors (SHA-256 checked).

# %%
import matplotlib.pyplot as plt
import numpy as np

import symbp as sb
from symbp.train.plot import draw_history

data = sb.data.load_mnist()
print(data)
train = data.train.X[:10_000], data.train.labels[:10_000]   # a slice: (X, labels) is training data too

# %% [markdown]
# ## Chapter 1: [784, 30, 10], sigmoid, quadratic cost, η = 3, mini-batch 10

# %%
net = sb.Network([784, 30, 10], activation=sb.sigmoid, cost=sb.quadratic)
model = net.compile(backend="numba", dtype="float64", seed=0)   # or backend="numpy", dtype="float32"
hist = model.fit(train, epochs=5, batch_size=10, eta=3.0, evaluation_data=data.test, seed=0)
print("test accuracy per epoch:", hist.evaluation_accuracy)

fig, (ax_acc, ax_cost) = plt.subplots(1, 2, figsize=(8, 2.8), dpi=72)
draw_history(ax_acc, ax_cost, hist, evaluation_label="test")
fig.tight_layout()

# %% [markdown]
# What a model does besides `fit`:

# %%
X, labels = data.test.X[:5], data.test.labels[:5]
Y = np.eye(10)[labels]
print("accuracy on the test set:", model.evaluate(data.test))
print("predicted:", model.feedforward(X).argmax(axis=1), "labels:", labels)
print("mean cost of 5 images:", round(model.cost(X, Y), 4))
print("gradient shapes:", [tuple(g.shape) for g in model.gradients(X, Y)[0]])
model.save("ch1")                     # ch1.json (the network, expressions as text) + ch1.npz (parameters)
again = sb.load("ch1")
print("loaded model, same accuracy:", again.evaluate(data.test) == model.evaluate(data.test))

# %% [markdown]
# - **The book's epoch, exactly.** When the training set is not a multiple of the mini-batch size, the short last
#   mini-batch is trained too, with η/its size, as network.py and PyTorch's DataLoader do (2,005 rows at m = 10
#   are 201 updates); `fit(..., drop_last=True)` / `symbp train --drop-last` skips it.
# - `fit` monitors what it is asked for: with no evaluation data it just trains (as network.py does), unless
#   `monitor_training=True` (or early stopping or a schedule needs a score).
# - **Compact inputs.** MNIST is 8-bit: `sb.data.load_mnist(dtype="uint8")` hands out the pixels themselves, and
#   `split.input_scale` (1/255) says how to read them. Every method that takes `X` (`fit`, `run_epoch`,
#   `evaluate`, `feedforward`, `cost`, `gradients`) accepts uint8 rows with `input_scale=`; the epoch kernel
#   converts the rows as it gathers each mini-batch (x = scale·X in float64, rounded to the model's dtype), so an
#   epoch reads 8× fewer bytes and the training set takes 8× less memory (the 250,000 expanded images: 196 MB
#   instead of 1.57 GB in float64). Results equal those of the float inputs `X/255` to the rounding of the scale
#   (≤ 1e-13 relative after an epoch in float64). A uint8 `X` without a scale, a scale that is not finite and positive,
#   or a scale with float inputs is a `ValueError`. `symbp train` reads MNIST this way by default
#   (`--inputs float` for the old way).

# %%
pixels = sb.data.load_mnist(dtype="uint8")
model8 = net.compile(seed=0)
model8.fit((pixels.train.X[:10_000], pixels.train.labels[:10_000]), epochs=1, eta=3.0, seed=0,
           input_scale=pixels.input_scale)
model1 = net.compile(seed=0)
model1.fit(train, epochs=1, eta=3.0, seed=0)
print("largest difference from float inputs after an epoch:",
      max(float(np.abs(p - q).max()) for p, q in zip(model8.params[0], model1.params[0])))

# %% [markdown]
# ## Chapter 3: cross-entropy, regularisers, momentum, the learning-rate schedule
#
# ```python
# from symbp import w
# model.fit(train, eta=0.5, lmbda=5.0)                       # L2 as the book's network2: λ/2n·Σw²
# model.fit(train, eta=0.5, regularizer=sb.L1(5.0))         # λ/n·Σ|w|: w → w − (ηλ/n)·sgn(w) − η∂C₀/∂w, sgn 0 = 0
# model.fit(train, regularizer=sb.Regularizer("elastic", sp.Abs(w)/2 + w**2/4, 5.0))   # any penalty R(w)
# model.fit(train, regularizer=sb.Regularizer.parse("smooth-l1", "sqrt(w^2 + 0.01)", 5.0))
# model.fit(train, eta=0.1, momentum=0.9)                    # eqs. 107-108: v → μv − η∇C, w → w + v
# model.fit(train, eta=0.5, evaluation_data=val, schedule="halve", patience=10)   # η/2 after 10 flat epochs
# print(net.equations(regularizer=sb.L1(5.0), momentum=0.9))  # shows the update rule that runs
# ```
#
# - A regulariser is a sympy expression in the weight symbol `w`; the cost gets (λ/n)·Σ R(w) over the weights
#   (not the biases), sympy derives R′(w), and the **update rule is generated into the whole-epoch kernel**: a
#   variant of `sgd_epoch` named after it (`sgd_epoch_L1_…`, `…_momentum`), generated and compiled the first
#   time `fit` asks for it. L2 (`lmbda=` or `sb.L2(λ)`) stays the weight decay β = 1 − ηλ/n of the weight
#   `gemm`, bit for bit the same. Penalties must be real and finite for every w, with a derivative almost
#   everywhere that is finite too (a step is refused at declaration, and so is a pole such as 1/w, log|w| or
#   √|w|'s derivative at 0, looked for at 0 and round numbers). Every function of the parser works in a penalty,
#   `erf` included (SciPy's, where NumPy has none).
# - Momentum keeps one velocity per parameter, in the model across `fit` calls (`model.velocities`), saved
#   with it; new parameters start them again from zero. `momentum=0` is exactly plain SGD.
# - `schedule="halve"` is the book's: halve η each time `patience` epochs bring no better evaluation accuracy,
#   stop when η would reach η₀/128; `hist.eta` records η per epoch.

# %%
net3 = sb.Network([784, 30, 10], activation=sb.sigmoid, cost=sb.cross_entropy)
val = data.validation.X[:2_000], data.validation.labels[:2_000]
for name, options in [("L2, λ = 5", dict(eta=0.5, lmbda=5.0)),
                      ("L1, λ = 5", dict(eta=0.5, regularizer=sb.L1(5.0))),
                      ("smooth L1", dict(eta=0.5, regularizer=sb.Regularizer.parse("smooth-l1", "sqrt(w^2 + 0.01)", 5.0))),
                      ("momentum 0.9", dict(eta=0.05, momentum=0.9))]:
    h = net3.compile(seed=0).fit(train, epochs=3, evaluation_data=val, seed=0, **options)
    print(f"{name:14s} validation accuracy per epoch: {h.evaluation_accuracy}")

# %%
for rule in net3.equations(regularizer=sb.L1(5.0), momentum=0.9).update_rule():   # weights, biases
    print(rule)

# %% [markdown]
# ## Perceptrons (chapter 1)
#
# `sb.Activation("step", sp.Heaviside(z))` runs `feedforward` and `cost` (the book's NAND perceptron is a test),
# and training it is refused with the book's reason: σ′ is zero wherever it is defined, so no small change of a
# weight changes the cost (`net.untrainable` says so).

# %%
import sympy as sp

step = sb.Activation("step", sp.Heaviside(sb.z))
print(sb.Network([2, 1], activation=step, cost=sb.quadratic).untrainable)

# %% [markdown]
# ## From the command line
#
# `symbp train` does the same: every option is checked before any data is loaded, and errors are one line on
# stderr naming the option. `--limit N` trains on the first N images.

# %%
!symbp train --limit 5000 --epochs 2 --cost cross-entropy --eta 0.5 --lmbda 5 --no-progress
