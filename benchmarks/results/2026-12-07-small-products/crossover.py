"""Where BLAS stops losing to loops: the cross-over of the small products, per transpose case and dtype.

Times, in one process, each product shape three ways on the same operands: ``?gemm`` called directly (the
runtime's ``_xgemm``, no size test), the runtime's plain loops (``gemm_nt``/``gemm_nn``/``gemm_tn`` below
``SMALL_GEMM``, runtime extents) and generated loops with N and K written into the source as constants (the
form a generator would emit: fixed-order sums, FMA contraction, no reassociation).  Shapes are the book's
products: the forward z = a·Wᵀ ("nt"), the input gradient δ·W ("nn"), the weight update δᵀ·a ("tn", the
mini-batch M is its reduction), and a conv layer's W·col (nn, 576 × 26), at M = 1, 10 and 100.  Best of 7
runs of many calls.

Run: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 python crossover.py float32 float64``
Columns: dtype case M N K flop, then µs per call for BLAS, generated, runtime loops (nan: above ``SMALL_GEMM``;
``crossover_4096.txt`` was run with
4,096, ``crossover.txt`` with 512), and generated ÷ BLAS.
"""

import sys
import time

import numpy as np
from numba import njit

from symbp.compile.backends.numba import runtime as rt

_N, _T = ord("N"), ord("T")
_BODY = {
    "nt": """
    for i in range(C.shape[0]):
        for j in range({N}):
            s0 = s1 = s2 = s3 = z0
            for p in range(0, {K4}, 4):
                s0 += A[i, p] * B[j, p]
                s1 += A[i, p + 1] * B[j, p + 1]
                s2 += A[i, p + 2] * B[j, p + 2]
                s3 += A[i, p + 3] * B[j, p + 3]
            s = (s0 + s1) + (s2 + s3)
            for p in range({K4}, {K}):
                s += A[i, p] * B[j, p]
            C[i, j] = a * s + (b * C[i, j] if beta != 0.0 else z0)
""",
    "nn": """
    for i in range(C.shape[0]):
        for j in range({N}):
            C[i, j] = b * C[i, j] if beta != 0.0 else z0
        for p in range({K}):
            f = a * A[i, p]
            for j in range({N}):
                C[i, j] += f * B[p, j]
""",
    "tn": """
    for i in range({K}):
        for j in range({N}):
            C[i, j] = b * C[i, j] if beta != 0.0 else z0
        for p in range(A.shape[0]):
            f = a * A[p, i]
            for j in range({N}):
                C[i, j] += f * B[p, j]
""",
}
_FLAGS = {"nt": (_N, _T), "nn": (_N, _N), "tn": (_T, _N)}
_SHAPES = {
    "nt": [(m, n, k) for m in (1, 10, 100)
           for n, k in ((10, 30), (10, 100), (30, 784), (100, 784), (16, 64), (64, 64))],
    "nn": [(m, n, k) for m in (1, 10, 100) for n, k in ((30, 10), (100, 10), (784, 30), (64, 64), (576, 26))],
    "tn": [(m, n, k) for m in (1, 10, 100) for n, k in ((30, 10), (100, 30), (784, 30), (784, 100), (64, 64))],
}


def generated(case, N, K, dt):
    """C ← α·op(A)·op(B) + β·C with N and K constants in the source (for "tn", K is C's rows)."""
    src = "def prod(A, B, C, alpha, beta):\n    a = dt(alpha)\n    b = dt(beta)\n" + _BODY[case].format(
        N=N, K=K, K4=K - K % 4)
    scope = {"z0": dt(0), "dt": dt}
    exec(src, scope)  # our own template, integers only
    return njit(fastmath={"contract"}, error_model="numpy", nogil=True)(scope["prod"])


def blas(case):
    ta, tb = _FLAGS[case]

    @njit(nogil=True)
    def prod(A, B, C, alpha, beta):
        M, N = C.shape
        K = A.shape[0] if ta == _T else A.shape[1]
        isz = C.itemsize
        rt._xgemm(tb, ta, N, M, K, alpha, B, B.strides[0] // isz, A, A.strides[0] // isz, beta, C,
                  C.strides[0] // isz)

    return prod


def loops(case):
    fn = {"nt": rt.gemm_nt, "nn": rt.gemm_nn, "tn": rt.gemm_tn}[case]

    @njit(nogil=True)
    def prod(A, B, C, alpha, beta):
        fn(A, B, C, alpha, beta)

    return prod


def repeated(f):
    @njit(nogil=True)
    def run(reps, A, B, C):
        for _ in range(reps):
            f(A, B, C, 1e-9, 1.0)

    return run


def best_us(run, A, B, C, reps):
    run(2, A, B, C)
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        run(reps, A, B, C)
        times.append(time.perf_counter() - t0)
    return min(times) / reps * 1e6


def operands(case, M, N, K, dt, rng):
    if case == "nt":
        return rng.random((M, K)).astype(dt), rng.random((N, K)).astype(dt), np.zeros((M, N), dt)
    if case == "nn":
        return rng.random((M, K)).astype(dt), rng.random((K, N)).astype(dt), np.zeros((M, N), dt)
    return rng.random((M, K)).astype(dt), rng.random((M, N)).astype(dt), np.zeros((K, N), dt)


def main(dtypes):
    rng = np.random.default_rng(0)
    print("dtype case M N K  flop  blas_us gen_us rtloop_us gen/blas")
    for name in dtypes:
        dt = np.dtype(name).type
        for case, shapes in _SHAPES.items():
            by_blas, by_loops = repeated(blas(case)), repeated(loops(case))
            for M, N, K in shapes:
                A, B, C = operands(case, M, N, K, dt, rng)
                flop = 2 * M * N * K
                reps = max(20, int(2e7 / flop))
                tb = best_us(by_blas, A, B, C, reps)
                tg = best_us(repeated(generated(case, N, K, dt)), A, B, C, reps)
                tr = best_us(by_loops, A, B, C, reps) if flop // 2 <= rt.SMALL_GEMM else float("nan")
                print(f"{name} {case} {M} {N} {K} {flop} {tb:.3f} {tg:.3f} {tr:.3f} {tg / tb:.2f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["float32", "float64"])
