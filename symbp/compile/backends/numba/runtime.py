"""Runtime helpers that generated numba kernels call: BLAS ``?gemm`` and stable scalar functions.

Takes: nothing at import but scipy's BLAS (and the name of the core its OpenBLAS runs).  Gives:
``gemm_nt``/``gemm_nn``/``gemm_tn`` (row-major C = α·op(A)·op(B) + β·C on 2-d arrays through scipy's
``dgemm``/``sgemm``, the smallest forward products as plain loops), ``batch_nt``/``batch_nn``/``batch_tn``
(the same for the dense layers' mini-batch products, cut into row chunks where the BLAS has a small-matrix
path: ``set_small_path``), ``sigmoid``/``softplus`` in overflow-free forms, ``aligned_zeros``, the dropout
masks' ``stream_key``/``uniform`` (``symbp.compile.backends.masks``, compiled) and a convolution's BP4 + BP3
(``conv_weights``, ``conv_weights_bias``, ``conv_weights_grouped``).

BLAS is reached through symbols registered with LLVM by name (``symbp_dgemm``/``symbp_sgemm``), not
through addresses baked into the compiled code, so kernels that call it can be cached on disk by numba
and reloaded in another process (the address differs per process; the name does not).  This module
must be imported before a cached kernel is loaded: generated modules import it first.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import math
import os

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic, overload

from symbp.compile.backends import masks
from symbp.compile.backends.host import ALIGN, aligned_copy  # noqa: F401  (re-exported)

#: Forward products z = a·Wᵀ (``gemm_nt``) with at most this many multiply-adds run as plain loops; every
#: other product calls ?gemm.  Measured per transpose case and dtype (``benchmarks/results/
#: 2026-12-07-small-products``), Zen 5 with OpenBLAS's own kernels: ?gemm beat these loops, and loops with
#: the extents as constants, from between 300 and 1,000 multiply-adds up (at 3,000: 0.1–0.34 µs against
#: 0.33–0.83 µs); at 300 the loops still won the 10×30 forward product (0.13 against 0.13–0.19 µs) but lost
#: δ·W and δᵀa (0.10 against 0.03–0.08 µs).  4,096 for every case (set on Zen 3) made the ch.1 epoch at
#: mini-batch 10 11% slower in float32, 6% in float64; loops in δ·W and δᵀa made it 2–4% slower at mini-batch 1.
SMALL_GEMM = 512

_SYMBOLS = {}
for _kind, _name in (("d", "dgemm"), ("s", "sgemm")):
    _addr = get_cython_function_address("scipy.linalg.cython_blas", _name)
    llvm.add_symbol(f"symbp_{_name}", _addr)
    _SYMBOLS[_kind] = f"symbp_{_name}"


@intrinsic
def _xgemm(typingctx, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
    """Fortran ?gemm on raw array data: all scalars passed by reference, as BLAS wants."""
    dtype = C.dtype
    if dtype not in (types.float64, types.float32) or A.dtype != dtype or B.dtype != dtype:
        return None
    sym = _SYMBOLS["d" if dtype == types.float64 else "s"]
    sig = types.void(transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)

    def codegen(context, builder, signature, args):
        ta, tb, m_, n_, k_, al, a_arr, lda_, b_arr, ldb_, be, c_arr, ldc_ = args
        fty = context.get_value_type(dtype)
        i8, i32 = ir.IntType(8), ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8.as_pointer()] * 2 + [i32.as_pointer()] * 3
                               + [fty.as_pointer(), fty.as_pointer(), i32.as_pointer(), fty.as_pointer(),
                                  i32.as_pointer(), fty.as_pointer(), fty.as_pointer(), i32.as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, sym)

        def slot(val, ty):
            ptr = cgutils.alloca_once(builder, ty)
            builder.store(val, ptr)
            return ptr

        def as_i8(v):
            return slot(builder.trunc(v, i8), i8)

        def as_i32(v):
            return slot(builder.trunc(v, i32), i32)

        def as_f(v, vty):
            return slot(context.cast(builder, v, vty, dtype), fty)

        def data(arr, aty):
            return context.make_array(aty)(context, builder, arr).data

        builder.call(fn, [
            as_i8(ta), as_i8(tb), as_i32(m_), as_i32(n_), as_i32(k_), as_f(al, signature.args[5]),
            data(a_arr, signature.args[6]), as_i32(lda_), data(b_arr, signature.args[8]), as_i32(ldb_),
            as_f(be, signature.args[10]), data(c_arr, signature.args[11]), as_i32(ldc_),
        ])
        return context.get_dummy_value()

    return sig, codegen


_N, _T = ord("N"), ord("T")

#: OpenBLAS cores whose small-matrix kernels run products of up to about a million multiply-adds in one pass,
#: without packing (``benchmarks/results/2026-12-07-small-products``: row_chunks).
_SMALL_MATRIX_CORES = {"skylakex", "cooperlake", "sapphirerapids"}
#: Multiply-adds per call below which this process's BLAS takes its small-matrix path (0: none known).  Read by
#: the kernels at run time through the LLVM symbol ``symbp_small_path`` (so cached kernels follow the BLAS core
#: of the process that runs them, ``OPENBLAS_CORETYPE`` included); ``$SYMBP_SMALL_PATH`` overrides it.
_SMALL_PATH = ctypes.c_int64(0)
llvm.add_symbol("symbp_small_path", ctypes.addressof(_SMALL_PATH))


def _openblas_core() -> str:
    """The core SciPy's bundled OpenBLAS runs (``scipy_openblas_get_corename``), found without importing SciPy;
    "" where SciPy's BLAS is not laid out that way."""
    try:
        spec = importlib.util.find_spec("scipy")
        if spec is None or not spec.submodule_search_locations:
            return ""
        root = os.path.dirname(next(iter(spec.submodule_search_locations)))
        libs = sorted(glob.glob(os.path.join(root, "scipy.libs", "libscipy_openblas*")))
        if len(libs) != 1:
            return ""
        get = ctypes.CDLL(libs[0]).scipy_openblas_get_corename
        get.restype = ctypes.c_char_p
        return (get() or b"").decode("ascii", "replace").strip().lower()
    except (OSError, AttributeError, ValueError, ImportError):
        return ""


