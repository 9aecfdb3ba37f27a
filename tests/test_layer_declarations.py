"""Declaring a layer by its index expression: what is accepted, what it infers, and every refusal — each a
ValueError naming the problem, raised quickly (no work proportional to the sizes it refuses)."""

import time

import numpy as np
import pytest
import sympy as sp

import symbp as sb
from symbp.layers.declared import Declared
from symbp.layers.index_map import Affine, parse_map

CONV = "z[f,i,j] = sum(W[f,c,p,q]*x[c,2*i+p-1,2*j+q-1] for c in range(3) for p in range(3) for q in range(3)) + b[f]"
POOL = "z[c,i,j] = max(x[c,2*i+p,2*j+q] for p in range(3) for q in range(3))"


def test_the_contract_example_builds_a_network():
    conv_s2 = sb.Layer.parse("conv_s2", CONV, out=(16, 14, 14), params={"W": (16, 3, 3, 3), "b": (16,)},
                             activation=sb.relu)
    pool = sb.Layer.parse("maxpool3s2", POOL, out=(16, 6, 6))
    net = sb.Network([sb.Input((3, 28, 28)), conv_s2, pool, sb.Dense(10, sb.softmax)], cost=sb.log_likelihood)
    assert net.shapes[1:3] == ((16, 14, 14), (16, 6, 6))
    assert [s.name for s in conv_s2.param_specs((3, 28, 28))] == ["W", "b"]
    assert isinstance(conv_s2, Declared) and pool.activation.name == "linear"


def test_extents_are_inferred_where_reads_stay_inside():
    pool = sb.Layer.parse("p", POOL)
    assert pool.out_shape((16, 14, 14)) == (16, 6, 6)
    dense = sb.Layer.parse("d", "z[j] = sum(W[j,k]*x[k] for k in range(784)) + b[j]",
                           params={"W": (30, 784), "b": (30,)})
    assert dense.out_shape((784,)) == (30,)
    assert dense.out_shape((1, 28, 28)) == (30,)  # x read flat: (channel, row, column) order
    conv = sb.Layer.parse("c", CONV, params={"W": (16, 3, 3, 3), "b": (16,)})
    assert conv.out_shape((3, 28, 28)) == (16, 14, 14)


def test_init_fan_in_for_weights_standard_normal_for_biases():
    conv = sb.Layer.parse("c", CONV, params={"W": (16, 3, 3, 3), "b": (16,)})
    specs = {s.name: s for s in conv.param_specs((3, 28, 28))}
    assert specs["W"].weight and not specs["b"].weight
    rng = np.random.default_rng(0)
    assert np.std(specs["W"].init(rng, "default", (16, 3, 30, 30))) == pytest.approx(1 / np.sqrt(27), rel=0.05)
    assert np.std(specs["b"].init(rng, "default", (10000,))) == pytest.approx(1, rel=0.05)
    own = sb.Layer.parse("c", CONV, params={"W": (16, 3, 3, 3), "b": (16,)}, init={"b": 0.0})
    assert not own.param_specs((3, 28, 28))[1].init(rng, "default", (16,)).any()


def test_from_sympy_objects_equals_the_text():
    W, x, b, z = (sp.IndexedBase(n) for n in "Wxbz")
    f, i, k = sp.symbols("f i k", integer=True)
    layer = sb.Layer.declare("d", z[f, i], sp.Sum(W[f, k] * x[i + k], (k, 0, 2)) + b[f],
                             params={"W": (4, 3), "b": (4,)})
    same = sb.Layer.parse("d", "z[f,i] = sum(W[f,k]*x[i+k] for k in range(3)) + b[f]", params={"W": (4, 3), "b": (4,)})
    assert layer.out_shape((7,)) == same.out_shape((7,)) == (4, 5)


def test_index_expressions_are_structured():
    m = parse_map(CONV, ("W", "b"))
    x_read = m.terms[0].reads[1]
    assert x_read.array == "x"
    assert x_read.index[1] == Affine((("i", 2), ("p", 1)), -1)
    assert x_read.index[1].subs("p", Affine.var("y") - Affine.var("i").scale(2)) == Affine((("y", 1),), -1)


