"""col2im of dbl_conv's second layer (its Wᵀ·δ for 10 samples side by side, 500 × 640, into 10 × 20 × 12 × 12),
float32, µs per mini-batch of 10: the row-gathered form symbp generates (cur, copied from the generated kernel),
vector read-modify-writes of eight columns in two loop orders (vec qpi, vec pqi) and each input row summed in
twelve registers (acc).  Run: python col2im_forms.py
"""
import time

import numpy as np
from numba import njit

import symbp as sb

LAYERS = [sb.Input((1, 28, 28)), sb.Conv2D(20, 5, activation=sb.sigmoid), sb.MaxPool(2),
          sb.Conv2D(40, 5, activation=sb.sigmoid), sb.MaxPool(2), sb.Dense(100, sb.sigmoid),
          sb.Dense(10, sb.softmax)]


def compiled(lines, name):
    ns = {"np": np}
    exec("\n".join(lines) + "\n", ns)  # our own generated text, not input
    return njit(ns[name])


def current():
    """The generated kernel's col2im, cut out of its source and wrapped in a loop over the 10 samples."""
    src = sb.Network(LAYERS, cost=sb.log_likelihood).compile(dtype="float32", seed=0).source("sgd_epoch")
    lines = src.splitlines()
    i0 = next(i for i, ln in enumerate(lines) if "_g3 = delta2[_r0 + _s]" in ln)
    body = ["    " + ln[12:] for ln in lines[i0 + 1:i0 + 20]]
    return compiled(["def cur(dcol_z3, delta2):", "    for _s in range(10):", "        _g3 = delta2[_s]", *body],
                    "cur")


def vector_rmw(order):
    loops = ["_q", "_p"] if order == "qpi" else ["_p", "_q"]
    ind = " " * 24
    lines = ["def vec(dcol, delta2):", "    for _s in range(10):", "        _g3 = delta2[_s]", "        _g3[...] = 0.0",
             "        for _c in range(20):", f"            for {loops[0]} in range(5):",
             f"                for {loops[1]} in range(5):", "                    _row = (_c * 5 + _p) * 5 + _q",
             "                    for _i in range(8):", ind + "_y = _i + _p", ind + "_o = _s * 64 + _i * 8"]
    lines += [ind + f"_t{k} = dcol[_row, _o + {k}]" for k in range(8)]
    lines += [ind + f"_u{k} = _g3[_c, _y, _q + {k}]" for k in range(8)]
    lines += [ind + f"_g3[_c, _y, _q + {k}] = _u{k} + _t{k}" for k in range(8)]
    return compiled(lines, "vec")


def registers():
    ind = " " * 16
    lines = ["def acc(dcol, delta2):", "    for _s in range(10):", "        _g3 = delta2[_s]",
             "        for _c in range(20):", "            for _y in range(12):"]
    lines += [ind + f"_a{x} = np.float32(0.0)" for x in range(12)]
    lines += [ind + "for _p in range(max(0, _y - 7), min(5, _y + 1)):", ind + "    _o = _s * 64 + (_y - _p) * 8",
              ind + "    _row0 = (_c * 5 + _p) * 5"]
    for x in range(12):
        terms = [f"dcol[_row0 + {q}, _o + {x - q}]" for q in range(5) if 0 <= x - q < 8]
        lines.append(ind + f"    _a{x} += " + " + ".join(terms))
    lines += [ind + f"_g3[_c, _y, {x}] = _a{x}" for x in range(12)]
    return compiled(lines, "acc")


def best_us(f, *args, calls=300, repeats=7):
    f(*args)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            f(*args)
        times.append((time.perf_counter() - t) / calls * 1e6)
    return min(times)


if __name__ == "__main__":
    dcol = np.random.default_rng(0).random((500, 640)).astype(np.float32)
    ref = np.zeros((10, 20, 12, 12), np.float32)
    cur = current()
    cur(dcol, ref)
    print("cur", f"{best_us(cur, dcol, ref):.1f} us per mini-batch of 10")
    for name, f in (("vec qpi", vector_rmw("qpi")), ("vec pqi", vector_rmw("pqi")), ("acc", registers())):
        g = np.zeros_like(ref)
        f(dcol, g)
        print(name, f"{best_us(f, dcol, g):.1f} us per mini-batch of 10; largest difference {abs(g - ref).max():.2g}")
