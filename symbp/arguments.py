"""What the sub-commands of ``symbp`` share: ``train``, ``show`` and ``approx`` (``symbp.cli``), ``sweep`` and
``vote`` (``symbp.sweep.cli``).

Takes: argument text and parsed arguments.  Gives: ``ArgumentParser`` (an error is one line, exit status 2); the
argument types (``positive_int``, ``positive_number``, ``activation_arg``, ``cost_arg``, ``layers_arg`` for
``--layers`` ...); the option groups (``network_args``, ``data_args``, ``compile_args``) and ``LAYER_SYNTAX``, the
help on ``--layers``; ``build_network``, the network those options describe; and the checks made before any data
is loaded or kernel compiled (``check_memory``, ``check_folder``, ``check_data_dir``, ``save_targets``,
``plot_target``).  A refused argument is a ``ValueError`` (or argparse's ``ArgumentTypeError``) naming its option.
"""

from __future__ import annotations

import argparse
import math
import os
from importlib.util import find_spec
from pathlib import Path

from symbp.activations import BUILTIN_ACTIVATIONS, NAME_PATTERN, Activation
from symbp.compile.backends import BACKENDS
from symbp.costs import BUILTIN_COSTS, Cost
from symbp.data.datasets import IMAGE_SHAPE
from symbp.data.registry import get_spec
from symbp.layer_spec import parse_items, parse_layers
from symbp.layers.declared import read_declarations
from symbp.network import Network
from symbp.parsing import CONSTANTS, FUNCTIONS, close_names, did_you_mean
from symbp.paths import check_writable_folder
from symbp.regularizers import Regularizer
from symbp.train.manifest import read_network
from symbp.train.plot import plot_path

LAYER_SYNTAX = """layers: --layers takes comma-separated items, the output last:
  N, fcN            a dense layer of N units with --activation; a leading N followed by more items is the input
                    (784,30,10, the book's chapter-1 network, means what it always meant)
  softmaxN, sigmoidN, reluN, tanhN, linearN, softplusN
                    a dense layer of N units with that activation (softmax: the output layer only)
  convMAPSxKHxKW    MAPS feature maps of KHxKW kernels with --activation; PyTorch's options as suffixes:
                    sS stride, pP padding (psame: padding="same"), dD dilation, gG groups, e.g. conv32x3x3s2p1
  poolP, poolPHxPW  max-pooling over PxP (PHxPW) windows (stride = window); maxpool3s2, maxpool3s2p1: with
                    stride S and padding P (maxpool is the same item as pool)
  avgpoolP          average pooling, the same options (avgpool7: a global average pool of 7x7 maps)
  dropoutP          dropout of the next layer's inputs with probability P in [0, 1), e.g. dropout0.5
  @NAME             a layer declared by its index expression in the JSON file of --declare, e.g.
                    {"conv_s2": {"map": "z[f,i,j] = sum(W[f,c,p,q]*x[c,2*i+p-1,2*j+q-1] for c in range(1)
                     for p in range(3) for q in range(3)) + b[f]", "out": [16, 14, 14],
                     "params": {"W": [16, 1, 3, 3], "b": [16]}, "activation": "relu"}}
  The input is implied by the data: 1x28x28 when the first item is conv or pool, else 784 (a leading 784 or
  1x28x28 may be written).  The last item must be a dense one; --output-activation applies to a last N or fcN.
"""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but an error is one line on stderr (``symbp train: error: argument --seed: ...``), exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(str(message).split())}\n")


