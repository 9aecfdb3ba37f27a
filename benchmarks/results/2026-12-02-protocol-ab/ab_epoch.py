import json
import sys
import time

import numpy as np

import symbp as sb

data = sb.data.load_mnist(data_dir="/work/shared/data")
X, y = data.train
Y = np.eye(10)[y]
X = np.ascontiguousarray(X, dtype=np.float64)
Y = np.ascontiguousarray(Y, dtype=np.float64)
layers = json.loads(sys.argv[1])
t0 = time.perf_counter()
m = sb.Network(layers, activation=sb.sigmoid, cost=sb.quadratic).compile(seed=0)
comp = time.perf_counter() - t0
rng = np.random.default_rng(0)
ts = []
for _ in range(6):
    order = rng.permutation(X.shape[0]).astype(np.int64)
    t = time.perf_counter()
    m.run_epoch(X, Y, order, 10, 3.0)
    ts.append(time.perf_counter() - t)
print(json.dumps({"median": float(np.median(ts[1:])), "compile": comp}))
