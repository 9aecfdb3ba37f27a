# needs: mnist
# %% [markdown]
# # Convolutional networks (chapter 6)
#
# A small convolutional net trained on 5,000 MNIST images for two epochs, so that this guide runs in seconds.
# The book's nets trained in full, with their accuracies, and the speed of their epochs against PyTorch are in
# [benchmarks/README.md](../benchmarks/README.md#chapter-6-convolutional-nets).

# %%
import numpy as np

import symbp as sb

net = sb.Network([sb.Input((1, 28, 28)),
                  sb.Conv2D(8, (5, 5), sb.relu), sb.MaxPool((2, 2)),    # W: (8, 1, 5, 5), b: (8,)
                  sb.Dense(100, sb.relu), sb.Dropout(0.5),               # Dense flattens (channel, row, col)
                  sb.Dense(10, sb.softmax)], cost=sb.log_likelihood)
print(net.equations())

# %%
data = sb.data.load_mnist(dtype="uint8")
model = net.compile(backend="numba", dtype="float32", seed=0)      # X as (n, 784) rows or (n, 1, 28, 28)
hist = model.fit((data.train.X[:5000], data.train.labels[:5000]), epochs=2, eta=0.03, seed=0,
                 evaluation_data=(data.test.X[:2000], data.test.labels[:2000]), input_scale=data.input_scale)
print("test accuracy (2,000 images) per epoch:", hist.evaluation_accuracy)
print(model.plan())

# %% [markdown]
# ## The layers
#
# - `Conv2D` is PyTorch's `Conv2d`: z[f,i,j] = Σ_{c,p,q} W[f,c,p,q]·a[c,s·i+d·p−pad,s·j+d·q−pad] + b[f], then σ
#   (any activation the derive stage accepts). By default a valid correlation with stride 1; `stride`, `padding`
#   (an int, a pair or `"same"`), `dilation` and `groups` (`groups=maps=channels`: depthwise) as in PyTorch,
#   W of shape (maps, C/groups, kh, kw). `MaxPool(window, stride=None, padding=0)` and `AvgPool(...)` (stride =
#   window unless told; padding left out of a max, counted in a mean as PyTorch's `count_include_pad=True`; a
#   global average pool is `AvgPool` over the whole image). Output sizes follow PyTorch's formulas (rows and
#   columns that fill no window dropped), impossible combinations are a `ValueError` naming the layer, and a
#   max's gradient goes to the window's maximum — on ties to the first in row-major order.
# - A convolution or pooling with any option beyond the book's (stride, padding, dilation, groups, overlapping
#   windows, averages) **is its declaration** (see [the declared layers' guide](06-declared-layers.ipynb)):
#   `sb.Conv2D(32, (3, 3), sb.relu, stride=2, padding=1)` generates
#   `z[f,i,j] = sum(W[f,c,p,q]*x[c,2*i+p-1,2*j+q-1] ...) + b[f]` and goes the declared layers' way (derived by
#   solving its index equations, compiled by the passes: im2col + gemm for any stride, dilation and padding,
#   one product per group for grouped and depthwise convolutions, generated loops with constant extents for
#   window maxima and means). The book's plain `Conv2D` and non-overlapping `MaxPool` keep
#   the rules below (and their model files stay as they were).
# - **Dropout** is inverted dropout: while training each input unit is kept with probability 1 − p and scaled
#   by 1/(1 − p); `feedforward`, `cost`, `gradients` and `evaluate` run with it off (the identity), which in
#   expectation is the book's network3 (drop without scaling, scale the weights by 1 − p at inference).
#   Masks are drawn inside the whole-epoch kernel from a counter-based hash of (seed, epoch, layer, sample,
#   unit) (`symbp/compile/backends/masks.py`), so the numba and NumPy backends and any mini-batch order draw the same
#   masks, and `fit(..., seed=s)` is reproducible. `Dropout(0)` trains exactly like no dropout layer.
#   Layers are numbered by position (the input is layer 0), so a dropout layer has a number too.

# %%
modern = sb.Network([sb.Input((1, 28, 28)),
                     sb.Conv2D(16, (3, 3), sb.relu, padding=1),
                     sb.Conv2D(32, (3, 3), sb.relu, stride=2, padding=1),
                     sb.AvgPool((14, 14)),                                   # a global average pool
                     sb.Dense(10, sb.softmax)], cost=sb.log_likelihood)
print(modern)
print(modern.compile(dtype="float32", seed=0).plan())

