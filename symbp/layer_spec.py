"""The compact layer syntax of ``symbp train --layers`` and ``symbp show --layers``.

Takes: text such as ``conv20x5x5,pool2,conv40x5x5,pool2,fc100,softmax10``, the shape of one sample of the data
(``(1, 28, 28)`` for MNIST) and the default activation.  Gives: ``parse_layers(...)``, the list of layers
(``Input`` first) for ``sb.Network(layers, cost=...)``; ``parse_items(text)``, the syntax check alone.

Items, comma-separated (case and spaces around items do not matter):

- ``N``: a dense layer of N units with the default activation, as ``fcN`` — except a leading ``N``
  followed by more items, which is the input (``784,30,10`` is the book's chapter-1 network);
- ``CxHxW`` (first only): an image-shaped input of C channels of H×W pixels;
- ``convMxKHxKW``: M feature maps of KH×KW kernels, default activation; PyTorch's options follow as suffixes:
  ``sS`` stride, ``pP`` padding (``psame``: PyTorch's ``padding="same"``), ``dD`` dilation, ``gG`` groups
  (``conv32x3x3s2p1``);
- ``poolP``, ``poolPHxPW`` or ``maxpoolP…``: max-pooling over P×P (PH×PW) windows, with ``sS`` stride and ``pP``
  padding suffixes (``maxpool3s2``); ``avgpoolP…``: average pooling, the same suffixes (``avgpool7``: a global
  average pool of a 7×7 map);
- ``fcN``: a dense layer of N units, default activation;
- ``dropoutP``: dropout with probability P in [0, 1) of the layer's inputs (``dropout0.5``);
- ``softmaxN``, ``sigmoidN``, ``reluN``, ``tanhN``, ``linearN``, ``softplusN``: a dense layer of N units with
  that activation (softmax: the output layer only);
- ``@NAME``: a layer declared by its index expression, from a file of declarations (``--declare FILE``, read by
  ``symbp.layers.declared.read_declarations``).

When no input is written, it is implied by the data: the image ``Input((C, H, W))`` when the first item is a
convolution or a pool, else the flat ``Input(C·H·W)``.  With ``check_input`` (``symbp train``) a written input
must be the data's (``784`` or ``1x28x28`` for MNIST) and is then read as the implied one; without it
(``symbp show``) another written input is taken as it stands (``4,3,2``).  The last item is the output: a
dense item; a plain ``N`` or ``fcN`` there takes ``output_activation`` when given.  Every error is a
``ValueError`` naming the item.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from symbp.activations import BUILTIN_ACTIVATIONS, Activation

#: the forms, for error messages and --help
FORMS = ("N, fcN, convMAPSxKHxKW[sS][pP|psame][dD][gG], poolP or maxpoolP[xPW][sS][pP], avgpoolP[xPW][sS][pP], "
         "dropoutP, "
         + ", ".join(f"{name}N" for name in BUILTIN_ACTIVATIONS) + ", @NAME (a declared layer), or a leading input "
         "N or CxHxW")
_DECLARED = re.compile(r"@([a-z_][a-z0-9_]{0,63})")

_INT = r"[0-9]+"  # ASCII digits only (\d would take any script's)
_PROB = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_PATTERNS = {
    "size": re.compile(rf"({_INT})"),
    "image": re.compile(rf"({_INT})x({_INT})x({_INT})"),
    "conv": re.compile(rf"conv({_INT})x({_INT})x({_INT})(?:s({_INT}))?(?:p({_INT}|same))?(?:d({_INT}))?(?:g({_INT}))?"),
    "pool": re.compile(rf"(?:max)?pool({_INT})(?:x({_INT}))?(?:s({_INT}))?(?:p({_INT}))?"),
    "avgpool": re.compile(rf"avgpool({_INT})(?:x({_INT}))?(?:s({_INT}))?(?:p({_INT}))?"),
    "fc": re.compile(rf"fc({_INT})"),
    "dropout": re.compile(rf"dropout({_PROB})"),
}
_ACT_PATTERN = re.compile(rf"({'|'.join(map(re.escape, BUILTIN_ACTIVATIONS))})({_INT})")
_HINTS = {"conv": "convMAPSxKHxKW then, in this order, optional sS, pP (or psame), dD, gG, e.g. conv32x3x3s2p1",
          "avgpool": "avgpoolP or avgpoolPHxPW with optional sS, pP, e.g. avgpool7",
          "maxpool": "maxpoolP or maxpoolPHxPW with optional sS, pP, e.g. maxpool3s2",
          "pool": "poolP or poolPHxPW with optional sS, pP, e.g. pool2",
          "fc": "fcN, e.g. fc100", "dropout": "dropoutP with P in [0, 1), e.g. dropout0.5"}
_MAX_DIGITS = 12
DENSE_KINDS = ("size", "fc", "act")


@dataclass(frozen=True)
class Item:
    """One item of the layer text: ``kind`` (size, image, conv, pool, fc, dropout, act), its numbers, and for
    ``act`` items the activation's name."""

    text: str
    position: int  # 1-based
    kind: str
    values: tuple
    activation: str | None = None
    options: tuple = ()  # (name, value) pairs of a conv's or a pool's PyTorch options

    @property
    def where(self) -> str:
        return f"{self.text} (item {self.position})"


