"""Model files written before the layers became declarations (Conv2D, MaxPool, Dropout and Dense of the book,
with momentum velocities; a dense tanh net) still load, on both backends, and give the outputs they gave then.

The fixtures in ``fixtures/`` were written by symbp as it was before declared layers existed; the expected
outputs were computed by that version too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import symbp as sb

HERE = Path(__file__).resolve().parent / "fixtures"


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("name", ["conv", "dense"])
def test_old_model_files_load_and_give_the_same_outputs(name, backend):
    expected = np.load(HERE / "old_models_expected.npz", allow_pickle=False)
    model = sb.load(HERE / f"old_{name}_model", backend=backend)
    np.testing.assert_allclose(model.feedforward(expected[f"X_{name}"]), expected[f"out_{name}"], rtol=1e-12,
                               atol=1e-15)


def test_old_conv_model_keeps_its_layers_options_and_velocities(tmp_path):
    model = sb.load(HERE / "old_conv_model", backend="numpy")
    conv, pool = model.network.layers[1], model.network.layers[2]
    assert isinstance(conv, sb.Conv2D) and conv.plain and conv.stride == (1, 1) and conv.groups == 1
    assert isinstance(pool, sb.MaxPool) and pool.stride == pool.window
    model.save(tmp_path / "again")  # written again by this version: the same fields as the old file
    import json

    old = json.loads((HERE / "old_conv_model.json").read_text())
    new = json.loads((tmp_path / "again.json").read_text())
    assert [sorted(layer) for layer in new["layers"]] == [sorted(layer) for layer in old["layers"]]
    with np.load(HERE / "old_conv_model.npz", allow_pickle=False) as a, \
            np.load(tmp_path / "again.npz", allow_pickle=False) as b:
        assert sorted(a) == sorted(b) and any(k.startswith("v") for k in a)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
