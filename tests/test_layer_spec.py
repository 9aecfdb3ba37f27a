"""The compact layer syntax of ``--layers`` (symbp.layer_spec)."""

import pytest

import symbp as sb
from symbp.layer_spec import parse_items, parse_layers

MNIST = (1, 28, 28)


def layers(text, act=sb.sigmoid, out=None, **kw):
    return parse_layers(text, MNIST, act, out, **kw)


def test_plain_sizes_are_the_shorthand_network():
    got = layers("784,30,10")
    assert got == list(sb.Network([784, 30, 10], activation=sb.sigmoid, cost=sb.quadratic).layers)
    got = layers("784,100,10", sb.relu, sb.sigmoid)
    assert got == [sb.Input(784), sb.Dense(100, sb.relu), sb.Dense(10, sb.sigmoid)]
    assert layers("4,3,2", check_input=False) == [sb.Input(4), sb.Dense(3, sb.sigmoid), sb.Dense(2, sb.sigmoid)]


def test_the_books_chapter_6_nets():
    relu = sb.relu
    two = [sb.Input(MNIST), sb.Conv2D(20, (5, 5), relu), sb.MaxPool((2, 2)), sb.Conv2D(40, (5, 5), relu),
           sb.MaxPool((2, 2))]
    assert layers("fc100,softmax10") == [sb.Input(784), sb.Dense(100, sb.sigmoid), sb.Dense(10, sb.softmax)]
    assert layers("conv20x5x5,pool2,conv40x5x5,pool2,fc100,softmax10", relu) == \
        two + [sb.Dense(100, relu), sb.Dense(10, sb.softmax)]
    dropout = layers("conv20x5x5,pool2,conv40x5x5,pool2,dropout0.5,fc1000,dropout0.5,fc1000,dropout0.5,softmax10",
                     relu)
    assert dropout == two + [sb.Dropout(0.5), sb.Dense(1000, relu), sb.Dropout(0.5), sb.Dense(1000, relu),
                             sb.Dropout(0.5), sb.Dense(10, sb.softmax)]
    net = sb.Network(dropout, cost=sb.log_likelihood)
    assert net.shapes[:5] == (MNIST, (20, 24, 24), (20, 12, 12), (40, 8, 8), (40, 4, 4))
    assert net.sizes[-1] == 10


def test_items():
    assert layers("conv3x4x2,pool3x2,reluN".replace("N", "7")) == [
        sb.Input(MNIST), sb.Conv2D(3, (4, 2), sb.sigmoid), sb.MaxPool((3, 2)), sb.Dense(7, sb.relu)]
    assert layers("pool2,tanh5,linear4,softplus3,sigmoid10")[1:] == [
        sb.MaxPool((2, 2)), sb.Dense(5, sb.tanh), sb.Dense(4, sb.linear), sb.Dense(3, sb.softplus),
        sb.Dense(10, sb.sigmoid)]
    assert layers("dropout.25,fc10")[1] == sb.Dropout(0.25)
    assert layers("dropout0,fc10")[1] == sb.Dropout(0.0)
    assert layers(" CONV2x3x3 , Pool2 ,FC10 ") == layers("conv2x3x3,pool2,fc10")
    # plain numbers after the input are fcN; --output-activation takes a last N or fcN, never a named one
    assert layers("conv2x3x3,30,10", sb.relu, sb.sigmoid)[-2:] == [sb.Dense(30, sb.relu), sb.Dense(10, sb.sigmoid)]
    assert layers("fc30,fc10", sb.relu, sb.softmax)[-1] == sb.Dense(10, sb.softmax)
    assert layers("fc30,relu10", sb.sigmoid, sb.softmax)[-1] == sb.Dense(10, sb.relu)


def test_the_input_is_implied_or_must_be_the_datas():
    assert layers("conv2x3x3,fc10")[0] == sb.Input(MNIST)
    assert layers("fc10")[0] == sb.Input(784)
    for written in ("784", "1x28x28"):  # read as the implied input
        assert layers(f"{written},conv2x3x3,fc10") == layers("conv2x3x3,fc10")
        assert layers(f"{written},fc10") == layers("fc10")
    with pytest.raises(ValueError, match=r"^10 \(item 1\): MNIST's samples are 1x28x28 \(784 inputs\)"):
        layers("10,3", data_name="MNIST")
    with pytest.raises(ValueError, match="2x28x28"):
        layers("2x28x28,fc10")
    # without check_input (symbp show) another input stands as written
    assert layers("1x6x6,conv2x3x3,pool2,fc3", check_input=False)[:2] == [sb.Input((1, 6, 6)),
                                                                          sb.Conv2D(2, (3, 3), sb.sigmoid)]
    assert layers("784,conv2x3x3,fc10", check_input=False) == layers("conv2x3x3,fc10")


