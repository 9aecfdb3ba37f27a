"""Benchmark suites for ``symbp.bench`` (``python -m symbp.bench --suite NAME``, ``symbp bench``).

Takes: nothing.  Gives: ``SUITES``, a dict of name -> ``symbp.bench.Suite``:
- ``quick``: seconds; proves the harness works end to end (CI); too small to judge speed.
- ``full``: Nielsen's ch.1 net [784,30,10] at mini-batch 10 (float64 and float32, quadratic and
  cross-entropy), the same net at mini-batch 100, a wider [784,100,10] and a deep [784,100,100,100,10] at
  mini-batch 10; all on MNIST's 50,000 training samples.  eta is the book's (3.0 quadratic, 0.5
  cross-entropy), lmbda 0.
- ``conv-quick``: the chapter-6 net ``dbl_conv`` (two conv-pool layers, sigmoid, softmax) at mini-batch 10 and
  100 on a few hundred images, one repeat: proves the conv cases run end to end (CI); not for speed.
- ``conv``: ``dbl_conv`` at mini-batch 10 and 100, float32, on MNIST's 50,000 training images (η 0.1, the
  book's), and ``modern`` (conv 16@3×3 padding 1, conv 32@3×3 stride 2 padding 1 twice, a global average pool,
  softmax 10; ReLU; η 0.02) at mini-batch 10, 3 repeats; ``conv-basic`` adds ``basic_conv`` (one conv-pool
  layer) at both mini-batch sizes.
  ``--samples N`` (with ``--suite``, via ``samples=`` in the cases here) times fewer images and reports
  seconds per 50k scaled.
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
    "conv-quick": Suite(
        "conv-quick",
        (
            Case("dbl_conv-quick-m10", net="dbl_conv", batch_size=10, dtype="float32", samples=200, repeats=1),
            Case("dbl_conv-quick-m100", net="dbl_conv", batch_size=100, dtype="float32", samples=300, repeats=1),
            Case("modern-quick-m10", net="modern", batch_size=10, dtype="float32", eta=0.02, samples=200, repeats=1),
        ),
        description="dbl_conv on 200/300 images (mini-batch 10 and 100) and the modern net on 200, 1 repeat: proves "
        "the conv cases run.",
        quick=True,
    ),
    "conv": Suite(
        "conv",
        (
            Case("dbl_conv-m10-f32", net="dbl_conv", batch_size=10, dtype="float32", repeats=3),
            Case("dbl_conv-m100-f32", net="dbl_conv", batch_size=100, dtype="float32", repeats=3),
            Case("modern-m10-f32", net="modern", batch_size=10, dtype="float32", eta=0.02, repeats=3),
        ),
        description="Chapter 6's dbl_conv (conv 20x5x5, pool 2, conv 40x5x5, pool 2, fc 100, softmax 10; sigmoid) "
        "on MNIST, float32, mini-batch 10 and 100; the modern net (conv16x3x3p1, conv32x3x3s2p1, conv32x3x3s2p1, "
        "avgpool7, softmax10; ReLU) at mini-batch 10.",
    ),
    "conv-basic": Suite(
        "conv-basic",
        (
            Case("dbl_conv-m10-f32", net="dbl_conv", batch_size=10, dtype="float32", repeats=3),
            Case("dbl_conv-m100-f32", net="dbl_conv", batch_size=100, dtype="float32", repeats=3),
            Case("basic_conv-m10-f32", net="basic_conv", batch_size=10, dtype="float32", repeats=3),
            Case("basic_conv-m100-f32", net="basic_conv", batch_size=100, dtype="float32", repeats=3),
        ),
        description="Chapter 6's dbl_conv and basic_conv on MNIST, float32, mini-batch 10 and 100.",
    ),
}
