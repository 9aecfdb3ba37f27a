"""Diagnostics of learning (the book's chapter 5): how fast each layer learns, and why it may not.

Takes: a ``Model`` and rows of its training set (X, Y).  Gives:

- ``learning_speed(model, X, Y)``: ‖∂C/∂bˡ‖ per layer with parameters, for the mean cost over the rows (from
  ``model.gradients``): the book's "speed of learning" ‖δˡ‖, δˡ being ∂C/∂bˡ averaged over the rows.
- ``Diagnostics(model, X, Y)`` and ``make_recorder(model, training_data, sample=1000, seed=0)``: an object whose
  ``record(epoch)`` returns one JSON-able dict for the model's current parameters, computed on a fixed sample:

  ``{"epoch", "rows", "seconds", "layers", "names", "speed", "grad_w_norm", "saturation", "w_mean",
  "w_std"}``: ``layers`` are the (network-numbered) layers with parameters, ``names`` their ``describe()``; the
  other per-layer lists follow that order.  ``speed`` is ‖∂C/∂bˡ‖, ``grad_w_norm`` ‖∂C/∂wˡ‖ (Frobenius), ``w_mean``
  and ``w_std`` the mean and standard deviation of the entries of wˡ, ``seconds`` what the record took; None where
  a layer kind has no ``W`` or ``b``.  (The cost is not repeated here: ``fit`` monitors it.)
- ``saturation``: the fraction of the layer's units, over the sample's rows, whose |σ′(zˡ)| is below 1%
  (``threshold``) of the maximum of |σ′| over real z (|σ′| = σ′ for the usual monotone σ).  A unit is a neuron of a
  dense layer and an entry (map, row, column) of a convolution's feature maps.  σ′ is the derivative the kernels use
  (``symbp.derive.activation_derivative``, in ``a`` where possible, so it stays finite where σ overflows); its
  maximum is found once per activation on a dense grid of z (to ±10⁸).  Where σ′ is constant and nonzero
  (``linear``) no unit is saturated (0.0).  For ReLU (σ′ = 1 for z > 0, else 0) the saturated units are those with
  z ≤ 0: the inactive ("dead for this input") ones.  For a normalised (softmax) output the Jacobian is not
  diagonal; its diagonal ∂aⱼ/∂zⱼ = aⱼ(1 − aⱼ) (maximum 1/4) stands for σ′ — such a unit is saturated when aⱼ is near
  0 or 1, which, with the log-likelihood cost (δ = a − y), does not slow learning.  Where |σ′| is unbounded or
  nowhere positive (a step function) the fraction is ``None``, as for a layer with parameters but no activation.

  zˡ comes from the layers' forward maps in NumPy, float64, dropout off (as ``model.gradients``): ``Layer.reference``
  of the layer with its activation replaced by ``linear``, or for ``Dense`` and ``Conv2D`` the same sums written
  here as one GEMM and one ``tensordot`` (5x faster than the conv reference's ``einsum``; the tests check they
  agree).  Layers without parameters (pooling, dropout) are passed through and not reported.

- Plots (matplotlib, Agg; the path as ``symbp.train.plot.plot_path`` reads it): ``plot_learning_speed``,
  ``plot_saturation``, ``plot_weight_tiles``, ``plot_diagnostics`` (all four quantities); each returns the path
  written.  They take a list of records, a ``History`` with a ``diagnostics`` list, or a dict holding one.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import numpy as np

#: σ′ below this fraction of its maximum counts as saturated.
THRESHOLD = 0.01



@functools.cache
def _grid() -> tuple[np.ndarray, np.ndarray]:
    """The z at which σ′ is sampled for its maximum (dense near 0, out to ±10⁸), and where |z| ≤ 100.  Made on
    first use: sorting its 404,001 points took 10 ms of ``import symbp``."""
    grid = np.unique(np.concatenate([np.linspace(-100.0, 100.0, 400_001), np.geomspace(100.0, 1e8, 2000),
                                     -np.geomspace(100.0, 1e8, 2000)]))
    return grid, np.abs(grid) <= 100.0

#: the per-layer quantities of a record, in the order ``plot_diagnostics`` draws them.
QUANTITIES = ("speed", "grad_w_norm", "saturation", "w_std")
_LABELS = {"speed": "speed of learning ‖∂C/∂bˡ‖", "grad_w_norm": "‖∂C/∂wˡ‖",
           "saturation": "saturated units (σ′ < 1% of max)", "w_std": "weights: mean ± std", "w_mean": "mean of wˡ"}


def _param_layers(model) -> list[tuple[int, object, list[str]]]:
    """(layer index, layer, [parameter names]) of every layer with parameters, in order (as ``model.params``)."""
    net = model.network
    out = []
    for l, layer in enumerate(net.layers[1:], start=1):
        specs = layer.param_specs(net.shapes[l - 1])
        if specs:
            out.append((l, layer, [s.name for s in specs]))
    return out


def _pick(pair, names: list[str], name: str):
    """The array called ``name`` ("W", "b") of one layer's parameter tuple, or None."""
    return pair[names.index(name)] if name in names else None


