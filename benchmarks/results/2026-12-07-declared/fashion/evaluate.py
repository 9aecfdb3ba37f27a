"""Test accuracy of the models run.sh saved (the final epoch's parameters), as one JSON line per model.

    python evaluate.py MODEL[:DATASET] ...      (DATASET: mnist or fashion-mnist; SYMBP_DATA_DIR as for training)"""

import json
import sys

import symbp as sb

for arg in sys.argv[1:]:
    path, _, dataset = arg.partition(":")
    model = sb.load(path)
    splits = sb.data.load_mnist() if dataset in ("", "mnist") else sb.data.load_fashion_mnist()
    print(json.dumps({"model": path, "dataset": dataset or "mnist",
                      "test_accuracy": model.evaluate(splits.test, input_scale=splits.input_scale)}))
