# dbl_conv layer 1 (20 maps, 26 patch rows incl. the ones row, 24x24 positions), mini-batch 10, NumPy/OpenBLAS, one
# thread: the weights product per sample (per, per2: two orientations) against the samples side by side (grp, grp2),
# the copy of delta that grouping needs, the forward product per sample (fper) against grouped (fgrp).
import numpy as np, time
rng=np.random.default_rng(0)
dt=np.float32
m,K,F,n=10,26,20,576
cols=rng.random((m,K,n)).astype(dt); d=rng.random((m,F,n)).astype(dt)
C=np.ascontiguousarray(cols.transpose(1,0,2).reshape(K,m*n)); D=np.ascontiguousarray(d.transpose(1,0,2).reshape(F,m*n))
S=np.zeros((K,F),dt); S2=np.zeros((F,K),dt); T=np.zeros((K,F),dt)
W=rng.random((F,K-1)).astype(dt); Z=np.zeros((F,m*n),dt); z=np.zeros((F,n),dt)
def per():
    for r in range(m):
        np.matmul(cols[r], d[r].T, out=T); S[...]+=T
def per2():
    for r in range(m):
        np.matmul(d[r], cols[r].T, out=S2)
def grp(): np.matmul(C, D.T, out=S)
def grp2(): np.matmul(D, C.T, out=S2)
def copy():
    for r in range(m): D[:, r*n:(r+1)*n] = d[r]
def fper():
    for r in range(m): np.matmul(W, cols[r][:25], out=z)
def fgrp(): np.matmul(W, C[:25], out=Z)
for f in (per,per2,grp,grp2,copy,fper,fgrp):
    f(); ts=[]
    for _ in range(7):
        t=time.perf_counter()
        for _ in range(300): f()
        ts.append((time.perf_counter()-t)/300*1e6)
    print(f.__name__, "%.1f us"%min(ts))