# %% [markdown]
# ## How the rules are derived
#
# **A convolution is its declaration.** `sb.Conv2D(20, (5, 5), sb.sigmoid)` on a 1x28x28 input is the map
# `z[f,i,j] = sum(W[f,c,p,q]*x[c,i+p,j+q] for c in range(1) for p in range(5) for q in range(5)) + b[f]`, and
# `sb.MaxPool((2, 2))` is `z[c,i,j] = max(x[c,2*i+p,2*j+q] for p in range(2) for q in range(2))`: generated from
# the layer's options (`layer.declaration(in_shape)` shows it) and derived like any declared layer
# (`symbp/derive/adjoint.py`). Each read of W, b or x is differentiated by solving the index equations over the
# integers: ∂C/∂W[f,c,p,q] = Σᵢⱼ δ[f,i,j]·a[c,i+p,j+q] (a valid correlation of the input with δ), ∂C/∂b[f] =
# Σᵢⱼ δ[f,i,j], and ∂C/∂a[c,y,u] = Σ_{f,p,q} δ[f,y−p,u−q]·W[f,c,p,q] over the p, q that keep y−p and u−q inside
# the output (a full convolution with the flipped kernel; those ranges become the loop bounds). The max's rule
# sends δ to each window's first maximum. `net.equations()` prints all of them; the sum-over-paths check covers
# small conv and pool nets.
#
# **Kernels**: the passes over the kernel program (`symbp/compile/passes.py`) recognise what these sums are,
# whatever layer declared them: a correlation (any stride, padding, dilation, groups) becomes im2col + BLAS
# `gemm` per sample (per group of samples laid side by side where a layer's maps are small and its products
# large: `model.plan()` says "10 samples per product"), the patches of the forward pass reused by ∂C/∂W, with
# its bias added after each product;
# a bias's adjoint becomes per-map sums; a max over non-overlapping windows becomes a window max that keeps its
# argmax, and its adjoint a scatter to it. The copies are written with the layer's extents as constants (im2col
# in straight-line chunks that LLVM vectorises). The NumPy backend runs the declared sums themselves,
# vectorised. Activations are stored flat in (channel, row, column) order, as `torch.flatten` does, so a `Dense`
# after a conv or pool layer reads them as they are.
#
# **Pooling before σ** (network3's order): when sympy shows a layer's σ non-decreasing on the reals
# (`sympy.is_increasing`: sigmoid, tanh, ReLU, softplus, linear) and a max pool follows it, max σ(z) = σ(max z),
# so the kernels pool z and apply σ and σ′ to the pooled values only — a quarter of them for 2x2 windows — and
# the pooling's scatter writes the layer's δ = ∂C/∂z directly. `net.equations()` says so, per layer, with the
# reason; for a σ sympy cannot show monotone (say z·tanh z) the pooling stays after σ.
#
# Not yet: fusing conv + bias + σ + pool into one loop; a batched gemm across the mini-batch; a backward that
# reads the pooled δ (three quarters of a conv layer's δ are zero after max-pooling).
#
# ## From the command line
#
# `--layers` takes comma-separated items besides plain sizes (`784,30,10` means what it always meant: the input,
# then dense layers with `--activation`):
#
# | item | layer |
# |---|---|
# | `N`, `fcN` | `Dense(N, --activation)` (a last one takes `--output-activation` when given) |
# | `softmaxN`, `sigmoidN`, `reluN`, `tanhN`, `linearN`, `softplusN` | `Dense(N, that activation)` (softmax: the output only) |
# | `convMAPSxKHxKW` | `Conv2D(MAPS, (KH, KW), --activation)`; suffixes `sS` stride, `pP` padding (`psame`), `dD` dilation, `gG` groups, e.g. `conv32x3x3s2p1` |
# | `poolP`, `poolPHxPW`, `maxpool3s2p1` | `MaxPool((P, P))`, `MaxPool((PH, PW))`, with stride and padding |
# | `avgpoolP` | `AvgPool((P, P))` (the same options) |
# | `dropoutP` | `Dropout(P)`: drops the next layer's inputs |
# | `@NAME` | a layer declared in the JSON file of `--declare` |
#
# The input is implied by the dataset: `Input((1, 28, 28))` when the first item is a conv or a pool, else
# `Input(784)`; a leading `784` or `1x28x28` may be written. A bad item or an impossible shape (a kernel larger
# than its input, a convolution after a dense layer, no dense output) is one line naming `--layers` and the item,
# before any data is loaded. The parser is `symbp/layer_spec.py`. The book's nets (network3.py, with the names
# of its `conv.py`):
#
# ```bash
# c6="--cost log-likelihood --dtype float32"; two="conv20x5x5,pool2,conv40x5x5,pool2"
# symbp train $c6 --epochs 60 --eta 0.1 --layers fc100,softmax10                                  # shallow
# symbp train $c6 --epochs 60 --eta 0.1 --layers conv20x5x5,pool2,fc100,softmax10                 # basic_conv
# symbp train $c6 --epochs 60 --eta 0.1 --layers $two,fc100,softmax10                             # dbl_conv
# symbp train $c6 --epochs 60 --eta 0.03 --lmbda-network3 0.1 --activation relu --layers $two,fc100,softmax10  # dbl_conv_relu
# symbp train $c6 --epochs 60 --eta 0.03 --lmbda-network3 0.1 --activation relu --layers $two,fc100,softmax10 --expand  # expanded_data
# symbp train $c6 --epochs 40 --eta 0.03 --activation relu --expand \
#     --layers $two,dropout0.5,fc1000,dropout0.5,fc1000,dropout0.5,softmax10                        # double_fc_dropout
# symbp show --layers $two,fc100,softmax10 --activation relu --cost log-likelihood                 # its equations
# ```
#
# network3's `p_dropout` drops a layer's *inputs*, so its `p_dropout=0.5` on both FC layers and the softmax is a
# `dropout0.5` before each.
#
# **Expanded MNIST.** `sb.data.expand_mnist(train)` returns each training image followed by its four one-pixel
# shifts with zero fill, in the order of the book's `expand_mnist.py` (the original, then down, up, right, left):
# 50,000 images become 250,000, labels repeated five times each, `X` in the input's dtype (float or uint8; rows
# of 784, or (n, 28, 28)). It fills one preallocated array with five slice copies (no Python per image), so the
# result is the only new memory: 784 MB of float32 rows. Unlike the book it does not shuffle (`fit` shuffles
# every epoch). `symbp train --expand` (MNIST only) trains on it; with `--limit N` the first N images are expanded.
#
# **L2 in network3's units.** symbp's λ is network2's: the cost gets λ/2n·Σw² (n the number of training samples,
# all weights, no biases), so a step decays the weights by 1 − ηλ/n. network3 adds 0.5·λ₃·Σw²/num_training_batches
# to the mean cost of a mini-batch of m; with num_training_batches = n/m its step decays them by 1 − ηλ₃m/n. Hence
# **symbp λ = network3 λ × mini-batch size**, independent of n (expanded data included): the book's `lmbda=0.1` at
# mini-batch 10 is `--lmbda 1`. `symbp train --lmbda-network3 0.1` does this conversion (with the run's
# `--batch-size`) and prints the λ it uses; it cannot be combined with `--lmbda`.

