"""dbl_conv's SGD epoch, the built-ins' own kinds (before) against the built-ins as declarations (after).

Run from a checkout: ``python ab.py`` prints the median of five epochs over 5,000 MNIST training images
(float32, mini-batch 10, η 0.1, one BLAS thread) after one warm-up epoch.  run.sh runs it in the old and the
new checkout in turn, three pairs.
"""

import os
import statistics
import sys
import time

import numpy as np

import symbp as sb

net = sb.Network([sb.Input((1, 28, 28)), sb.Conv2D(20, (5, 5), sb.sigmoid), sb.MaxPool((2, 2)),
                  sb.Conv2D(40, (5, 5), sb.sigmoid), sb.MaxPool((2, 2)), sb.Dense(100, sb.sigmoid),
                  sb.Dense(10, sb.softmax)], cost=sb.log_likelihood)
model = net.compile(dtype="float32", seed=1)
data = sb.data.load_mnist(os.environ["SYMBP_DATA_DIR"])
n = 5000
X = np.ascontiguousarray(data.train.X[:n], dtype=np.float32)
Y = np.eye(10, dtype=np.float32)[data.train.labels[:n]]
order = np.random.default_rng(0).permutation(n)
model.run_epoch(X, Y, order, 10, 0.1)
times = []
for _ in range(5):
    t = time.perf_counter()
    model.run_epoch(X, Y, order, 10, 0.1)
    times.append(time.perf_counter() - t)
print(f"{sys.argv[1] if len(sys.argv) > 1 else 'this'} median {statistics.median(times):.4f} s "
      f"min {min(times):.4f} s")
