# %% [markdown]
# # Layers declared by their index expressions
#
# A layer is its forward map. Write it in index notation, and symbp derives, prints, checks and compiles the
# rest. This guide needs no data.

# %%
import numpy as np

import symbp as sb
from symbp.derive import check

conv_s2 = sb.Layer.parse("conv_s2",
    "z[f,i,j] = sum(W[f,c,p,q]*x[c,2*i+p-1,2*j+q-1] for c in range(3) for p in range(3) for q in range(3)) + b[f]",
    out=(16, 14, 14), params={"W": (16, 3, 3, 3), "b": (16,)}, activation=sb.relu)   # stride 2, padding 1
pool = sb.Layer.parse("maxpool3s2", "z[c,i,j] = max(x[c,2*i+p,2*j+q] for p in range(3) for q in range(3))")
s1 = sb.Layer.parse("conv1x1s2", "z[f,i,j] = sum(U[f,c]*x[c,2*i,2*j] for c in range(16)) + v[f]",
                    params={"U": (8, 16), "v": (8,)}, activation=sb.tanh)
net = sb.Network([sb.Input((3, 28, 28)), conv_s2, pool, s1, sb.Dense(10, sb.softmax)], cost=sb.log_likelihood)
print(net.equations())

# %%
print(net.compile(seed=0).plan())      # which path each step takes, and its FLOP per sample

# %% [markdown]
# ## The language
#
# `z[outputs] = ` a sum of `sum(... for v in range(n) ...)` reductions and read expressions, or one
# `max(... for v in range(n) ...)`. Reads are `x[...]` (the layer's input, read with as many indices as it has
# axes, or with one: flattened in (channel, row, column) order) and the parameters; indices are integer affine
# expressions (`2*i+p-1`: strides, paddings, dilations); bodies use the parser's functions, products of reads
# (x may be read twice: `z[k] = sum(x[i]*W[k,i,j]*x[j] ...)`) and division by constants. Reads of x outside it
# are zero, except inside `max`, where they are left out (PyTorch's max-pool padding). `out` may be omitted when
# every read stays inside x (it is then the largest such extent). Parameters multiplying x are the weights
# (variance 1/fan-in, penalised by regularisers), the others biases (standard normal); `init={"b": 0.0}`
# overrides. `sb.Layer.declare(name, z[f,i], sympy_Sum_expression, ...)` takes the map as sympy objects.
# Every malformed map is a `ValueError` naming the problem, found in milliseconds: an unbound or fractional
# index, an index read from data, a parameter whose shape disagrees with its reads, reads outside a parameter,
# a max window wholly in the padding, a reduction or buffer too large, an unknown function, code in the text.

# %%
for text in ["z[f,i] = sum(W[f,c]*x[c,i/2] for c in range(3))",
             "z[i] = sum(W[i,k]*x[k] for k in range(n))",
             "z[i] = x[i] + __import__('os').getpid()"]:
    try:
        sb.Layer.parse("bad", text, params={"W": (4, 3)} if "W" in text else None)
    except ValueError as e:
        print(e)

# %% [markdown]
# ## How the rules are derived and checked
#
# - **Derivation** (`symbp/derive/adjoint.py`): ∂C/∂A[t] = Σ over the positions (o, r) with e(o, r) = t of
#   δ[o]·∂body/∂A, one rule per read. The equations e_d(o, r) = t_d are solved over the integers axis by axis: a
#   variable with coefficient ±1 is eliminated and its range becomes a guard (then a loop bound); a larger
#   coefficient gives an exact quotient and a divisibility guard (the 1x1 stride-2 convolution above, whose
#   gradient TVM's `te.gradient` gets wrong, apache/tvm#8087); an equation left with no variable is a guard on t
#   (`z[i] = x[i,i]`, where Halide's autodiff is wrong, halide/Halide#7385). Every integer solution is enumerated
#   once, so the gather is exact. `max` routes δ to the window's first maximum in generator order.
# - **Checks**: the sum-over-paths check unrolls declared layers unit by unit and evaluates the derived rules
#   index by index (a dropped divisibility guard is caught); the tests compare strided, padded, dilated and
#   depthwise convolutions, average and overlapping max pools (with and without padding), a 1x1 stride-2
#   convolution and a bilinear form with PyTorch autograd (where installed) and finite differences on both
#   backends, and a hypothesis property draws random maps.