def set_small_path(multiply_adds: int) -> None:
    """Set how many multiply-adds per call this process's BLAS runs on its small-matrix path (0: off): the
    mini-batch products (``batch_nt``/``batch_nn``/``batch_tn``) are cut into row chunks of at most that."""
    _SMALL_PATH.value = max(0, int(multiply_adds))


def _default_small_path() -> int:
    env = os.environ.get("SYMBP_SMALL_PATH", "").strip()
    if env:
        try:
            return max(0, int(env))
        except ValueError:
            raise ValueError(f"SYMBP_SMALL_PATH must be a whole number of multiply-adds, got {env!r}") from None
    return 800_000 if _openblas_core() in _SMALL_MATRIX_CORES else 0


set_small_path(_default_small_path())


@intrinsic
def _small_path(typingctx):
    """The value of ``symbp_small_path`` now (a load from the symbol, not a constant compiled in)."""

    def codegen(context, builder, signature, args):
        gv = builder.module.globals.get("symbp_small_path")
        if gv is None:
            gv = ir.GlobalVariable(builder.module, ir.IntType(64), "symbp_small_path")
            gv.linkage = "external"
        return builder.load(gv)

    return types.int64(), codegen


@intrinsic
def like(typingctx, x, ref):
    """The scalar ``x`` converted to the type of the scalar ``ref`` (or to the dtype of the array ``ref``):
    float32 kernels then compute in float32 instead of promoting every operation to float64 and back."""
    target = ref.dtype if isinstance(ref, types.Array) else ref
    if isinstance(target, (types.Integer, types.Boolean)):
        target = types.float64  # integers compute in float64, as Python's arithmetic would
    if not isinstance(x, (types.Float, types.Integer)) or not isinstance(target, types.Float):
        return None

    def codegen(context, builder, signature, args):
        return context.cast(builder, args[0], x, target)

    return target(x, ref), codegen


