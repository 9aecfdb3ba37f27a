"""``python -m symbp.bench``: the benchmark command line (see ``symbp.bench.harness.build_parser``)."""

import sys

from symbp.bench.harness import main

sys.exit(main())