def integer(text: str, least: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def positive_int(text: str) -> int:
    return integer(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return integer(text, 0, "a non-negative integer")


def _number(text: str, positive: bool) -> float:
    what = "a positive, finite number" if positive else "a non-negative, finite number"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def momentum_number(text: str) -> float:
    v = _number(text, positive=False)
    if not v < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), like 0.9, got {text!r}")
    return v


def positive_number(text: str) -> float:
    return _number(text, positive=True)


def non_negative_number(text: str) -> float:
    return _number(text, positive=False)


class LayerText(str):
    """The text of ``--layers`` (normalised: lower case, no spaces) with its items, checked for syntax."""

    items: tuple


def layers_arg(text: str) -> LayerText:
    """The syntax check of ``--layers`` (while the arguments are parsed); shapes are checked by ``build_network``
    once the data's shape and the activations are known."""
    try:
        items = parse_items(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    out = LayerText(",".join(item.text for item in items))
    out.items = tuple(items)
    return out


def _named(kind: str, text: str, names: list[str], allowed: tuple[str, ...], example: str, parse):
    """``parse(text)``; if it fails and ``text`` looks like a name (letters, digits, ``_`` and ``-``, no part of it a
    symbol or constant of the expressions), a ``ValueError`` that names the built-ins (``names``) it looks like
    and lists them all."""
    try:
        return parse(text)
    except ValueError:
        name = text.strip()
        if not NAME_PATTERN.fullmatch(name) or name in FUNCTIONS or any(
                part in allowed or part in CONSTANTS for part in name.split("-")):
            raise
    close = close_names(name.replace("_", "-"), names) or [f"{f}(...)" for f in close_names(name, FUNCTIONS)]
    raise ValueError(f"unknown {kind} {name!r}{did_you_mean(close)} (built-in {kind}s: {', '.join(names)}; or an "
                     f"expression in {' and '.join(allowed)} such as {example!r})") from None


def activation_arg(text: str) -> Activation:
    if text in BUILTIN_ACTIVATIONS:
        return BUILTIN_ACTIVATIONS[text]
    return _named("activation", text, list(BUILTIN_ACTIVATIONS), ("z",), "z/(1+abs(z))",
                  lambda t: Activation.parse("custom", t))


def cost_arg(text: str) -> Cost:
    key = text.replace("-", "_")
    if key in BUILTIN_COSTS:
        return BUILTIN_COSTS[key]
    return _named("cost", text, [name.replace("_", "-") for name in BUILTIN_COSTS], ("a", "y"), "(a-y)**2/2",
                  lambda t: Cost.parse("custom", t))


class _Given(argparse.Action):
    """Store the value and note the option in ``args.given_options`` (what was written, even if it is the
    default)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.given_options = set(getattr(namespace, "given_options", None) or ()) | {self.option_strings[0]}


def network_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("network")
    g.add_argument("--layers", action=_Given, type=layers_arg, default="784,30,10", metavar="ITEMS",
                   help="the layers, comma-separated: sizes, input first, as 784,30,10 (the default), or items "
                        "such as conv20x5x5,pool2,fc100,softmax10 (see 'layers' below)")
    g.add_argument("--activation", action=_Given, default="sigmoid", metavar="ACT",
                   help=f"activation of every layer: {', '.join(BUILTIN_ACTIVATIONS)} or an expression in z "
                        "such as 'z/(1+abs(z))' (default: sigmoid)")
    g.add_argument("--output-activation", action=_Given, default=None, metavar="ACT",
                   help="activation of the output layer, if different (e.g. softmax)")
    g.add_argument("--declare", action=_Given, default=None, metavar="FILE",
                   help="a JSON file of layers declared by their index expressions, used as @NAME in --layers "
                        "(see 'layers' below)")
    g.add_argument("--cost", action=_Given, default="quadratic", metavar="COST",
                   help=f"{', '.join(c.replace('_', '-') for c in BUILTIN_COSTS)} or an expression in a and y "
                        "(default: quadratic)")
    g.add_argument("--network", default=None, metavar="FILE",
                   help="a network declaration (JSON, as 'symbp show --config' prints it) instead of --layers, "
                        "--activation, --output-activation, --declare and --cost")


def option_value(option: str, parse, text: str):
    """``parse(text)``; a ``ValueError`` is raised again naming ``option``."""
    try:
        return parse(text)
    except ValueError as exc:
        raise ValueError(f"argument {option}: {exc}") from exc


def regularizer_arg(text: str):

    return Regularizer.parse("custom", text)


def build_network(args, check_input: bool = True):
    """The network of ``--layers``, ``--activation``, ``--output-activation`` and ``--cost`` (expressions are
    read by the whitelist parser; an error names the option).  The input is implied by the dataset (MNIST's
    for ``show``); with ``check_input`` a written input must be the dataset's."""
    if getattr(args, "network", None):
        return _declared_network(args, check_input)
    act = option_value("--activation", activation_arg, args.activation)
    out_act = option_value("--output-activation", activation_arg, args.output_activation) \
        if args.output_activation else None
    last = args.layers.items[-1]
    if out_act is not None and last.kind == "act":
        raise ValueError(f"argument --output-activation: the last item of --layers, {last.text}, names its "
                         f"activation already; end --layers with fc{last.values[0]} to use --output-activation")
    dataset = getattr(args, "dataset", "mnist")
    declared = {}
    if getattr(args, "declare", None):
        declared = option_value("--declare", read_declarations, args.declare)
    layers = option_value("--layers", lambda text: parse_layers(
        list(args.layers.items), (1, *IMAGE_SHAPE), act, out_act, check_input=check_input,
        data_name=get_spec(dataset).title, declared=declared), args.layers)
    cost = option_value("--cost", cost_arg, args.cost)
    return option_value("--layers", lambda _: Network(layers, cost=cost), args.layers)


def _declared_network(args, check_input: bool):
    """The network of ``--network FILE`` (read by ``symbp.train.manifest.read_network``: the model-file decoder
    and the whitelist parser); with ``check_input`` its input must be the dataset's samples."""
    given = [o for o in ("--layers", "--activation", "--output-activation", "--declare", "--cost")
             if o in (getattr(args, "given_options", None) or ())]
    if given:
        raise ValueError(f"argument --network: the declaration holds the layers, their activations and the cost; "
                         f"leave out {', '.join(given)}")
    net = option_value("--network", read_network, args.network)
    sample = (1, *IMAGE_SHAPE)
    if check_input and net.shapes[0] not in (sample, (math.prod(sample),)):
        title = get_spec(getattr(args, "dataset", "mnist")).title
        raise ValueError(f"argument --network: the network's input is {'x'.join(map(str, net.shapes[0]))}; "
                         f"{title}'s samples are {math.prod(sample)} values ({'x'.join(map(str, sample))})")
    return net


def data_args(d, limit_help: str) -> None:
    """--dataset, --data-dir and --limit: where the training data comes from (train and sweep)."""
    d.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist", help="(default: mnist)")
    d.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder holding the dataset's four .gz files, or mnist/ and fashion-mnist/ with them "
                        "(default: $SYMBP_DATA_DIR, else the folder remembered by `symbp data`, else the cache, "
                        "else a download)")
    d.add_argument("--limit", type=positive_int, default=None, metavar="N", help=limit_help)


def compile_args(p):
    p.add_argument("--backend", choices=list(BACKENDS), default=next(iter(BACKENDS)),
                   help="kernel backend: " + "; ".join(f"{n}: {b.description}" for n, b in BACKENDS.items())
                        + f" (default: {next(iter(BACKENDS))})")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="(default: float64)")


