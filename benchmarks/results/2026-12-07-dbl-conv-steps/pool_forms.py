"""The window max of dbl_conv's first layer (10 × 20 × 24 × 24 → 12 × 12 with the argmax) and the scatter to its
maxima, float32, µs per mini-batch of 10: the generated forms (cur, scat) against selects instead of branches
(sel), a scatter that writes every element of a window once (scat2), and 32- or 8-bit argmaxes.
Run: python pool_forms.py
"""
import numpy as np
from col2im_forms import best_us
from numba import njit


@njit
def cur(src, out, arg):
    for r in range(src.shape[0]):
        for c in range(20):
            for i in range(12):
                for j in range(12):
                    best = src[r, c, i * 2, j * 2]
                    at = 0
                    for p in range(2):
                        for q in range(2):
                            v = src[r, c, i * 2 + p, j * 2 + q]
                            if v > best:
                                best = v
                                at = p * 2 + q
                    out[r, c, i, j] = best
                    arg[r, c, i, j] = at


@njit
def sel(src, out, arg):
    for r in range(src.shape[0]):
        for c in range(20):
            for i in range(12):
                for j in range(12):
                    best, at = src[r, c, i * 2, j * 2], 0
                    for k, v in enumerate((src[r, c, i * 2, j * 2 + 1], src[r, c, i * 2 + 1, j * 2],
                                           src[r, c, i * 2 + 1, j * 2 + 1])):
                        up = v > best
                        best = v if up else best
                        at = k + 1 if up else at
                    out[r, c, i, j] = best
                    arg[r, c, i, j] = at


@njit
def scat(dst, g, arg):
    dst[...] = 0.0
    for r in range(g.shape[0]):
        for c in range(20):
            for i in range(12):
                for j in range(12):
                    at = arg[r, c, i, j]
                    dst[r, c, i * 2 + at // 2, j * 2 + at % 2] = g[r, c, i, j]


@njit
def scat2(dst, g, arg):
    zero = np.float32(0.0)
    for r in range(g.shape[0]):
        for c in range(20):
            for i in range(12):
                for j in range(12):
                    at, v = arg[r, c, i, j], g[r, c, i, j]
                    dst[r, c, i * 2, j * 2] = v if at == 0 else zero
                    dst[r, c, i * 2, j * 2 + 1] = v if at == 1 else zero
                    dst[r, c, i * 2 + 1, j * 2] = v if at == 2 else zero
                    dst[r, c, i * 2 + 1, j * 2 + 1] = v if at == 3 else zero


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    src = rng.standard_normal((10, 20, 24, 24)).astype(np.float32)
    g = rng.standard_normal((10, 20, 12, 12)).astype(np.float32)
    out, arg = np.zeros((10, 20, 12, 12), np.float32), np.zeros((10, 20, 12, 12), np.int64)
    out2, arg2 = np.zeros_like(out), np.zeros_like(arg)
    print("cur", f"{best_us(cur, src, out, arg):.1f} us per mini-batch")
    print("sel", f"{best_us(sel, src, out2, arg2):.1f} us per mini-batch; same:",
          np.array_equal(out, out2) and np.array_equal(arg, arg2))
    dst, dst2 = np.zeros_like(src), np.zeros_like(src)
    print("scat", f"{best_us(scat, dst, g, arg):.1f} us per mini-batch")
    print("scat2", f"{best_us(scat2, dst2, g, arg):.1f} us per mini-batch; same:", np.array_equal(dst, dst2))
    for adt in (np.int32, np.int8):
        small = np.zeros(arg.shape, adt)
        print("cur", adt.__name__, f"{best_us(cur, src, out2, small):.1f} us per mini-batch")
        print("scat", adt.__name__, f"{best_us(scat, np.zeros_like(src), g, small):.1f} us per mini-batch")