def _number(item_text: str, position: int, digits: str) -> int:
    if len(digits) > _MAX_DIGITS:
        raise ValueError(f"{item_text} (item {position}): {digits[:8]}... is too large")
    value = int(digits)
    if value < 1:
        raise ValueError(f"{item_text} (item {position}): sizes must be positive integers, got {value}")
    return value


def _item(raw: str, position: int) -> Item:
    text = raw.strip()
    if not text:
        raise ValueError(f"item {position} is empty; expected one of {FORMS}")
    if text.startswith("@"):
        m = _DECLARED.fullmatch(text.lower())
        if not m:
            raise ValueError(f"{text} (item {position}): expected @NAME, the name of a declared layer (letters, digits "
                             "and _)")
        return Item(text.lower(), position, "declared", (m.group(1),))
    text = text.lower()
    m = _ACT_PATTERN.fullmatch(text)
    if m:
        return Item(text, position, "act", (_number(text, position, m.group(2)),), m.group(1))
    for kind, pattern in _PATTERNS.items():
        m = pattern.fullmatch(text)
        if not m:
            continue
        if kind == "dropout":
            p = float(m.group(1))
            if not 0 <= p < 1:
                raise ValueError(f"{text} (item {position}): the dropout probability must be in [0, 1), got {p:g}")
            return Item(text, position, kind, (p,))
        if kind == "conv":
            maps, kh, kw, s, p, d, g = m.groups()
            values = tuple(_number(text, position, v) for v in (maps, kh, kw))
            opts = {"stride": s, "padding": p, "dilation": d, "groups": g}
            options = tuple((k, v if v == "same" else int(v) if k == "padding" else _number(text, position, v))
                            for k, v in opts.items() if v is not None)
            return Item(text, position, kind, values, options=options)
        if kind in ("pool", "avgpool"):
            ph, pw, s, p = m.groups()
            values = (_number(text, position, ph), _number(text, position, pw if pw is not None else ph))
            options = tuple((k, int(v) if k == "padding" else _number(text, position, v))
                            for k, v in (("stride", s), ("padding", p)) if v is not None)
            return Item(text, position, kind, values, options=options)
        values = tuple(_number(text, position, g) for g in m.groups() if g is not None)
        return Item(text, position, kind, values)
    for prefix, hint in _HINTS.items():
        if text.startswith(prefix):
            raise ValueError(f"{text} (item {position}): expected {hint}")
    for name in BUILTIN_ACTIVATIONS:
        if text.startswith(name):
            raise ValueError(f"{text} (item {position}): expected {name}N, a dense layer of N units, "
                             f"e.g. {name}10")
    raise ValueError(f"{text!r} (item {position}): unknown item; expected one of {FORMS}")