# -- checks done before anything is loaded or compiled -----------------------------------------------------
def memory_limit() -> int | None:
    """Bytes this process can use at most: physical memory, or less under an address-space or cgroup limit."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        pass
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY and soft > 0:
            limits.append(soft)
    except (ImportError, AttributeError, ValueError, OSError):
        pass
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if text.isdigit():
            limits.append(int(text))
    except OSError:
        pass
    return min(limits) if limits else None


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.1f} MB"


def network_option(args) -> tuple[str, str]:
    """The option that declared the network and its value, for messages: ``--network`` and the file, or
    ``--layers`` and its items."""
    return ("--network", str(args.network)) if getattr(args, "network", None) else ("--layers", str(args.layers))


def check_outputs(net, args, classes: int) -> None:
    """Refuse (``ValueError`` naming the option that declared it) a network with fewer outputs than the
    dataset's ``classes``."""
    if getattr(net.layers[-1], "n", classes) >= classes:
        return
    option, _ = network_option(args)
    given = f"{net.layers[-1].n} units" if option == "--network" else args.layers.items[-1].where
    raise ValueError(f"argument {option}: {get_spec(args.dataset).title} has {classes} classes: the output layer "
                     f"needs at least {classes} units, got {given}")


def check_memory(net, args, dtype: str, *, data_rows: int = 0, eval_rows: int = 0,
                  batch_size: int = 0, data_itemsize: int | None = None) -> None:
    """Refuse (``ValueError`` naming --layers or --network) a network whose parameters and buffers cannot fit in memory.

    The estimate counts the parameters four times (the model's, the copy an epoch can be undone from, the
    best epoch's for early stopping, one more while saving), the data set (its inputs ``data_itemsize`` bytes
    each: 1 for uint8 pixels), the per-row activations z and a of every layer for the largest set evaluated at
    once, and the mini-batch buffers."""
    itemsize = 4 if dtype == "float32" else 8
    data_itemsize = itemsize if data_itemsize is None else data_itemsize
    params = sum(spec.size for layer, in_shape in zip(net.layers[1:], net.shapes)
                 for spec in layer.param_specs(in_shape))
    n_in, n_out = math.prod(net.shapes[0]), math.prod(net.shapes[-1])
    units = sum(math.prod(shape) for shape in net.shapes[1:])
    need = (itemsize * (4 * params + data_rows * n_out + eval_rows * (2 * units + n_out)
                        + batch_size * (4 * units + n_in + n_out)) + data_itemsize * data_rows * n_in)
    limit = memory_limit()
    if limit is not None and need > limit:
        what = "training" if data_rows else "compiling"
        option, text = network_option(args)
        raise ValueError(
            f"argument {option}: {text} has {params:,} parameters; {what} it needs about "
            f"{_gb(need)} of memory ({dtype} parameters and their copies"
            + (f", the data, activations of {eval_rows:,} rows" if data_rows else "")
            + f"), more than the {_gb(limit)} this machine has")