REFUSALS = [
    ("z[i] = x[k]", None, "bound by nothing"),
    ("z[i] = x[i/2]", None, "fractional"),
    ("z[i] = x[x[i]]", None, "depends on data"),
    ("z[i] = x[i*i]", None, "multiplies two index variables"),
    ("z[i] = x[1.5]", None, "not an integer"),
    ("z[i] = V[i]", None, "unknown array 'V'"),
    ("z[i] = foo(x[i])", None, "unknown function 'foo'"),
    ("z[i] = x[i] + q", None, "unknown symbol 'q'"),
    ("z[i] = __import__('os').system('true')", None, "calling"),
    ("z[i] = x[i].real", None, "attribute access"),
    ("z[i] = x[i] + i", None, "used as a value"),
    ("z[i] = x[i]/x[i+1]", None, "divides by a read"),
    ("z[i] = tanh(sum(x[i+k] for k in range(2)))", None, "nonlinearly"),
    ("z[i] = sum(sum(x[a+b] for a in range(2)) for b in range(2))", None, "reduction inside a reduction"),
    ("z[i] = max(x[i+p] for p in range(3)) + 1", None, "whole right-hand side"),
    ("z[i] = sum(x[i+p] for p in range(0))", None, "between 1 and"),
    ("z[i] = sum(x[p] for p in range(10**6))", None, "range"),
    ("z[i] = sum(x[i+p] for p in range(3) if p > 0)", None, "condition"),
    ("z[i,i] = x[i]", None, "must differ"),
    ("z[i] == x[i]", None, r"written z\[index, \.\.\.\] = expression"),
    ("y = x", None, r"written z\[index, \.\.\.\] = expression"),
    ("z[i] = W[i] * x[i]", {"W": (3, 3)}, "reads W with 1 indices"),
    ("z[i] = x[i]", {"W": (3,)}, "never reads it"),
    ("z[i] = W[i]*x[i]", {"W": (0,)}, "positive integer"),
    ("z[i] = W[i]*x[i]", {"a": (3,)}, "parameter name 'a'"),
    ("z[i] = x[i]", {"W": (3,), "w": (3,)}, "differ in more than case"),
    ("z[_t0] = sum(W[_t0,k]*x[k] for k in range(4))", {"W": (3, 4)}, "not starting with _"),  # the derivation's own
    ("z[\ufb01,fi] = x[fi]", None, "ASCII"),  # Python folds the ligature into fi: two loops, one variable
    ("z[i] = sum(x[i+_p] for _p in range(2))", None, "not starting with _"),
    ("z[i] = x[65536*(65536*i)]", None, "beyond"),
    ("z[i] = x[i" + "+1" * 990 + "]", None, "nested too deeply"),
    ("z[i] = cols_z[i]*x[i]", {"cols_z": (3,)}, "parameter name 'cols_z'"),
]


@pytest.mark.parametrize("text, params, message", REFUSALS)
def test_malformed_declarations_are_refused_quickly(text, params, message):
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=message) as err:
        sb.Layer.parse("bad", text, params=params)
    assert time.perf_counter() - t0 < 1.0  # not timing a feature: a refusal must not do the work it refuses
    assert str(err.value).startswith("layer 'bad': ")


SHAPE_REFUSALS = [
    ("z[i] = W[i]*x[i]", {"W": (3,)}, (5,), (5,), "reads outside W"),
    ("z[c,i,j] = x[c,i,j]", {}, None, (10,), "read it with 1 index"),
    ("z[i] = b[i]", {"b": (3,)}, None, (4,), None),  # fine: the extent comes from b
    ("z[k] = sum(x[i] for i in range(3))", {}, None, (3,), "cannot infer the extent of the output index 'k'"),
    ("z[i] = x[i+10]", {}, None, (4,), "too small"),
    ("z[c,i,j] = max(x[c,2*i+p-3,2*j+q] for p in range(2) for q in range(2))", {}, (1, 3, 2), (1, 6, 4),
     "wholly outside x"),
    ("z[i] = sum(W[i,k]*x[k] for k in range(65536))", {"W": (65536, 65536)}, None, (65536,), "more than"),
]


