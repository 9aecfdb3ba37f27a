# dbl_conv layer 2 (40 maps, 501 patch rows incl. the ones row, 8x8 positions), mini-batch 10, NumPy/OpenBLAS, one
# thread: each product per sample (per, fper) against the 10 samples side by side (grp, fgrp); fgrpv: per sample
# from the side-by-side layout.  Run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 python products.py
import numpy as np, time
rng=np.random.default_rng(0)
for dt in (np.float32, np.float64):
    m,K,F,n=10,501,40,64
    cols=rng.random((m,K,n)).astype(dt); d=rng.random((m,F,n)).astype(dt)
    colsg=np.ascontiguousarray(cols.transpose(1,0,2).reshape(K,m*n)); dg=np.ascontiguousarray(d.transpose(1,0,2).reshape(F,m*n))
    S=np.zeros((K,F),dt); zg=np.zeros((F,m*n),dt); W=rng.random((F,K)).astype(dt); z=np.zeros((F,n),dt)
    def per():
        for r in range(m):
            S[...] += cols[r]@d[r].T
    def grp():
        np.matmul(colsg, dg.T, out=S)
    def fper():
        for r in range(m): np.matmul(W, cols[r], out=z)
    def fgrp():
        np.matmul(W, colsg, out=zg)
    def fgrpv():
        for r in range(m): np.matmul(W, colsg[:, r*n:(r+1)*n], out=z)
    for f in (per,grp,fper,fgrp,fgrpv):
        f(); ts=[]
        for _ in range(7):
            t=time.perf_counter()
            for _ in range(200): f()
            ts.append((time.perf_counter()-t)/200*1e6)
        print(dt.__name__, f.__name__, "%.1f us"%min(ts))
