"""A cold start as ``symbp train`` makes it: import symbp, compile a network, prepare the update kernel, forward
and cost, run one epoch on 200 rows; prints the seconds since the process started.

usage: python cold.py ch1|basic_conv   (give it empty SYMBP_CACHE_DIR and NUMBA_CACHE_DIR folders)
"""

import os
import sys
import time

t0 = time.perf_counter()

import numpy as np  # noqa: E402

import symbp as sb  # noqa: E402

NETS = {
    "ch1": lambda: sb.Network([784, 30, 10], activation=sb.sigmoid, cost=sb.quadratic),
    "basic_conv": lambda: sb.Network([sb.Input((1, 28, 28)), sb.Conv2D(20, (5, 5), sb.sigmoid), sb.MaxPool((2, 2)),
                                      sb.Dense(100, sb.sigmoid), sb.Dense(10, sb.softmax)], cost=sb.log_likelihood),
}
model = NETS[sys.argv[1]]().compile(dtype="float64", seed=0)
model.prepare("sgd_epoch", "forward", "cost")
X = np.random.default_rng(0).random((200, 784))
Y = np.eye(10)[np.arange(200) % 10]
model.run_epoch(X, Y, np.arange(200), 10, 0.1)
workers = os.environ.get("SYMBP_COMPILE_WORKERS", "auto")
print(f"{sys.argv[1]} workers={workers} total {time.perf_counter() - t0:.2f} s hit={model.cache_info.get('hit')}")
