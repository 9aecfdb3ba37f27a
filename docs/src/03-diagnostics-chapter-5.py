# needs: mnist
# %% [markdown]
# # Diagnostics of learning (chapter 5): the vanishing gradient
#
# `symbp.train.diagnostics` measures what the book's chapter 5 is about. `learning_speed(model, X, Y)` gives
# ‖∂C/∂bˡ‖ per layer for the mean cost over the rows (the book's "speed of learning", from `model.gradients`), and
# `fit(..., diagnostics=True)` records per epoch, on a fixed sample of 1,000 training rows, per layer: the speed of
# learning, ‖∂C/∂wˡ‖, the fraction of saturated units (|σ′(z)| below 1% of its maximum; for ReLU the units with
# z ≤ 0) and the mean and spread of the weights, in `history.diagnostics`. Plots: `plot_learning_speed`,
# `plot_saturation`, `plot_weight_tiles`, `plot_diagnostics`; on the command line
# `symbp train --diagnostics --plot out.png`.
#
# The full reproduction (5 and 100 seeds, 500 epochs, the book's figures beside symbp's) is in
# [benchmarks/README.md](../benchmarks/README.md#chapter-5-the-vanishing-gradient).

# %%
import numpy as np
import symbp as sb
from symbp.train import diagnostics as dg

data = sb.data.load_mnist()
X, labels = data.train.X[:1000], data.train.labels[:1000]
Y = np.eye(10)[labels]

# %% [markdown]
# ## At initialisation
#
# The book's protocol: weights N(0, 1/n_in), biases N(0, 1), cross-entropy, δ averaged over the first 1,000
# training images; hidden layers first to last. Each extra layer slows the first one 4–5×: going back one layer
# multiplies δ by (wˡ⁺¹)ᵀ, which with N(0, 1/30) weights over 30 units roughly keeps its norm, and by
# σ′(zˡ) ≤ 1/4.

# %%
for sizes in ([784, 30, 30, 10], [784, 30, 30, 30, 10], [784, 30, 30, 30, 30, 10]):
    net = sb.Network(sizes, activation=sb.sigmoid, cost=sb.cross_entropy)
    speeds = np.array([dg.learning_speed(net.compile(seed=s), X, Y)[:-1] for s in range(5)])
    print(f"{str(sizes):24s}", "  ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(speeds.mean(0), speeds.std(0, ddof=1))))

# %% [markdown]
# ## During training
#
# As the book: those 1,000 images, full batch, η = 0.1, λ = 5 (here 15 epochs instead of 500). The sigmoid net's
# speeds fall and stay ordered by depth; ReLU hidden layers keep the first layer the fastest.

# %%
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 2, figsize=(8, 2.8), dpi=72, sharey=True)
for ax, act in zip(axes, (sb.sigmoid, sb.relu)):
    layers = [sb.Input(784), *[sb.Dense(30, act) for _ in range(3)], sb.Dense(10, sb.sigmoid)]
    model = sb.Network(layers, cost=sb.cross_entropy).compile(seed=0)
    hist = model.fit((X, labels), epochs=15, batch_size=1000, eta=0.1, lmbda=5.0, diagnostics=True, seed=0)
    last = hist.diagnostics[-1]
    print(f"{act.name:8s} speed of each layer after 15 epochs:", [f"{v:.2g}" for v in last["speed"]])
    print(f"{'':8s} saturated units:", [f"{v:.2f}" if v is not None else "-" for v in last["saturation"]])
    speeds = np.array([r["speed"] for r in hist.diagnostics])
    for layer in range(speeds.shape[1] - 1):
        ax.semilogy(speeds[:, layer], label=f"hidden layer {layer + 1}")
    ax.set_title(f"{act.name} hidden layers")
    ax.set_xlabel("epoch")
axes[0].set_ylabel("‖∂C/∂bˡ‖")
axes[0].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# `dg.plot_learning_speed(hist, "speed.png")`, `dg.plot_saturation`, `dg.plot_weight_tiles(model, "tiles.png")`
# and `dg.plot_diagnostics` write the same figures (and more) to files. A diagnostics record costs a few per cent
# of an epoch (it is taken on 1,000 rows).
