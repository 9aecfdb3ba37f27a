"""Chapter 6 reproductions (book protocol: mini-batch 10, float32, test accuracy at the epoch of best validation
accuracy).  Usage: python run.py NAME EPOCHS [DATA_DIR] [SEED]; writes NAME.json and NAME.log beside this file
(NAME-seedS.* for a seed other than 0: the book's best of three runs)."""
import json
import sys
import time
from pathlib import Path

import numpy as np

import symbp as sb

NETS = {
    "shallow": (lambda: [sb.Input(784), sb.Dense(100, sb.sigmoid), sb.Dense(10, sb.softmax)], 0.1, 0.0),
    "basic_conv": (lambda: [sb.Input((1, 28, 28)), sb.Conv2D(20, (5, 5), sb.sigmoid), sb.MaxPool((2, 2)),
                            sb.Dense(100, sb.sigmoid), sb.Dense(10, sb.softmax)], 0.1, 0.0),
    "dbl_conv": (lambda: [sb.Input((1, 28, 28)), sb.Conv2D(20, (5, 5), sb.sigmoid), sb.MaxPool((2, 2)),
                          sb.Conv2D(40, (5, 5), sb.sigmoid), sb.MaxPool((2, 2)),
                          sb.Dense(100, sb.sigmoid), sb.Dense(10, sb.softmax)], 0.1, 0.0),
    # the book's λ = 0.1 is network3's (0.5·λ·Σw²/num_training_batches): symbp's λ = 0.1 × mini-batch size 10
    "dbl_conv_relu": (lambda: [sb.Input((1, 28, 28)), sb.Conv2D(20, (5, 5), sb.relu), sb.MaxPool((2, 2)),
                               sb.Conv2D(40, (5, 5), sb.relu), sb.MaxPool((2, 2)),
                               sb.Dense(100, sb.relu), sb.Dense(10, sb.softmax)], 0.03, 1.0),
}
# the book's expanded-data nets train on the 250,000 images of expand_mnist (each image and its four shifts)
NETS["expanded_data"] = NETS["dbl_conv_relu"]
NETS["double_fc_dropout"] = (lambda: [sb.Input((1, 28, 28)), sb.Conv2D(20, (5, 5), sb.relu), sb.MaxPool((2, 2)),
                                      sb.Conv2D(40, (5, 5), sb.relu), sb.MaxPool((2, 2)),
                                      sb.Dense(1000, sb.relu), sb.Dropout(0.5), sb.Dense(1000, sb.relu),
                                      sb.Dropout(0.5), sb.Dense(10, sb.softmax)], 0.03, 0.0)
EXPANDED = ("expanded_data", "double_fc_dropout")

name, epochs = sys.argv[1], int(sys.argv[2])
data_dir = sys.argv[3] if len(sys.argv) > 3 else None
seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
layers, eta, lmbda = NETS[name]
out = Path(__file__).with_name(name + (f"-seed{seed}" if seed else ""))
data = sb.data.load_mnist(data_dir=data_dir, dtype="float32")
train = sb.data.expand_mnist(data.train) if name in EXPANDED else data.train
net = sb.Network(layers(), cost=sb.log_likelihood)
t0 = time.perf_counter()
model = net.compile(dtype="float32", seed=seed)
compile_s = time.perf_counter() - t0
tests = []
log = open(f"{out}.log", "w")  # noqa: SIM115 - written by the callback during fit


def report(epoch, hist):
    tests.append(model.evaluate(data.test))
    line = (f"epoch {epoch}: validation {hist.evaluation_accuracy[-1]:.2%}, test {tests[-1]:.2%}, "
            f"{hist.epoch_seconds[-1]:.1f} s")
    print(line, file=log, flush=True)


hist = model.fit(train, epochs=epochs, batch_size=10, eta=eta, lmbda=lmbda, evaluation_data=data.validation,
                 seed=seed, progress=False, callback=report)
best = int(np.argmax(hist.evaluation_accuracy))
result = {"net": name, "network": repr(net), "training_images": len(train[1]), "epochs": epochs, "eta": eta,
          "lmbda": lmbda, "batch_size": 10,
          "dtype": "float32", "seed": seed, "compile_s": compile_s, "best_epoch": best + 1,
          "best_validation": hist.evaluation_accuracy[best], "test_at_best_validation": tests[best],
          "validation": hist.evaluation_accuracy, "test": tests, "epoch_seconds": hist.epoch_seconds}
Path(f"{out}.json").write_text(json.dumps(result, indent=1))
print(f"{name}: test {tests[best]:.2%} at epoch {best + 1} (best validation {hist.evaluation_accuracy[best]:.2%}); "
      f"{np.median(hist.epoch_seconds):.1f} s/epoch", file=log, flush=True)
