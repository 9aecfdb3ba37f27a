"""PyTorch's window options (stride, padding, dilation) and the declarations they generate.

Takes: the options of ``Conv2D``, ``MaxPool`` and ``AvgPool`` as a user writes them (an int or a pair; padding
also ``"same"``).  Gives: ``pair``/``padding`` (checked, as pairs), ``out_size`` (PyTorch's output size:
⌊(H + pad_before + pad_after − d·(k − 1) − 1) / s⌋ + 1) and ``index`` (the affine index text s·i + d·p − pad
of the index language), from which the built-in kinds write their maps.
"""

from __future__ import annotations

from functools import lru_cache

from symbp.layers.base import check_size


def pair(kind: str, what: str, v, minimum: int = 1) -> tuple[int, int]:
    """(rows, columns) from an int or a pair of ints ≥ ``minimum``; ValueError naming the kind otherwise."""
    if isinstance(v, int) and not isinstance(v, bool):
        v = (v, v)
    if not isinstance(v, (tuple, list)) or len(v) != 2:
        raise ValueError(f"{kind}: {what} must be a pair (rows, columns) or an int, got {v!r}")
    out = []
    for k in v:
        if minimum >= 1:
            out.append(check_size(kind, k))
        elif isinstance(k, bool) or not isinstance(k, int) or k < minimum:
            raise ValueError(f"{kind}: {what} must be non-negative integers, got {v!r}")
        else:
            out.append(int(k))
    return tuple(out)


def padding(kind: str, v) -> tuple[int, int] | str:
    """Padding as a pair of non-negative ints, or ``"same"`` (PyTorch's: the output as large as the input)."""
    if v == "same":
        return "same"
    if isinstance(v, str):
        raise ValueError(f"{kind}: padding must be an int, a pair or 'same', got {v!r}")
    return pair(kind, "padding", v, minimum=0)


def same_before(kernel: int, dilation: int) -> int:
    """PyTorch's padding='same': total d·(k − 1), the smaller half before (an even kernel pads more after)."""
    return dilation * (kernel - 1) // 2


def out_size(size: int, kernel: int, stride: int, dilation: int, before: int, after: int) -> int:
    return (size + before + after - dilation * (kernel - 1) - 1) // stride + 1


def index(var: str, stride: int, off: str, dilation: int, before: int) -> str:
    """The index text stride·var + dilation·off − before."""
    text = f"{stride}*{var}+{dilation}*{off}" if dilation != 1 else f"{stride}*{var}+{off}"
    text = text.replace("1*", "", 1) if stride == 1 else text
    return text + (f"-{before}" if before else "")


@lru_cache(maxsize=256)
def geometry(kind: str, in_shape: tuple, kernel, stride, pad, dilation) -> tuple[tuple[int, int], tuple[int, int]]:
    """((before_h, before_w), (out_h, out_w)) of a window over ``in_shape`` (C, H, W); ValueError naming ``kind``
    when no output is left."""
    if len(in_shape) != 3:
        raise ValueError(f"{kind} needs an image-shaped input (channels, height, width), got {in_shape}")
    _, h, w = in_shape
    befores, outs = [], []
    for size, k, s, d, p in zip((h, w), kernel, stride, dilation, pad if pad != "same" else (None, None)):
        before, after = (same_before(k, d), d * (k - 1) - same_before(k, d)) if pad == "same" else (p, p)
        n = out_size(size, k, s, d, before, after)
        if n < 1:
            plain = pad == (0, 0) and tuple(dilation) == (1, 1)
            if plain and kind == "Conv2D":
                raise ValueError(f"{kind}: a {kernel[0]}x{kernel[1]} kernel is larger than its {h}x{w} input")
            raise ValueError(f"{kind}: a {kernel[0]}x{kernel[1]} window" + (
                "" if plain else f" (dilation {dilation}, padding {pad})") + f" leaves nothing of a {h}x{w} input")
        befores.append(before)
        outs.append(n)
    return tuple(befores), tuple(outs)