@pytest.mark.parametrize("text, params, out, in_shape, message", SHAPE_REFUSALS)
def test_impossible_shapes_are_refused_by_name(text, params, out, in_shape, message):
    t0 = time.perf_counter()
    if message is None:
        assert sb.Layer.parse("s", text, out=out, params=params).out_shape(in_shape) == (3,)
        return
    with pytest.raises(ValueError, match=message):
        layer = sb.Layer.parse("s", text, out=out, params=params)
        sb.Network([sb.Input(in_shape), layer, sb.Dense(2, sb.softmax)], cost=sb.log_likelihood)
    assert time.perf_counter() - t0 < 1.0


def test_a_large_max_with_an_empty_window_is_refused_in_closed_form():
    layer = sb.Layer.parse("m", "z[c,i,j] = max(x[c,i+p,j+q] for p in range(1024) for q in range(1024))",
                           out=(1, 1, 17))
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="wholly outside x"):
        layer.out_shape((1, 4, 4))
    assert time.perf_counter() - t0 < 1.0


def test_the_dense_recogniser_needs_the_builtins_bias():
    from symbp.layers.recognise import as_dense

    for text, params in (("z[j] = sum(W[j,k]*x[k] for k in range(4)) + b[j,j]", {"W": (3, 4), "b": (3, 3)}),
                         ("z[j] = sum(W[j,k]*x[k] for k in range(4)) + W[j,0]", {"W": (3, 4)}),
                         ("z[j] = sum(W[j,k]*x[k] for k in range(4)) + b[j]", {"W": (3, 4), "b": (5,)})):
        layer = sb.Layer.parse("d", text, out=(3,), params=params)
        assert as_dense(layer, layer.geometry((4,))) is None, text


def test_output_layer_refused():
    layer = sb.Layer.parse("d", "z[j] = sum(W[j,k]*x[k] for k in range(4))", params={"W": (2, 4)},
                           activation=sb.sigmoid)
    net = sb.Network([sb.Input(4), layer], cost=sb.quadratic)
    with pytest.raises(ValueError, match="output layer"):
        net.equations()


def test_equations_show_every_rule_with_its_form():
    conv = sb.Layer.parse("conv_s2", CONV, out=(4, 4, 4), params={"W": (4, 3, 3, 3), "b": (4,)}, activation=sb.relu)
    pool = sb.Layer.parse("maxpool3s2", POOL)
    s1 = sb.Layer.parse("s2", "z[f,i,j] = sum(U[f,c]*x[c,2*i,2*j] for c in range(3))", params={"U": (3, 3)})
    net = sb.Network([sb.Input((3, 8, 8)), s1, conv, pool, sb.Dense(2, sb.softmax)], cost=sb.log_likelihood)
    eqs = net.equations()
    text = str(eqs)
    assert "z²[f,i,j] = Σ_{c<3,p<3,q<3} W²[f,c,p,q]·a¹[c,2i+p−1,2j+q−1] + b²[f]" in text
    assert "∂C/∂a¹[c,y,u] = Σ_{f<4,i<4,j<4} δ²[f,i,j]·W²[f,c,y−2i+1,u−2j+1]   where 0 ≤ y−2i+1 ≤ 2" in text
    assert "[gather with divisibility]" not in text.split("s2 input")[0]
    assert "first maximum" in text and "[scatter at the argmax]" in text
    assert "∂C/∂W²[f,c,p,q] = Σ_{i<4,j<4} δ²[f,i,j]·a¹[c,2i+p−1,2j+q−1]   [gather]" in text
    assert "C " not in text.split("Forward")[1].split("BP1")[0].replace("conv", "")  # no channel count C
    assert eqs.latex() and eqs.markdown() and "\\le" in eqs.latex()


def test_a_strided_1x1_input_gradient_has_a_divisibility_guard():
    s1 = sb.Layer.parse("s2", "z[f,i,j] = sum(U[f,c]*x[c,2*i,2*j] for c in range(3))", params={"U": (3, 3)})
    pre = sb.Conv2D(3, (1, 1), sb.tanh)
    text = str(sb.Network([sb.Input((3, 5, 5)), pre, s1, sb.Dense(2, sb.softmax)], cost=sb.log_likelihood)
               .equations())
    assert "∂C/∂a¹[c,y,u] = Σ_{f<3} δ²[f,y/2,u/2]·U²[f,c]   where 2 | y; 2 | u   [gather with divisibility]" in text