# %%
expanded = sb.data.expand_mnist(sb.data.Split(data.train.X[:3], data.train.labels[:3]))
print(expanded.X.shape, expanded.labels)

# %%
!symbp train --layers conv8x5x5,pool2,fc100,dropout0.5,softmax10 --activation relu --cost log-likelihood --dtype float32 --eta 0.03 --epochs 1 --limit 2000 --no-progress

# %% [markdown]
# ## A modern conv net on Fashion-MNIST
#
# Two padded 3×3 convolutions, each followed by a 2×2 max-pool, dropout and a dense layer of 128, trained with
# momentum, the halving schedule and early stopping on the validation set (`symbp train --dataset
# fashion-mnist`; float32, mini-batch 10, seed 1):
#
# ```bash
# symbp train --dataset fashion-mnist --layers conv32x3x3p1,maxpool2,conv64x3x3p1,maxpool2,dropout0.5,fc128,dropout0.5,softmax10 \
#   --activation relu --cost log-likelihood --eta 0.005 --momentum 0.9 --schedule halve --patience 5 \
#   --early-stop 10 --epochs 60 --dtype float32 --eval validation --seed 1 --save fashion --plot fashion.png
# ```
#
# | data | epochs | peak validation | test (best epoch's parameters) | s/epoch |
# |---|---|---|---|---|
# | Fashion-MNIST | 60 | 92.93% (epoch 58) | 92.34% | 13–17 |
# | MNIST (20 epochs, no early stop) | 20 | 99.22% | 99.28% | 14–28 |
#
# (AMD EPYC Zen 5, one thread; the epochs' times vary with what else ran on the machine. Logs, curves and the
# all-convolutional variants with a global average pool, which stay below 90%, are in
# `benchmarks/results/2026-12-07-declared/fashion/`.) The plan of that net says which path each step takes:

# %%
fashion_net = sb.Network([sb.Input((1, 28, 28)), sb.Conv2D(32, (3, 3), sb.relu, padding=1), sb.MaxPool((2, 2)),
                          sb.Conv2D(64, (3, 3), sb.relu, padding=1), sb.MaxPool((2, 2)), sb.Dropout(0.5),
                          sb.Dense(128, sb.relu), sb.Dropout(0.5), sb.Dense(10, sb.softmax)],
                         cost=sb.log_likelihood)
print(fashion_net.compile(dtype="float32", seed=1).plan())