def parse_items(text: str) -> list[Item]:
    """The items of ``text``, checked for syntax only (``ValueError`` naming the item)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"expected comma-separated items such as 784,30,10 or conv20x5x5,pool2,fc100,softmax10, "
                         f"got {text!r}")
    items = [_item(raw, i) for i, raw in enumerate(text.split(","), start=1)]
    if len(items) == 1 and items[0].kind == "size":  # an input or a layer?  As before: sizes begin with the input
        raise ValueError(f"expected at least two sizes (the input, then the layers) such as 784,30,10, or layer "
                         f"items such as fc30,softmax10, got {text!r}")
    for item in items[1:]:
        if item.kind == "image":
            raise ValueError(f"{item.where}: an image shape CxHxW can only be the first item (the input)")
    return items


def has_input(items: list[Item]) -> bool:
    """Does the text start with an explicit input (a leading N followed by more items, or CxHxW)?"""
    return items[0].kind == "image" or (items[0].kind == "size" and len(items) > 1)


def _shape_text(shape) -> str:
    return "x".join(map(str, shape))


def parse_layers(text: str, input_shape: tuple[int, ...], activation: Activation,
                 output_activation: Activation | None = None, *, check_input: bool = True,
                 data_name: str = "the data", activation_option: str = "--activation",
                 declared: dict | None = None) -> list:
    """The layers of ``text`` (``Input`` first), shapes checked layer by layer.

    ``input_shape`` is the shape of one sample of the data, ``(C, H, W)`` (or ``(n,)`` for flat data: then
    convolutions need a written image input).  ``activation`` is that of ``N``, ``fcN`` and ``conv`` items;
    ``output_activation``, when given, that of a last ``N`` or ``fcN``.  ``data_name`` and ``activation_option``
    only word the error messages.  ``declared`` maps the names of ``@NAME`` items to their layers (lower case).
    """
    from symbp.layers import AvgPool, Conv2D, Dense, Dropout, Input, MaxPool

    declared = {k.lower(): v for k, v in (declared or {}).items()}

    items = parse_items(text) if isinstance(text, str) else list(text)
    input_shape = tuple(int(k) for k in input_shape)
    body = items[1:] if has_input(items) else items
    if not body:
        raise ValueError(f"{items[0].where} is only an input: add the layers after it, e.g. {items[0].text},30,10")
    for item in body:
        if item.kind == "declared" and item.values[0] not in declared:
            known = ", ".join(sorted(declared)) or "none: give --declare FILE"
            raise ValueError(f"{item.where}: no declared layer named {item.values[0]!r} (declared: {known})")
    image_first = body[0].kind in ("conv", "pool", "avgpool") or (
        body[0].kind == "declared" and declared[body[0].values[0]].reads_image)
    if has_input(items):
        given = items[0].values
        if check_input or given in (input_shape, (math.prod(input_shape),)):
            if given not in (input_shape, (math.prod(input_shape),)):
                expected = " or ".join(dict.fromkeys((str(math.prod(input_shape)), _shape_text(input_shape))))
                raise ValueError(f"{items[0].where}: {data_name}'s samples are {_shape_text(input_shape)} "
                                 f"({math.prod(input_shape)} inputs), so a written input must be {expected} "
                                 "(or left out: it is implied)")
            shape = input_shape if image_first and len(input_shape) == 3 else (math.prod(input_shape),)
        else:
            shape = given
    else:
        shape = input_shape if image_first and len(input_shape) == 3 else (math.prod(input_shape),)
    layers = [Input(shape if len(shape) > 1 else shape[0])]
    last = body[-1]
    if last.kind not in DENSE_KINDS:
        raise ValueError(f"{last.where}: the last item is the output layer and must be a dense one, such as "
                         f"softmax10 or fc10")
    for item in body:
        is_last = item is last
        try:
            if item.kind in ("conv", "pool", "avgpool"):
                if len(shape) != 3:
                    after = "the flat input" if len(layers) == 1 else f"{body[len(layers) - 2].text} (flat)"
                    hint = (" write the input as CxHxW, e.g. 1x28x28, or leave it out"
                            if len(layers) == 1 else " put convolutions and pools before the dense items")
                    raise ValueError(f"needs an image-shaped input (channels, height, width) but comes after "
                                     f"{after} of {_shape_text(shape)} units:{hint}")
                c, h, w = shape
                kh, kw = item.values[-2:]
                if item.kind == "conv":
                    if activation.vector:
                        raise ValueError(f"{activation.name} (from {activation_option}) normalises over a whole "
                                         "layer: a convolution needs an elementwise activation (sigmoid, relu, ...)")
                    opts = dict(item.options)  # with options, the layer checks its own sizes (PyTorch's formula)
                    if not opts and (kh > h or kw > w):
                        raise ValueError(f"a {kh}x{kw} kernel is larger than its {h}x{w} input")
                    layer = Conv2D(item.values[0], (kh, kw), activation, **opts)
                else:
                    if not item.options and (kh > h or kw > w):
                        raise ValueError(f"a {kh}x{kw} window is larger than its {h}x{w} input")
                    layer = (MaxPool if item.kind == "pool" else AvgPool)((kh, kw), **dict(item.options))
            elif item.kind == "dropout":
                layer = Dropout(item.values[0])
            elif item.kind == "declared":
                layer = declared[item.values[0]]
            else:
                if item.kind == "act":
                    act = BUILTIN_ACTIVATIONS[item.activation]
                else:
                    act = output_activation if is_last and output_activation is not None else activation
                if act.vector and not is_last:
                    source = "" if item.kind == "act" else f" (from {activation_option})"
                    raise ValueError(f"{act.name}{source} normalises over the whole layer: only the output layer "
                                     f"can have it; use an elementwise activation here and end with {act.name}N")
                layer = Dense(item.values[0], act)
            shape = tuple(layer.out_shape(shape))
        except ValueError as exc:
            msg = str(exc)
            for prefix in ("Conv2D: ", "MaxPool: ", "AvgPool: ", "Dense: ", "Dropout: "):
                msg = msg.removeprefix(prefix)
            raise ValueError(f"{item.where}: {msg}") from None
        layers.append(layer)
    return layers