def test_model_files_carry_the_text_through_the_parser(tmp_path):
    conv = sb.Layer.parse("conv_s2", CONV, out=(4, 4, 4), params={"W": (4, 3, 3, 3), "b": (4,)}, activation=sb.relu)
    net = sb.Network([sb.Input((3, 8, 8)), conv, sb.Layer.parse("p", POOL), sb.Dense(2, sb.softmax)],
                     cost=sb.log_likelihood)
    model = net.compile(backend="numpy", seed=0)
    model.save(tmp_path / "m")
    X = np.random.default_rng(0).normal(size=(2, 192))
    assert np.array_equal(sb.load(tmp_path / "m").feedforward(X), model.feedforward(X))
    doc = (tmp_path / "m.json").read_text().replace("sum(W[f,c,p,q]", "sum(__import__('os').W[f,c,p,q]")
    (tmp_path / "m.json").write_text(doc)
    with pytest.raises(ValueError, match="not a valid symbp model file"):
        sb.load(tmp_path / "m")


def test_one_encoding_keys_the_cache_saves_and_travels(tmp_path):
    """``Network.config()`` is the declaration's one encoding: the kernel cache keys on it (equal configs, equal
    keys; a changed expression, a new key), model files and sweeps hold it, and a layer with its own init
    functions keys the cache (it compiles warm) but is refused by every file and by the decoder."""
    from symbp.compile.backends.numba.cache import declaration_key
    from symbp.network import declaration_text
    from symbp.train.manifest import network_from_config, portable_config

    def net(act="z/(1+abs(z))", init=None):
        layer = sb.Layer.parse("d", "z[f] = sum(W[f,k]*x[k] for k in range(4)) + b[f]",
                               params={"W": (3, 4), "b": (3,)}, activation=sb.Activation.parse("soft", act),
                               init=init)
        return sb.Network([sb.Input(4), layer, sb.Dense(2, sb.softmax)], cost=sb.log_likelihood)

    plain = net()
    assert declaration_key(plain, "numba", "float64") == declaration_key(net(), "numba", "float64")
    assert declaration_key(plain, "numba", "float64") != declaration_key(net("z/(2+abs(z))"), "numba", "float64")
    assert network_from_config(declaration_text(plain.config())).config() == plain.config()
    own = net(init={"b": 0.0})
    assert own.config()["layers"][1]["init"] == ["b"]
    assert declaration_key(own, "numba", "float64") != declaration_key(plain, "numba", "float64")
    with pytest.raises(ValueError, match="own init functions cannot be saved"):
        portable_config(own)
    model = own.compile(backend="numpy", seed=0)
    assert not model.params[0][1].any()  # the init function ran
    with pytest.raises(ValueError, match="own init functions cannot be saved"):
        model.save(tmp_path / "m")
    with pytest.raises(ValueError, match="declared with its own init functions"):
        network_from_config(own.config())


def test_parameter_order_and_float_digits_are_part_of_the_declaration():
    """The kernels take a declared layer's parameters in their declared order, and a constant's every digit
    changes the code: neither may be lost from the declaration the kernel cache keys on."""
    from symbp.compile.backends.numba.cache import declaration_key

    def net(params, act=None):
        layer = sb.Layer.parse("gh", "z[i] = g[i]*x[i] + h[i]", params=params, activation=act)
        return sb.Network([sb.Input(3), layer, sb.Dense(2, sb.softmax)], cost=sb.log_likelihood)

    gh, hg = net({"g": (3,), "h": (3,)}), net({"h": (3,), "g": (3,)})
    assert declaration_key(gh, "numba", "float64") != declaration_key(hg, "numba", "float64")
    assert gh.layers[1] != hg.layers[1]
    assert gh.layers[1] == net({"g": (3,), "h": (3,)}).layers[1]
    a, b = (sb.Activation("s", c * sb.z) for c in (0.1, 0.1000000000000001))
    assert declaration_key(net({"g": (3,), "h": (3,)}, a), "numba", "float64") != \
        declaration_key(net({"g": (3,), "h": (3,)}, b), "numba", "float64")