@njit(cache=True, nogil=True)
def aligned_zeros1(n, dtype):
    """Zeros of shape (n,) starting on an ``ALIGN``-byte boundary.

    numba's ``np.zeros`` starts 32 bytes past one; measured on the ch.1 epoch, the layer-1 products ran up to
    40% slower on such buffers, every 64-byte load split across two cache lines."""
    raw = np.zeros(n + ALIGN, dtype=dtype)
    off = (-raw.ctypes.data % ALIGN) // raw.itemsize
    return raw[off:off + n]


@njit(cache=True, nogil=True)
def aligned_zeros(rows, cols, dtype):
    """Zeros of shape (rows, cols), C order, starting on an ``ALIGN``-byte boundary."""
    return aligned_zeros1(rows * cols, dtype).reshape((rows, cols))


def readonly(dtype, ndim: int):
    """The numba type of a read-only C-contiguous array (kernel inputs: X, Y, order)."""
    return types.Array(dtype, ndim, "C", readonly=True)


# One entry point per transpose case, chosen when the kernel is generated: each compiled kernel then carries
# only the code of the products it makes (a generic entry with four small-product branches made every
# kernel's LLVM module larger and its compile about 0.1 s slower); only the forward product keeps loops.
# Row-major C is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: BLAS gets the operands swapped and the flags kept.
# The small-product loops allow FMA contraction but not reassociation: with "reassoc" the summation order
# was the vectoriser's choice, which differed between numba's in-memory compile and the object code it
# caches, so a second process gave results a few ulp away from the first.


