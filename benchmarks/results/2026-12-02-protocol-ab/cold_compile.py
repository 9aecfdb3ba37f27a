import json
import sys
import time

import symbp as sb

layers = json.loads(sys.argv[1])
t0 = time.perf_counter()
m = sb.Network(layers, activation=sb.sigmoid, cost=sb.quadratic).compile(seed=0)
print(round(time.perf_counter() - t0, 2))