def check_folder(option: str, folder: Path) -> None:
    """``folder`` is, or can be created in, a folder this process can write in."""
    check_writable_folder(folder, f"argument {option}")


def missing_folder(path: Path) -> Path | None:
    """The folder ``path`` goes in if it does not exist yet (writing the file creates it), else None."""
    return None if path.parent.exists() else path.parent


def say_created(folder: Path | None) -> None:
    """``--save`` and ``--plot`` create a missing folder, and say so in one line."""
    if folder is not None and folder.is_dir():
        print(f"created the folder {folder}")


def check_not_folder(option: str, path: Path) -> None:
    if path.exists() and not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file"
        raise ValueError(f"argument {option}: {path} is {what}; it would be replaced by a file")


def save_targets(text: str) -> tuple[Path, Path]:
    """The files ``--save PATH`` writes, PATH.json and PATH.npz, after checking that they can be written."""
    if not text or text.endswith(os.sep) or (os.altsep and text.endswith(os.altsep)):
        raise ValueError(f"argument --save: expected PATH such as models/ch1 (it writes PATH.json and PATH.npz), "
                         f"got {text!r}")
    base = Path(text)
    if base.suffix in (".json", ".npz"):
        base = base.with_suffix("")
    if base.name in ("", ".", ".."):
        raise ValueError(f"argument --save: expected PATH such as models/ch1 (it writes PATH.json and PATH.npz), "
                         f"got {text!r}")
    jpath, npath = base.with_name(base.name + ".json"), base.with_name(base.name + ".npz")
    for target in (jpath, npath, npath.with_name(npath.name + ".new")):  # .npz.new: the save's pending file
        check_not_folder("--save", target)
    check_folder("--save", base.parent)
    return jpath, npath


def plot_target(text: str) -> Path:
    """The file ``--plot`` writes (``.png`` added when there is no suffix), after checking it can be written."""
    if text and Path(text).is_dir():
        raise ValueError(f"argument --plot: {text} is a folder: expected a file name such as "
                         f"{Path(text) / 'curves.png'}")
    if find_spec("matplotlib") is None:
        raise ValueError("argument --plot: needs matplotlib: pip install 'symbp[plot]'")
    path = option_value("--plot", plot_path, text)
    check_not_folder("--plot", path)
    check_folder("--plot", path.parent)
    return path


def check_data_dir(args) -> None:
    """``--data-dir`` exists and holds the dataset's four files (directly or in a subfolder named after it)."""
    if args.data_dir is None:
        return

    spec = get_spec(args.dataset)
    base = Path(args.data_dir).expanduser()
    fallback = ("without --data-dir, symbp looks in $SYMBP_DATA_DIR, then the remembered folder (symbp data), "
                "then the cache, then downloads")
    if not base.is_dir():
        what = "is not a folder" if base.exists() else "does not exist"
        raise ValueError(f"argument --data-dir: {base} {what} ({fallback})")
    for folder in (base, base / spec.name):
        if all((folder / name).is_file() for name in spec.filenames):
            return
    raise ValueError(f"argument --data-dir: neither {base} nor {base / spec.name} holds the four {spec.title} files "
                     f"({', '.join(spec.filenames)}; {fallback})")
