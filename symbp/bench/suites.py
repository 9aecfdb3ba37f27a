"""Benchmark suites for ``symbp.bench`` (``python -m symbp.bench --suite NAME``, ``symbp bench``).

Takes: nothing.  Gives: ``SUITES``, a dict of name -> ``symbp.bench.Suite``:
- ``quick``: seconds; proves the harness works end to end (CI); too small to judge speed.
- ``full``: Nielsen's ch.1 net [784,30,10] at mini-batch 10 (float64 and float32, quadratic and
  cross-entropy), the same net at mini-batch 100, a wider [784,100,10] and a deep [784,100,100,100,10] at
  mini-batch 10; all on MNIST's 50,000 training samples.  eta is the book's (3.0 quadratic, 0.5
  cross-entropy), lmbda 0.
"""

from symbp.bench import Case, Suite

CH1 = (784, 30, 10)

SUITES = {
    "quick": Suite(
        "quick",
        (Case("ch1-quick", CH1, batch_size=10, samples=2000, repeats=2),),
        description="[784,30,10] on 2,000 samples, 2 repeats: proves the harness runs; not for speed.",
        quick=True,
    ),
    "full": Suite(
        "full",
        (
            Case("ch1-m10-f64", CH1, batch_size=10),
            Case("ch1-m10-f32", CH1, batch_size=10, dtype="float32"),
            Case("ch1-m10-f64-xent", CH1, batch_size=10, cost="cross-entropy", eta=0.5),
            Case("ch1-m100-f64", CH1, batch_size=100),
            Case("h100-m10-f64", (784, 100, 10), batch_size=10),
            Case("deep-m10-f64", (784, 100, 100, 100, 10), batch_size=10),
        ),
        description="Nielsen's networks on MNIST (50,000 samples): mini-batch, width, depth, dtype and cost.",
    ),
}