# %%
small = sb.Network([sb.Input((1, 4, 4)),
                    sb.Layer.parse("c", "z[f,i,j] = sum(W[f,c,p,q]*x[c,2*i+p,2*j+q] for c in range(1) "
                                        "for p in range(2) for q in range(2)) + b[f]",
                                   params={"W": (2, 1, 2, 2), "b": (2,)}, activation=sb.tanh),
                    sb.Layer.parse("s", "z[f,i,j] = sum(U[f,c]*x[c,2*i,2*j] for c in range(2))",
                                   params={"U": (2, 2)}, activation=sb.sigmoid),
                    sb.Dense(3, sb.softmax)], cost=sb.log_likelihood)
print(str(check.compare(small, symbolic=False)).splitlines()[0])

# %% [markdown]
# ## Kernels
#
# Each term is an `IndexReduce` step with structured affine indices, each rule an `IndexGather` (or
# `IndexScatterMax`). numba runs the derived gathers as loops with constant extents, the guards as loop bounds
# (floor and ceiling divisions for strides); the NumPy backend runs each rule as a scatter over the forward
# positions (`np.bincount`, in `symbp/compile/backends/numpy/runtime.py`), so the two backends compute every gradient by two
# routes. **Passes** over the kernel program (`symbp/compile/passes.py`) replace the sums whose shape they
# recognise, whatever layer they came from: a product Σ_k P[j,k]·x[k] and its two adjoints become BLAS `gemm`s
# (the SGD step fused in), a flat bias a map and a column sum, a correlation
# Σ P[f,c,p,q]·x[c, s·i+d·p+o, s′·j+d′·q+o′] with any stride, dilation and padding im2col + gemm (its bias added
# after each product), a max over non-overlapping windows a window max with its argmax, and a map's bias
# adjoint per-map sums. The built-in `Conv2D`, `MaxPool` and `AvgPool` are declarations, so the book's `dbl_conv`
# declared by hand gives the same kernel programs and generated source as the built-in net. Grouped convolutions
# (z[k,f,i,j] = Σ W[mg·k+f,c,p,q]·x[cg·k+c,…]) and depthwise ones (Σ_{p,q} W[f,0,p,q]·x[f,…]), as `sb.Conv2D`
# declares them, are correlations too: im2col once, one product per group. The rest (overlapping or padded
# window maxima, means, other maps) runs as generated loops with constant extents (a read
# whose index provably stays inside its array is not tested); `model.plan()` and `symbp show --plan` list each
# step's path.
#
# The two backends agree on a small declared net trained for a few epochs on random data:

# %%
rng = np.random.default_rng(0)
X, labels = rng.normal(size=(300, 16)), rng.integers(0, 3, size=300)
models = {b: small.compile(backend=b, seed=0) for b in ("numba", "numpy")}
for m in models.values():
    m.fit((X, labels), epochs=3, batch_size=10, eta=0.1, seed=0)
print("largest difference between the backends' parameters:",
      max(float(np.abs(p - q).max()) for layer_n, layer_p in zip(models["numba"].params, models["numpy"].params)
          for p, q in zip(layer_n, layer_p)))

# %% [markdown]
# ## Layer kinds, and the command line
#
# A layer kind is a plug-in: one module per stage, registered on the layer class, and no stage tests a layer's
# type:
#
# | stage | what the kind provides | Dense | Dropout |
# |---|---|---|---|
# | declare (`symbp/layers/`) | shape inference, parameters and their init, config (the declaration that model files, sweeps and the kernel cache key share), a NumPy reference forward | `dense.py` | `dropout.py` |
# | derive (`symbp/derive/layers/`) | the backward rule from its forward map, its rendering in `equations()` | `dense.py` (BP1–BP4) | `dropout.py` (∂a/∂x = m/(1 − p) by `sympy.diff`) |
# | compile (`symbp/compile/layers/`) | its lowering to kernel-program steps | `dense.py` | `dropout.py` |
#
# A new layer kind costs one declaration. Dropout (a random mask) and softmax (it normalises over the layer)
# are not index expressions and stay kinds of their own. Model files keep a declared map as text and read it back
# through the whitelist parser; on the command line, `--declare layers.json` names declarations that `--layers`
# uses as `@NAME`:

# %%
import json

with open("layers.json", "w") as f:
    json.dump({"conv_s2": {"map": "z[f,i,j] = sum(W[f,c,p,q]*x[c,2*i+p-1,2*j+q-1] for c in range(1) "
                                  "for p in range(3) for q in range(3)) + b[f]",
                           "out": [16, 14, 14], "params": {"W": [16, 1, 3, 3], "b": [16]}, "activation": "relu"}}, f)
!symbp show --declare layers.json --layers @conv_s2,maxpool3s2,softmax10 --cost log-likelihood --plan
