"""Tests of load_mnist / load_fashion_mnist / load_dataset: the split, dtypes, read-only arrays, lookup order.

The network is never used here: ``SYMBP_MIRRORS`` points at a closed local port (see ``test_download.py``
for the downloads).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

import symbp.data.download as download_mod
from symbp.data import (
    DATASETS,
    DatasetNotFoundError,
    Splits,
    cache_root,
    clear_cache,
    dataset_cache_dir,
    load_dataset,
    load_fashion_mnist,
    load_mnist,
    locate_dataset,
    read_idx,
)

LOADERS = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No user data folder, a private cache root, and no reachable mirror."""
    monkeypatch.delenv("SYMBP_DATA_DIR", raising=False)
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SYMBP_MIRRORS", closed_port_url())


def source(data_dir: Path, name: str) -> Path:
    folder = data_dir / name
    if not all((folder / f).is_file() for f in DATASETS[name].filenames):
        pytest.skip(f"{name} files not found in {data_dir}")
    return folder


def link_files(src: Path, dst: Path) -> Path:
    """Put the dataset files of ``src`` into ``dst`` (symlinks; copies where links are not allowed)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.gz"):
        try:
            os.symlink(f, dst / f.name)
        except OSError:
            shutil.copy(f, dst / f.name)
    return dst


# --- the split --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_split_sizes_dtype_ranges(data_dir, name):
    folder = source(data_dir, name)
    splits = LOADERS[name](data_dir=data_dir)
    assert isinstance(splits, Splits)
    train, validation, test = splits
    for part, n in ((train, 50000), (validation, 10000), (test, 10000)):
        X, labels = part
        assert X.shape == (n, 784) and X.dtype == np.float64
        assert labels.shape == (n,) and labels.dtype == np.int64
        assert X.min() == 0.0 and X.max() == 1.0
        assert set(np.unique(labels)) == set(range(10))
    # Nielsen's split: train = first 50,000 of the training file, validation = its last 10,000.
    raw_y = read_idx(folder / "train-labels-idx1-ubyte.gz")
    assert np.array_equal(np.concatenate([train.labels, validation.labels]), raw_y)
    assert np.array_equal(test.labels, read_idx(folder / "t10k-labels-idx1-ubyte.gz"))
    if name == "mnist":  # pixels too (np.array_equal: np.testing is slow on millions of elements)
        raw_x = read_idx(folder / "train-images-idx3-ubyte.gz").reshape(60000, 784)
        assert np.array_equal(validation.X, raw_x[50000:] / 255.0)
        assert np.array_equal(train.X[:2000], raw_x[:2000] / 255.0)


@pytest.mark.parametrize("dtype", ["float32", np.float32, np.dtype("float32")])
def test_float32(data_dir, dtype):
    source(data_dir, "mnist")
    splits = load_mnist(data_dir, dtype=dtype)
    f64 = load_mnist(data_dir)
    for part, ref in zip(splits, f64, strict=True):
        assert part.X.dtype == np.float32
        assert part.X.max() == 1.0 and part.X.min() == 0.0
        # float32(p / 255) computed in float32 is exactly float64(p / 255) rounded to float32.
        assert np.array_equal(part.X[:5000], ref.X[:5000].astype(np.float32))
        np.testing.assert_array_equal(part.labels, ref.labels)


@pytest.mark.parametrize("dtype", ["int32", "float16", "nonsense", None])
def test_bad_dtype(dtype):
    with pytest.raises(ValueError, match="dtype"):
        load_mnist(dtype=dtype)


def test_load_dataset_names(data_dir):
    source(data_dir, "mnist")
    a = load_dataset("mnist", data_dir)
    assert load_dataset("MNIST", data_dir) is a
    assert load_mnist(data_dir) is a
    with pytest.raises(ValueError, match="fashion-mnist"):
        load_dataset("cifar10", data_dir)


def test_read_only_and_cached(data_dir):
    source(data_dir, "mnist")
    splits = load_mnist(data_dir)
    assert load_mnist(data_dir) is splits
    for part in splits:
        for arr in part:
            assert not arr.flags.writeable
            with pytest.raises(ValueError):
                arr[0] = 0
            with pytest.raises(ValueError):  # a view of a read-only array cannot be made writeable
                arr.flags.writeable = True
    assert "float64[50000, 784]" in repr(splits.train)
    private = splits.test.X.copy()
    private *= 2  # copies are the caller's
    assert private.max() == 2.0 and splits.test.X.max() == 1.0


def test_clear_cache(data_dir):
    source(data_dir, "mnist")
    a = load_mnist(data_dir, dtype="float32")
    clear_cache()
    b = load_mnist(data_dir, dtype="float32")
    assert a is not b
    assert np.array_equal(a.test.X, b.test.X)


# --- where the files are looked for -----------------------------------------------------------


def test_data_dir_direct_or_parent(data_dir, tmp_path):
    src = source(data_dir, "mnist")
    direct = link_files(src, tmp_path / "direct")
    assert locate_dataset("mnist", direct)["test_labels"] == direct / "t10k-labels-idx1-ubyte.gz"
    parent = tmp_path / "parent"
    link_files(src, parent / "mnist")
    assert locate_dataset("mnist", parent)["train_images"] == parent / "mnist" / "train-images-idx3-ubyte.gz"
    assert load_mnist(str(parent)).test.X.shape == (10000, 784)


def test_env_data_dir(data_dir, tmp_path, monkeypatch):
    src = source(data_dir, "mnist")
    env = tmp_path / "env"
    link_files(src, env / "mnist")
    monkeypatch.setenv("SYMBP_DATA_DIR", str(env))
    assert locate_dataset("mnist", download=False)["train_labels"].parent == env / "mnist"
    assert load_mnist(download=False).validation.X.shape == (10000, 784)


def test_cache_dir_env(data_dir, tmp_path):
    src = source(data_dir, "mnist")
    assert cache_root() == tmp_path / "cache"
    cache = dataset_cache_dir("mnist")
    assert cache == tmp_path / "cache" / "datasets" / "mnist"
    link_files(src, cache)
    assert locate_dataset("mnist", download=False)["test_images"].parent == cache
    assert load_mnist(download=False).train.X.shape == (50000, 784)


def test_cache_dir_platformdirs(data_dir, tmp_path, monkeypatch):
    src = source(data_dir, "mnist")
    monkeypatch.delenv("SYMBP_CACHE_DIR")
    monkeypatch.setattr(download_mod.platformdirs, "user_cache_dir", lambda app: str(tmp_path / "pd" / app))
    assert cache_root() == tmp_path / "pd" / "symbp"
    link_files(src, tmp_path / "pd" / "symbp" / "datasets" / "mnist")
    assert locate_dataset("mnist", download=False)["test_labels"].parent == dataset_cache_dir("mnist")


def test_lookup_order(data_dir, tmp_path, monkeypatch):
    src = source(data_dir, "mnist")
    arg, env = tmp_path / "arg", tmp_path / "env"
    link_files(src, arg / "mnist")
    link_files(src, env / "mnist")
    link_files(src, dataset_cache_dir("mnist"))
    monkeypatch.setenv("SYMBP_DATA_DIR", str(env))
    assert locate_dataset("mnist", arg)["train_images"].parent == arg / "mnist"
    # An incomplete data_dir is passed over, then SYMBP_DATA_DIR wins over the cache.
    (tmp_path / "partial").mkdir()
    shutil.copy(src / "t10k-labels-idx1-ubyte.gz", tmp_path / "partial")
    assert locate_dataset("mnist", tmp_path / "partial")["train_images"].parent == env / "mnist"
    monkeypatch.setenv("SYMBP_DATA_DIR", str(tmp_path / "nothing-here"))
    assert locate_dataset("mnist", tmp_path / "nothing-here")["train_images"].parent == dataset_cache_dir(
        "mnist"
    )


def test_bad_checksum_in_user_folder(data_dir, tmp_path):
    src = source(data_dir, "mnist")
    folder = link_files(src, tmp_path / "user")
    bad = folder / "t10k-labels-idx1-ubyte.gz"
    bad.unlink()
    content = bytearray((src / bad.name).read_bytes())
    content[-1] ^= 0xFF
    bad.write_bytes(bytes(content))
    with pytest.raises(ValueError, match="checksum mismatch") as info:
        load_mnist(folder)
    assert str(bad) in str(info.value)
    assert DATASETS["mnist"].file(bad.name).sha256 in str(info.value)


def test_wrong_dataset_in_data_dir(data_dir):
    source(data_dir, "fashion-mnist")
    with pytest.raises(ValueError, match="checksum mismatch"):
        locate_dataset("mnist", data_dir / "fashion-mnist")


def test_not_found_without_download(tmp_path):
    cache = dataset_cache_dir("mnist")
    cache.mkdir(parents=True)
    (cache / "train-labels-idx1-ubyte.gz").write_bytes(b"not the file")
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path / "mine", download=False)
    assert isinstance(info.value, FileNotFoundError)
    msg = str(info.value)
    for expected in (
        str(tmp_path / "mine"),
        str(tmp_path / "mine" / "mnist"),
        str(cache),
        "SYMBP_DATA_DIR",
        "data_dir",
        "--data-dir",
        "train-labels-idx1-ubyte.gz (bad checksum)",
        "download=False",
    ):
        assert expected in msg
