import os, sys, time
t0 = time.perf_counter()
import numpy as np
import symbp as sb
net = {"ch1": lambda: sb.Network([784, 30, 10], activation=sb.sigmoid, cost=sb.quadratic),
       "basic_conv": lambda: sb.Network([sb.Input((1, 28, 28)), sb.Conv2D(20, (5, 5), sb.sigmoid), sb.MaxPool((2, 2)),
                                         sb.Dense(100, sb.sigmoid), sb.Dense(10, sb.softmax)], cost=sb.log_likelihood)}[sys.argv[1]]()
m = net.compile(dtype="float64", seed=0)
m.prepare("sgd_epoch", "forward", "cost")
X = np.random.default_rng(0).random((200, 784)); y = np.eye(10)[np.arange(200) % 10]
m.run_epoch(X, y, np.arange(200), 10, 0.1)
print(f"{sys.argv[1]} workers={os.environ.get('SYMBP_COMPILE_WORKERS', 'auto')} total {time.perf_counter() - t0:.2f} s hit={m.cache_info.get('hit')}")