@njit(cache=True, nogil=True)
def _by_blas(ta, tb, A, B, C, alpha, beta, K, small):
    """Do the product here (True) unless it has at most ``small`` multiply-adds (False: the caller's loops).
    Empty products only scale C by β (BLAS would refuse a zero leading dimension)."""
    M, N = C.shape
    if M == 0 or N == 0:
        return True
    if K == 0:
        _scale(C, beta)
        return True
    if small >= M * N * K:  # at most `small` multiply-adds: the caller's loops
        return False
    isz = C.itemsize
    _xgemm(tb, ta, N, M, K, alpha, B, B.strides[0] // isz, A, A.strides[0] // isz, beta, C, C.strides[0] // isz)
    return True


@njit(cache=True, nogil=True)
def _scale(C, beta):
    """C ← β·C, with β = 0 writing zeros (whatever C held, NaN included), as BLAS does."""
    if beta == 0.0:
        C[:, :] = 0.0
    elif beta != 1.0:
        b = like(beta, C)
        for i in range(C.shape[0]):
            for j in range(C.shape[1]):
                C[i, j] *= b


@njit(cache=True, nogil=True, fastmath={"contract"})
def gemm_nt(A, B, C, alpha, beta):
    """C ← α·A·Bᵀ + β·C (the forward product z = a·Wᵀ).  Small products as dot products of rows."""
    M, N = C.shape
    K = A.shape[1]
    if _by_blas(_N, _T, A, B, C, alpha, beta, K, SMALL_GEMM):
        return
    _scale(C, beta)
    a = like(alpha, C)
    K4 = K - K % 4
    for i in range(M):
        for j in range(N):
            # four partial sums in a fixed order: independent chains for the CPU, and the same rounding
            # whatever the compiler makes of the loop (no reassociation is allowed: see above)
            s0 = s1 = s2 = s3 = like(0.0, C)
            for p in range(0, K4, 4):
                s0 += A[i, p] * B[j, p]
                s1 += A[i, p + 1] * B[j, p + 1]
                s2 += A[i, p + 2] * B[j, p + 2]
                s3 += A[i, p + 3] * B[j, p + 3]
            s = (s0 + s1) + (s2 + s3)
            for p in range(K4, K):
                s += A[i, p] * B[j, p]
            C[i, j] += a * s


@njit(cache=True, nogil=True)
def gemm_nn(A, B, C, alpha, beta):
    """C ← α·A·B + β·C (the input gradient δˡ⁻¹ = δˡ·Wˡ), through ?gemm at every size (see ``SMALL_GEMM``)."""
    _by_blas(_N, _N, A, B, C, alpha, beta, A.shape[1], 0)


@njit(cache=True, nogil=True)
def gemm_tn(A, B, C, alpha, beta):
    """C ← α·Aᵀ·B + β·C (the weight gradient δᵀa, or the update W ← β·W − (η/m)·δᵀa in one call), through
    ?gemm at every size (see ``SMALL_GEMM``)."""
    _by_blas(_T, _N, A, B, C, alpha, beta, A.shape[0], 0)


#: The fewest rows a chunk of a mini-batch product may have (smaller chunks lost more to the calls than the
#: small-matrix path gave: 10-row chunks of the 100 × 784 layer's update ran slower than one call).
MIN_CHUNK_ROWS = 16


@njit(cache=True, nogil=True)
def _rows_per_call(rows, per_row):
    """Rows per BLAS call for a product of ``rows`` × ``per_row`` multiply-adds: all of them, or equal chunks
    that stay on the small-matrix path (``symbp_small_path``) when the product is at least twice that path's
    size and the chunks have at least ``MIN_CHUNK_ROWS`` rows (a 100 × 100 × 100 product cut in two ran 2%
    slower than one call)."""
    limit = _small_path()
    total = rows * per_row
    if limit <= 0 or total < 2 * limit:
        return rows
    calls = (total + limit - 1) // limit
    chunk = (rows + calls - 1) // calls
    return chunk if chunk >= MIN_CHUNK_ROWS else rows


# The dense layers' products, whose rows (or, for the update, whose reduction) are the mini-batch: cut into
# row chunks where this BLAS runs small products faster than one large one.  Each output element's sum is the
# same one call computes for its row (nt, nn); the update adds its chunks' sums in order (tn).
# batch_nt and batch_nn differ only in the product they call: a shared helper taking the product as an argument
# (a first-class function) made every kernel that calls it uncacheable by numba, so they are written twice.
@njit(cache=True, nogil=True)
def batch_nt(A, B, C, alpha, beta):
    """``gemm_nt`` (z = a·Wᵀ) in row chunks (see ``_rows_per_call``)."""
    M = C.shape[0]
    R = _rows_per_call(M, C.shape[1] * A.shape[1])
    for i0 in range(0, max(M, 1), max(R, 1)):
        i1 = min(M, i0 + R)
        gemm_nt(A[i0:i1], B, C[i0:i1], alpha, beta)


@njit(cache=True, nogil=True)
def batch_nn(A, B, C, alpha, beta):
    """``gemm_nn`` (δˡ⁻¹ = δˡ·Wˡ) in row chunks (see ``_rows_per_call``)."""
    M = C.shape[0]
    R = _rows_per_call(M, C.shape[1] * A.shape[1])
    for i0 in range(0, max(M, 1), max(R, 1)):
        i1 = min(M, i0 + R)
        gemm_nn(A[i0:i1], B, C[i0:i1], alpha, beta)


@njit(cache=True, nogil=True)
def batch_tn(A, B, C, alpha, beta):
    """``gemm_tn`` (W ← β·W + α·δᵀa) with the mini-batch cut into chunks, added in order (see
    ``_rows_per_call``)."""
    K = A.shape[0]
    R = _rows_per_call(K, C.shape[0] * C.shape[1])
    for k0 in range(0, max(K, 1), max(R, 1)):
        k1 = min(K, k0 + R)
        gemm_tn(A[k0:k1], B[k0:k1], C, alpha, beta if k0 == 0 else 1.0)


@intrinsic
def _pow2(typingctx, n):
    """2ⁿ for a float32 holding an integer n in [−126, 127]: its exponent bits (n + 127) << 23, a bit cast."""
    if n != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        k = builder.fptosi(args[0], i32)
        bits = builder.shl(builder.add(k, ir.Constant(i32, 127)), ir.Constant(i32, 23))
        return builder.bitcast(bits, ir.FloatType())

    return types.float32(types.float32), codegen


def vexp(x):
    """eˣ.  In numba: float64 is ``math.exp``; float32 a branch-free Cody–Waite reduction and Cephes' degree-6
    polynomial (expf's, within 2 ulp on [−87.3, 88.4]; beyond, the argument is clamped there, so e⁻ˣ in a
    sigmoid never overflows), which the loop vectoriser turns into 8-wide AVX2 code: libm's expf is a call per
    element (about 6 ns here, most of a conv net's activation time).  NaN stays NaN."""
    return math.exp(x)


@overload(vexp, jit_options={"cache": True})
def _vexp(x):
    if x == types.float32:
        def exp32(x):
            t = min(max(x, np.float32(-87.33654)), np.float32(88.37626))
            fx = np.floor(t * np.float32(1.44269504088896341) + np.float32(0.5))
            r = t - fx * np.float32(0.693359375) + fx * np.float32(2.12194440e-4)
            p = np.float32(1.9875691500e-4)
            p = p * r + np.float32(1.3981999507e-3)
            p = p * r + np.float32(8.3334519073e-3)
            p = p * r + np.float32(4.1665795894e-2)
            p = p * r + np.float32(1.6666665459e-1)
            p = p * r + np.float32(5.0000001201e-1)
            y = p * r * r + r + np.float32(1.0)
            y = y * _pow2(fx)
            return y if x == x else x
        return exp32
    return lambda x: math.exp(x)


@njit(cache=True, nogil=True, error_model="numpy")
def sigmoid(x):
    """1/(1 + e⁻ˣ), branch-free: for x < −709, e⁻ˣ overflows to inf and the result is exactly 0 (the true
    value underflows there too), never NaN; elsewhere this form is accurate to a few ulp.  Branch-free
    code lets the compiler keep the elementwise loop tight.  Float32 in, float32 arithmetic, with ``vexp``
    (vectorised; its clamp gives 1/(1 + 2.4e38) ≈ 4e-39 instead of 0 below −88)."""
    one = like(1.0, x)
    return one / (one + vexp(-x))


@njit(cache=True, nogil=True)
def softplus(x):
    """log(1 + eˣ) = max(x, 0) + log1p(e^−|x|), exact for large |x|."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


# Dropout masks: the counter-based hash of ``symbp.compile.backends.masks``, compiled (the NumPy backend runs the
# same functions on arrays).
@overload(masks.mix, jit_options={"cache": True})
def _mix(h):
    return masks.mix  # the plain function, compiled where a kernel or the functions below call it


stream_key = njit(cache=True, nogil=True)(masks.stream_key)
uniform = njit(cache=True, nogil=True)(masks.uniform)


# BP4 of a convolution found by ``passes.correlations``: the sum over each sample's patches (the forward pass
# kept them, one (C·kh·kw) × (Ho·Wo) matrix per sample) as one gemm per sample, into the scratch Sᵀ = Σ_r colᵣ·δ[r]ᵀ
# (patches × maps): OpenBLAS's kernels take that orientation 1.3–1.7× faster than S = Σ_r δ[r]·colᵣᵀ for the conv
# nets' float32 layers (the same speed in float64), where both read the patches' rows contiguously.
@njit(cache=True, nogil=True)
def conv_weights(d4, cols, S, W4, alpha, beta):
    """W ← α·Σ_r δ[r]·colᵣᵀ + β·W (BP4 of a convolution: ∂C/∂W, or the SGD update with β = 1 − ηλ/n), through
    the scratch S (patches × maps); β = 0 writes α·Σ whatever W held."""
    F = W4.shape[0]
    K = S.shape[0]
    W2 = W4.reshape((F, K))
    if d4.shape[0] == 0:  # no samples: only the β term (α = −η/m may be infinite here)
        _scale(W2, beta)
        return
    n = d4.shape[2] * d4.shape[3]
    for r in range(d4.shape[0]):  # S ← Σ_r colᵣ·δ[r]ᵀ in sample order (a helper of its own: 0.24 s more compile)
        gemm_nt(cols[r], d4[r].reshape((F, n)), S, 1.0, 0.0 if r == 0 else 1.0)
    a, c = like(alpha, S), like(beta, S)
    for f in range(F):
        for k in range(K):
            W2[f, k] = a * S[k, f] + (c * W2[f, k] if beta != 0.0 else 0.0)


@njit(cache=True, nogil=True)
def conv_weights_bias(d4, cols, S, W4, alpha, beta, b, alpha_b, beta_b):
    """BP4 and BP3 of a convolution from one product per sample: W ← α·Σ_r δ[r]·colᵣᵀ + β·W and
    b[f] ← α_b·Σ_{r,k} δ[r,f,k] + β_b·b[f].  The patches ``cols`` carry a last row of ones (written here), so
    the last row of the scratch S = Σ_r colᵣ·δ[r]ᵀ (patches × maps) holds each map's sum, summed in the products'
    dtype and order as ∂C/∂W is (float32 models: in float32, like PyTorch's); β = 0 writes α·S whatever W
    held."""
    F = W4.shape[0]
    m = d4.shape[0]
    K = S.shape[0] - 1
    W2 = W4.reshape((F, K))
    if m == 0:  # no samples: only the β terms (α = −η/m may be infinite here)
        _scale(W2, beta)
        for f in range(F):
            b[f] = like(beta_b, S) * b[f] if beta_b != 0.0 else 0.0
        return
    n = d4.shape[2] * d4.shape[3]
    for r in range(m):
        cols[r, K, :] = 1.0
        gemm_nt(cols[r], d4[r].reshape((F, n)), S, 1.0, 0.0 if r == 0 else 1.0)
    a, c = like(alpha, S), like(beta, S)
    a_b, c_b = like(alpha_b, S), like(beta_b, S)
    for f in range(F):
        for k in range(K):
            W2[f, k] = a * S[k, f] + (c * W2[f, k] if beta != 0.0 else 0.0)
        b[f] = a_b * S[K, f] + (c_b * b[f] if beta_b != 0.0 else 0.0)


@njit(cache=True, nogil=True)
def conv_weights_grouped(d4, cols, dg, S, W4, alpha, beta, b, alpha_b, beta_b):
    """``conv_weights``/``conv_weights_bias`` over patches laid side by side: ``cols`` is patch rows × (samples ·
    positions), sample r's patches in columns r·n … (r+1)·n, and the δ of G = dg.shape[1] // n samples at a time
    are copied side by side into the scratch ``dg`` (maps × G·n), so S = Σ colsᵍ·dgᵍᵀ is one product per group
    of samples instead of one per sample.  ``b`` empty: no bias (S has no row of map sums); else ``cols`` has a
    last row of ones (written here) and S's last row holds each map's sum."""
    F = W4.shape[0]
    m = d4.shape[0]
    with_b = b.shape[0] > 0
    K = S.shape[0] - 1 if with_b else S.shape[0]
    W2 = W4.reshape((F, K))
    if m == 0:  # no samples: only the β terms (α = −η/m may be infinite here)
        _scale(W2, beta)
        for f in range(b.shape[0]):
            b[f] = like(beta_b, S) * b[f] if beta_b != 0.0 else 0.0
        return
    n = d4.shape[2] * d4.shape[3]
    G = dg.shape[1] // n
    if with_b:
        for k in range(m * n):
            cols[K, k] = 1.0
    for r0 in range(0, m, G):  # groups in sample order, each sample's sums in column order
        ng = min(G, m - r0)
        for s in range(ng):  # (loops: numba compiles slice assignment slowly)
            d2 = d4[r0 + s].reshape((F, n))
            for f in range(F):
                for k in range(n):
                    dg[f, s * n + k] = d2[f, k]
        gemm_nt(cols[:S.shape[0], r0 * n:(r0 + ng) * n], dg[:, :ng * n], S, 1.0, 0.0 if r0 == 0 else 1.0)
    a, c = like(alpha, S), like(beta, S)
    a_b, c_b = like(alpha_b, S), like(beta_b, S)
    for f in range(F):
        for k in range(K):
            W2[f, k] = a * S[k, f] + (c * W2[f, k] if beta != 0.0 else 0.0)
        if with_b:
            b[f] = a_b * S[K, f] + (c_b * b[f] if beta_b != 0.0 else 0.0)