def _norm(arr) -> float | None:
    return None if arr is None else float(np.linalg.norm(np.asarray(arr, np.float64).ravel()))


def learning_speed(model, X, Y) -> list[float | None]:
    """‖∂C/∂bˡ‖ (Euclidean) per layer with parameters, for the mean cost over the rows of (X, Y): the book's speed
    of learning.  None for a layer without biases."""
    grads = model.gradients(X, Y)
    return [_norm(_pick(g, names, "b")) for g, (_, _, names) in zip(grads, _param_layers(model))]


# ------------------------------------------------------------------------------------------------ σ′ and its maximum


class _Unit:
    """σ, σ′ and σ′'s maximum for one activation, as NumPy functions (built once)."""

    def __init__(self, act):

        from symbp.symbols import a, numpy_function, z

        self.vector = act.vector
        if act.vector:  # the normalised form: diagonal of the Jacobian aⱼ(1 − aⱼ), largest at aⱼ = 1/2
            self.sigma, self.signed = None, False
            self.prime = lambda zv, av: av * (1.0 - av)
            self.maximum = 0.25
            return
        from symbp.derive import activation_derivative

        self.sigma = numpy_function(z, act.expr)
        self.prime = numpy_function((z, a), activation_derivative(act).expr)
        grid, grid_inner = _grid()
        with np.errstate(all="ignore"):
            values = np.broadcast_to(np.asarray(self.prime(grid, self.activate(grid)), np.float64), grid.shape)
        self.signed = bool(np.any(values < 0))  # if σ′ ≥ 0 everywhere (monotone σ), |σ′| = σ′: a pass saved
        values = np.abs(values)
        finite = np.isfinite(values)
        inner = values[finite & grid_inner]
        top, top_inner = (float(v.max()) if v.size else math.nan for v in (values[finite], inner))
        # unbounded (its largest value far out on the grid) or nowhere positive: no maximum to be 1% of
        self.maximum = top if top > 0 and top <= top_inner * (1 + 1e-9) else None

    def activate(self, zv: np.ndarray) -> np.ndarray:
        if self.vector:
            e = np.exp(zv - zv.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        with np.errstate(all="ignore"):
            return np.broadcast_to(np.asarray(self.sigma(zv), np.float64), zv.shape)

    def derivative(self, zv: np.ndarray, av: np.ndarray) -> np.ndarray:
        """|σ′| at z (and a = σ(z)): the size of the factor BP2 multiplies δ by."""
        with np.errstate(all="ignore"):
            d = np.broadcast_to(np.asarray(self.prime(zv, av), np.float64), zv.shape)
        return np.abs(d) if self.signed else d

    def saturated(self, zv: np.ndarray, av: np.ndarray, threshold: float) -> int | None:
        """How many entries have |σ′| < threshold · max |σ′| (None where there is no maximum)."""
        if self.maximum is None:
            return None
        return int(np.count_nonzero(self.derivative(zv, av) < threshold * self.maximum))

    def saturation(self, zv: np.ndarray, av: np.ndarray, threshold: float) -> float | None:
        """The fraction of saturated entries."""
        count = self.saturated(zv, av, threshold)
        return None if count is None or zv.size == 0 else count / zv.size


_UNITS: dict = {}


def _unit(act) -> _Unit:
    """The ``_Unit`` of an activation: by identity first (no sympy printing per call), then by its expression."""
    hit = _UNITS.get(id(act))
    if hit is not None and hit[0] is act:
        return hit[1]
    key = (act.name, act.vector, str(act.expr))
    if key not in _UNITS:
        _UNITS[key] = _Unit(act)
    _UNITS[id(act)] = (act, _UNITS[key])  # keeps act alive, so its id is not reused
    return _UNITS[key]


def _conv_z(layer, theta, x) -> np.ndarray:
    """z of a plain ``Conv2D`` (stride 1, no padding, dilation or groups: its ``reference`` with σ = linear) as one
    BLAS contraction: 5x faster than its einsum."""
    from numpy.lib.stride_tricks import sliding_window_view

    W, b = theta
    win = sliding_window_view(x, layer.kernel, axis=(2, 3))  # (n, C, Ho, Wo, kh, kw)
    zv = np.tensordot(win, W, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)  # (n, maps, Ho, Wo)
    out = np.empty(zv.shape)
    np.add(zv, b[None, :, None, None], out=out)
    return out


def _dense_z(layer, theta, x) -> np.ndarray:
    """z of a ``Dense`` (its ``reference`` with σ = linear, without building that layer)."""
    W, b = theta
    return x.reshape(x.shape[0], -1) @ W.T + b


def _reference_z(layer, theta, x) -> np.ndarray:
    """z of a layer with an activation: its own NumPy forward map with the activation replaced by ``linear``."""
    from symbp.activations import linear

    return dataclasses.replace(layer, activation=linear).reference(theta, x)


_LINEAR_MAPS: dict = {}


def _linear_map(layer):
    """How z is computed for this layer kind: a faster equivalent of ``_reference_z`` where one is registered."""
    if not _LINEAR_MAPS:
        from symbp.layers import Conv2D, Dense

        _LINEAR_MAPS.update({Dense: _dense_z, Conv2D: _conv_z})
    if not getattr(layer, "plain", True):  # a strided, padded, dilated or grouped convolution: its own map
        return _reference_z
    return _LINEAR_MAPS.get(type(layer), _reference_z)


def weighted_inputs(model, X, params=None) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Per layer with parameters, (zˡ, aˡ) on the rows of X (float64, shapes (n, *layer shape)), from the layers' own
    NumPy forward maps with ``params`` (default: the model's); None for a layer without an activation."""
    net = model.network
    params = list(model.params if params is None else params)
    a_prev = np.asarray(X, np.float64).reshape(np.shape(X)[0], *net.shapes[0])
    out, k = [], 0
    for l, layer in enumerate(net.layers[1:], start=1):
        specs = layer.param_specs(net.shapes[l - 1])
        theta = tuple(np.asarray(p, np.float64) for p in params[k]) if specs else ()
        x = a_prev.reshape(a_prev.shape[0], *net.shapes[l - 1])
        if layer.activation is None:
            a_prev = layer.reference(theta, x)
            if specs:
                out.append(None)
        else:
            zv = _linear_map(layer)(layer, theta, x)
            zv = np.asarray(zv, np.float64).reshape(zv.shape[0], *net.shapes[l])
            a_prev = _unit(layer.activation).activate(zv)
            if specs:
                out.append((zv, a_prev))
        k += bool(specs)
    return out


#: rows per pass of ``saturation``'s forward: the feature maps of 1,000 MNIST images (90 MB per conv layer in
#: float64) fall out of the caches; 4 passes of 250 rows take about half the time of one of 1,000.
CHUNK = 250


def saturation(model, X, params=None, threshold: float = THRESHOLD, chunk: int = CHUNK) -> list[float | None]:
    """Per layer with parameters, the fraction of its units (over the rows of X) with |σ′(z)| < threshold · max |σ′|
    (see the module docstring); the rows are taken ``chunk`` at a time."""
    net = model.network
    params = model.params if params is None else list(params)
    X = np.asarray(X)
    layers = _param_layers(model)
    counts, sizes = [0] * len(layers), [0] * len(layers)
    for start in range(0, X.shape[0], chunk):
        for i, ((l, _, _), za) in enumerate(zip(layers, weighted_inputs(model, X[start:start + chunk], params))):
            count = None if za is None else _unit(net.layers[l].activation).saturated(za[0], za[1], threshold)
            if count is None or counts[i] is None:
                counts[i] = None
            else:
                counts[i] += count
                sizes[i] += za[0].size
    return [None if c is None or not n else c / n for c, n in zip(counts, sizes)]


# ------------------------------------------------------------------------------------------------ the recorder


class Diagnostics:
    """Diagnostics of one model on fixed rows (X, Y): ``record(epoch)`` → one JSON-able dict (see the module)."""

    def __init__(self, model, X, Y, threshold: float = THRESHOLD):
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must lie in (0, 1), got {threshold!r}")
        self.model = model
        self.threshold = float(threshold)
        X = model._flat_images(X) if hasattr(model, "_flat_images") else X
        self.X = np.ascontiguousarray(X, dtype=model.dtype)
        self.Y = np.asarray(Y)
        if self.X.ndim != 2 or self.X.shape[0] == 0 or self.Y.shape[0] != self.X.shape[0]:
            raise ValueError(f"Diagnostics needs matching non-empty rows X (n, {model.sizes[0]}) and Y, "
                             f"got {np.shape(X)} and {self.Y.shape}")
        self._layers = _param_layers(model)
        for _, layer, _names in self._layers:  # derive σ′ and its maximum now, not inside the first record
            if layer.activation is not None:
                _unit(layer.activation)

    def compute(self, params=None) -> dict:
        """The per-layer quantities for the model's parameters (or ``params``, then set on the model meanwhile)."""
        model = self.model
        if params is not None:
            saved = model.params
            model.set_params(params)
            try:
                return self.compute()
            finally:
                model.set_params(saved)
        current = model.params
        grads = model.gradients(self.X, self.Y)
        sat = saturation(model, self.X, current, self.threshold)
        out = {"rows": int(self.X.shape[0]),
               "layers": [l for l, _, _ in self._layers], "names": [layer.describe() for _, layer, _ in self._layers],
               "speed": [], "grad_w_norm": [], "saturation": sat, "w_mean": [], "w_std": []}
        for g, p, (_, _, names) in zip(grads, current, self._layers):
            out["speed"].append(_norm(_pick(g, names, "b")))
            out["grad_w_norm"].append(_norm(_pick(g, names, "W")))
            w = _pick(p, names, "W")
            w = None if w is None else np.asarray(w, np.float64)
            out["w_mean"].append(None if w is None else float(w.mean()))
            out["w_std"].append(None if w is None else float(w.std()))
        return out

    def record(self, epoch: int) -> dict:
        """``compute()`` for the model's current parameters, with ``epoch`` and the seconds it took."""
        t0 = time.perf_counter()
        out = {"epoch": int(epoch), **self.compute()}
        out["seconds"] = time.perf_counter() - t0
        return out


def sample_rows(n: int, sample: int | None = 1000, seed: int | None = 0) -> np.ndarray:
    """The fixed rows diagnostics use: ``sample`` rows of ``n`` (all if ``sample`` is None or ≥ n), drawn without
    replacement with ``seed`` (sorted), or the first ``sample`` rows when ``seed`` is None (the book's choice)."""
    if sample is not None and (isinstance(sample, bool) or int(sample) != sample or sample < 1):
        raise ValueError(f"sample must be a positive integer or None, got {sample!r}")
    if sample is None or sample >= n:
        return np.arange(n)
    if seed is None:
        return np.arange(int(sample))
    return np.sort(np.random.default_rng(seed).choice(n, int(sample), replace=False))


def make_recorder(model, training_data, sample: int | None = 1000, seed: int | None = 0,
                  threshold: float = THRESHOLD, input_scale=None) -> Diagnostics:
    """A ``Diagnostics`` on a fixed sample of ``training_data`` = (X, Y) (see ``sample_rows``); X may be rows or
    images (uint8 codes with ``input_scale``), Y one-hot rows or labels.  The sample is copied once (1,000 rows
    of MNIST: 6 MB in float64)."""
    try:
        X, Y = training_data
    except (TypeError, ValueError):
        raise ValueError("training_data must be an (X, Y) pair") from None
    rows = sample_rows(np.shape(X)[0], sample, seed)
    X = np.asarray(X)[rows]
    if input_scale is not None:  # the inputs themselves, as the epoch kernel computes them
        X = model._floats(model._X(X, input_scale), input_scale)
    return Diagnostics(model, X, np.asarray(Y)[rows], threshold)


# ------------------------------------------------------------------------------------------------ plots


def _records(obj) -> list[dict]:
    if isinstance(obj, dict):
        obj = obj.get("diagnostics", obj)
    if hasattr(obj, "diagnostics"):
        obj = obj.diagnostics
    records = list(obj or ())
    if not records or not all(isinstance(r, dict) and "speed" in r for r in records):
        raise ValueError("expected diagnostics records (a list of Diagnostics.record dicts, or a History with them)")
    return records


def _figure(path, ncols=1, nrows=1, size=(6.5, 4.2)):
    from symbp.train.plot import open_figure

    return open_figure(path, nrows, ncols, size)


def _save(plt, fig, path, title: str):
    from symbp.train.plot import save_figure

    return save_figure(plt, fig, path, title)


def _series(records, key):
    ep = [r["epoch"] for r in records]
    first = records[0]
    for i, (l, name) in enumerate(zip(first["layers"], first["names"])):
        vals = [np.nan if r[key][i] is None else r[key][i] for r in records]
        yield i, f"layer {l} ({name})", ep, np.asarray(vals, float)


def _draw(ax, records, key, log: bool):
    drawn = False
    for i, label, ep, vals in _series(records, key):
        if key == "w_std":
            means = np.asarray([np.nan if r["w_mean"][i] is None else r["w_mean"][i] for r in records], float)
            line, = ax.plot(ep, means, lw=1.4, label=label)
            ax.fill_between(ep, means - vals, means + vals, color=line.get_color(), alpha=0.15)
            drawn = True
            continue
        if log:
            vals = np.where(vals > 0, vals, np.nan)
        if np.isfinite(vals).any():
            ax.plot(ep, vals, lw=1.4, label=label)
            drawn = True
    if log and drawn:
        ax.set_yscale("log")
    if key == "saturation":
        ax.set_ylim(-0.02, 1.02)
    ax.set(xlabel="epoch", ylabel=_LABELS[key])
    ax.grid(alpha=0.3, which="both" if log else "major")
    if drawn:
        ax.legend(fontsize=8)


def plot_learning_speed(records, path, title: str = "Speed of learning") -> object:
    """‖∂C/∂bˡ‖ per layer over the epochs, log y axis, to ``path`` (PNG if no suffix); returns the path."""
    records = _records(records)
    path, plt, fig, (ax,) = _figure(path)
    _draw(ax, records, "speed", log=True)
    return _save(plt, fig, path, title)


def plot_saturation(records, path, title: str = "Saturated units") -> object:
    """The fraction of saturated units per layer over the epochs, to ``path``; returns the path."""
    records = _records(records)
    path, plt, fig, (ax,) = _figure(path)
    _draw(ax, records, "saturation", log=False)
    return _save(plt, fig, path, title)


def plot_diagnostics(records, path, title: str = "") -> object:
    """Speed of learning, ‖∂C/∂wˡ‖ (log scales), saturation and the weights' mean ± std per layer, in one figure."""
    records = _records(records)
    path, plt, fig, axes = _figure(path, 2, 2, size=(11, 7.5))
    for ax, key in zip(axes, QUANTITIES):
        _draw(ax, records, key, log=key in ("speed", "grad_w_norm"))
    return _save(plt, fig, path, title)


def _tiles(model) -> tuple[np.ndarray, str]:
    """The first parameterised layer's weights as images (k, h, w), and what they are."""
    net = model.network
    l, layer, names = _param_layers(model)[0]
    W = _pick(model.params[0], names, "W")
    if W is None:
        raise ValueError(f"layer {l} ({layer.describe()}) has no weights W to draw")
    W = np.asarray(W, np.float64)
    in_shape = net.shapes[l - 1]
    if W.ndim == 4:  # a convolution (maps, C, kh, kw): one tile per map and channel
        return W.reshape(-1, *W.shape[2:]), f"layer {l} ({layer.describe()}): kernels"
    if W.ndim == 2:
        if len(in_shape) == 3:  # dense on images: the first channel's plane
            c, h, w = in_shape
            return W.reshape(W.shape[0], c, h, w)[:, 0], f"layer {l} ({layer.describe()}): weights of each unit"
        side = math.isqrt(W.shape[1])
        if side * side == W.shape[1]:
            return W.reshape(W.shape[0], side, side), f"layer {l} ({layer.describe()}): weights of each unit"
    raise ValueError(f"layer {l} ({layer.describe()}): cannot draw weights of shape {W.shape} over inputs "
                     f"{in_shape} as square tiles")


def plot_weight_tiles(model, path, max_tiles: int = 100, title: str = "") -> object:
    """The first layer's weights as tiles (28×28 per unit for a dense layer on MNIST, kh×kw per map and channel for
    a convolution), each on its own symmetric colour scale (red > 0 > blue); at most ``max_tiles``."""
    tiles, what = _tiles(model)
    tiles = tiles[:max_tiles]
    k = tiles.shape[0]
    cols = math.ceil(math.sqrt(k))
    rows = math.ceil(k / cols)
    path, plt, fig, axes = _figure(path, cols, rows, size=(1.2 * cols + 0.4, 1.2 * rows + 0.6))
    for i, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= k:
            ax.set_axis_off()
            continue
        lim = float(np.abs(tiles[i]).max()) or 1.0
        ax.imshow(tiles[i], cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    return _save(plt, fig, path, title or what)
