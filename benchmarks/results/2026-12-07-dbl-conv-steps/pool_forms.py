"""The window max of dbl_conv's first layer (10 × 20 × 24 × 24 → 12 × 12 with the argmax) and the scatter to its
maxima, float32, µs per mini-batch of 10: the generated forms (cur, scat) against selects instead of branches
(sel), a scatter that writes every element of a window once (scat2), and 32- or 8-bit argmaxes.
Run: python pool_forms.py"""
import numpy as np, time
from numba import njit
rng=np.random.default_rng(0)
dt=np.float32
m=10
src=rng.standard_normal((m,20,24,24)).astype(dt)
out=np.zeros((m,20,12,12),dt); arg=np.zeros((m,20,12,12),np.int64)
@njit
def cur(_src,_out,_arg):
    for r in range(_src.shape[0]):
        for c in range(20):
            for i in range(12):
                for j in range(12):
                    best = _src[r, c, i * 2, j * 2]
                    at = 0
                    for p in range(2):
                        for q in range(2):
                            v = _src[r, c, i * 2 + p, j * 2 + q]
                            if v > best:
                                best = v
                                at = p * 2 + q
                    _out[r, c, i, j] = best
                    _arg[r, c, i, j] = at
@njit
def sel(_src,_out,_arg):
    for r in range(_src.shape[0]):
        for c in range(20):
            for i in range(12):
                for j in range(12):
                    v0 = _src[r, c, i * 2, j * 2]
                    v1 = _src[r, c, i * 2, j * 2 + 1]
                    v2 = _src[r, c, i * 2 + 1, j * 2]
                    v3 = _src[r, c, i * 2 + 1, j * 2 + 1]
                    best = v0
                    at = 0
                    c1 = v1 > best
                    best = v1 if c1 else best
                    at = 1 if c1 else at
                    c2 = v2 > best
                    best = v2 if c2 else best
                    at = 2 if c2 else at
                    c3 = v3 > best
                    best = v3 if c3 else best
                    at = 3 if c3 else at
                    _out[r, c, i, j] = best
                    _arg[r, c, i, j] = at
g=rng.standard_normal((m,20,12,12)).astype(dt); dst=np.zeros((m,20,24,24),dt)
@njit
def scat(_dst,_g,_arg):
    _dst[...] = 0.0
    for r in range(_g.shape[0]):
        for c in range(20):
            for i in range(12):
                for j in range(12):
                    at = _arg[r, c, i, j]
                    _dst[r, c, i * 2 + at // 2, j * 2 + at % 2] = _g[r, c, i, j]
@njit
def scat2(_dst,_g,_arg):
    z = _g.dtype.type(0.0) if False else np.float32(0.0)
    for r in range(_g.shape[0]):
        for c in range(20):
            for i in range(12):
                for j in range(12):
                    at = _arg[r, c, i, j]
                    v = _g[r, c, i, j]
                    _dst[r, c, i * 2, j * 2] = v if at == 0 else z
                    _dst[r, c, i * 2, j * 2 + 1] = v if at == 1 else z
                    _dst[r, c, i * 2 + 1, j * 2] = v if at == 2 else z
                    _dst[r, c, i * 2 + 1, j * 2 + 1] = v if at == 3 else z
def t(name,f,*a):
    f(*a); ts=[]
    for _ in range(7):
        t0=time.perf_counter()
        for _ in range(300): f(*a)
        ts.append((time.perf_counter()-t0)/300*1e6)
    print(name,"%.1f us per mb"%min(ts))
o2=out.copy(); a2=arg.copy()
t("cur",cur,src,out,arg); t("sel",sel,src,o2,a2); print(np.array_equal(out,o2), np.array_equal(arg,a2))
d2=dst.copy()
t("scat",scat,dst,g,arg); t("scat2",scat2,d2,g,arg); print(np.array_equal(dst,d2))
for adt in (np.int32, np.int8):
    a3=np.zeros((m,20,12,12),adt)
    t("cur "+adt.__name__,cur,src,o2,a3)
    d3=dst.copy(); t("scat "+adt.__name__,scat,d3,g,a3)