@pytest.mark.parametrize("text, message", [
    ("", "expected comma-separated items"),
    ("784,x,10", r"'x' \(item 2\): unknown item"),
    ("fc30,,10", "item 2 is empty"),
    ("784,0,10", r"0 \(item 2\): sizes must be positive"),
    ("conv20x5,fc10", r"conv20x5 \(item 1\): expected convMAPSxKHxKW"),
    ("conv0x5x5,fc10", r"conv0x5x5 \(item 1\): sizes must be positive"),
    ("pool,fc10", r"pool \(item 1\): expected poolP or poolPHxPW"),
    ("pool2x2x2,fc10", "expected poolP"),
    ("fc,fc10", "expected fcN"),
    ("fc-3,fc10", "expected fcN"),
    ("dropout1,fc10", r"dropout1 \(item 1\): the dropout probability must be in \[0, 1\)"),
    ("dropoutnan,fc10", "expected dropoutP"),
    ("dropout1e-1,fc10", "expected dropoutP"),
    ("dropout,fc10", "expected dropoutP"),
    ("relu,fc10", r"relu \(item 1\): expected reluN"),
    ("softmax,fc10", "expected softmaxN"),
    ("784,1x28x28,10", r"1x28x28 \(item 2\): an image shape CxHxW can only be the first item"),
    ("fc1" + "0" * 20, "too large"),
    ("784", "expected at least two sizes"),
    ("__import__('os')", "unknown item"),
    ("fc\u0663", "expected fcN"),  # an Arabic-Indic 3: ASCII digits only
])
def test_syntax_errors_name_the_item(text, message):
    with pytest.raises(ValueError, match=message):
        parse_items(text)
    with pytest.raises(ValueError, match=message):
        layers(text)


@pytest.mark.parametrize("text, message", [
    ("conv20x29x29,softmax10", r"conv20x29x29 \(item 1\): a 29x29 kernel is larger than its 28x28 input"),
    ("conv20x5x5,pool2,conv40x13x13,fc10", r"conv40x13x13 \(item 3\): a 13x13 kernel is larger than its 12x12"),
    ("conv20x5x29,fc10", "a 5x29 kernel is larger than its 28x28 input"),
    ("pool29,fc10", r"pool29 \(item 1\): a 29x29 window is larger than its 28x28 input"),
    ("conv2x5x5,pool2,pool2,pool2,pool2,pool2,fc10", r"pool2 \(item 6\): a 2x2 window is larger than its 1x1 input"),
    ("fc100,conv20x5x5,fc10", r"conv20x5x5 \(item 2\): needs an image-shaped input .* after fc100"),
    ("fc100,pool2,fc10", r"pool2 \(item 2\): needs an image-shaped input"),
    ("1x28x28", r"1x28x28 \(item 1\) is only an input"),
    ("conv2x3x3", r"conv2x3x3 \(item 1\): the last item is the output layer and must be a dense one"),
    ("fc10,dropout0.5", "must be a dense one"),
    ("softmax100,fc10", r"softmax100 \(item 1\): softmax normalises over the whole layer"),
])
def test_impossible_shapes_name_the_item(text, message):
    with pytest.raises(ValueError, match=message):
        layers(text)


def test_a_vector_activation_from_the_option_is_named():
    with pytest.raises(ValueError, match=r"fc30 \(item 1\): softmax \(from --activation\) normalises"):
        layers("fc30,fc10", sb.softmax)
    with pytest.raises(ValueError, match=r"conv2x3x3 \(item 1\): softmax \(from --activation\)"):
        layers("conv2x3x3,fc10", sb.softmax)
    assert layers("fc10", sb.softmax) == [sb.Input(784), sb.Dense(10, sb.softmax)]  # the output may have it
