"""col2im of dbl_conv's second layer (its Wᵀ·δ for 10 samples side by side, 500 × 640, into 10 × 20 × 12 × 12),
float32, µs per mini-batch of 10: the row-gathered form symbp generates (cur, copied from the generated kernel),
vector read-modify-writes of eight columns in two loop orders (vec qpi, vec pqi) and each input row summed in
twelve registers (acc).  Run: python col2im_forms.py"""
import numpy as np, time
from numba import njit
rng=np.random.default_rng(0)
dt=np.float32
dcol=rng.random((500,640)).astype(dt)
# current row-gathered (copy from generated)
import symbp as sb
LAYERS = [sb.Input((1, 28, 28)), sb.Conv2D(20, 5, activation=sb.sigmoid), sb.MaxPool(2),
          sb.Conv2D(40, 5, activation=sb.sigmoid), sb.MaxPool(2), sb.Dense(100, sb.sigmoid),
          sb.Dense(10, sb.softmax)]
src_cur = sb.Network(LAYERS, cost=sb.log_likelihood).compile(dtype="float32", seed=0).source("sgd_epoch").splitlines()
i0 = next(i for i,l in enumerate(src_cur) if '_g3 = delta2[_r0 + _s]' in l)
body = src_cur[i0+1:i0+20]
code = "def cur(dcol_z3, delta2):\n    for _s in range(10):\n        _g3 = delta2[_s]\n" + "\n".join("    "+l[12:] for l in body) + "\n"
ns={}; exec(code, ns); cur = njit(ns['cur'])
def gen_vec(order):
    L=["def vec(dcol, delta2):","    for _s in range(10):","        _g3 = delta2[_s]","        _g3[...] = 0.0","        for _c in range(20):"]
    if order=="qpi":
        L+=["            for _q in range(5):","                for _p in range(5):","                    _row = (_c * 5 + _p) * 5 + _q","                    for _i in range(8):"]
    else:
        L+=["            for _p in range(5):","                for _q in range(5):","                    _row = (_c * 5 + _p) * 5 + _q","                    for _i in range(8):"]
    ind="                        "
    L+=[ind+"_y = _i + _p", ind+"_o = _s * 64 + _i * 8"]
    L+=[ind+f"_t{k} = dcol[_row, _o + {k}]" for k in range(8)]
    L+=[ind+f"_u{k} = _g3[_c, _y, _q + {k}]" for k in range(8)]
    L+=[ind+f"_g3[_c, _y, _q + {k}] = _u{k} + _t{k}" for k in range(8)]
    ns={}; exec("\n".join(L)+"\n", ns); return njit(ns['vec'])
vq=gen_vec("qpi"); vp=gen_vec("pqi")
g0=np.zeros((10,20,12,12),dt); g1=g0.copy(); g2=g0.copy()
cur(dcol,g0); vq(dcol,g1); vp(dcol,g2)
print(abs(g0-g1).max(), abs(g0-g2).max())
for name,f,g in (("cur",cur,g0),("vec qpi",vq,g1),("vec pqi",vp,g2)):
    ts=[]
    for _ in range(7):
        t=time.perf_counter()
        for _ in range(300): f(dcol,g)
        ts.append((time.perf_counter()-t)/300*1e6)
    print(name, "%.1f us per mb of 10"%min(ts))
def gen_acc():
    L=["def acc(dcol, delta2):","    for _s in range(10):","        _g3 = delta2[_s]","        for _c in range(20):","            for _y in range(12):"]
    ind="                "
    L+=[ind+f"_a{x} = np.float32(0.0)" for x in range(12)]
    L+=[ind+"for _p in range(max(0, _y - 7), min(5, _y + 1)):", ind+"    _o = _s * 64 + (_y - _p) * 8", ind+"    _row0 = (_c * 5 + _p) * 5"]
    for x in range(12):
        terms=[f"dcol[_row0 + {q}, _o + {x-q}]" for q in range(5) if 0<=x-q<8]
        L.append(ind+f"    _a{x} += " + " + ".join(terms))
    L+=[ind+f"_g3[_c, _y, {x}] = _a{x}" for x in range(12)]
    ns={"np":np}; exec("\n".join(L)+"\n", ns); return njit(ns['acc'])
va=gen_acc(); g3=np.zeros((10,20,12,12),dt); va(dcol,g3); print(abs(g0-g3).max())
ts=[]
for _ in range(7):
    t=time.perf_counter()
    for _ in range(300): va(dcol,g3)
    ts.append((time.perf_counter()-t)/300*1e6)
print("acc", "%.1f us per mb of 10"%min(ts))
