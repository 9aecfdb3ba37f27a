"""The data stage of symbp: the MNIST and Fashion-MNIST datasets.

Takes: a dataset name and, optionally, a folder holding its original ``.gz`` IDX files.
Gives: ``Splits(train, validation, test)`` of read-only ``(X, labels)`` arrays (``load_mnist``,
``load_fashion_mnist``, ``load_dataset``), the book's expanded training set (``expand_mnist``: each image and
its four one-pixel shifts), the IDX reader/writer (``read_idx``, ``write_idx``) and the
verified downloader (``fetch_file``).  See ``symbp.data.datasets`` for where the files are looked for, and
``symbp.data.locations`` for the folders remembered once a command found a dataset (``symbp data``).
"""

from symbp.data.datasets import (
    DatasetNotFoundError,
    Split,
    Splits,
    clear_cache,
    load_dataset,
    load_fashion_mnist,
    load_mnist,
    locate_dataset,
)
from symbp.data.download import DownloadError, cache_root, dataset_cache_dir, fetch_file
from symbp.data.expand import expand_mnist
from symbp.data.idx import read_idx, write_idx
from symbp.data.registry import DATASETS

__all__ = [
    "DATASETS",
    "DatasetNotFoundError",
    "DownloadError",
    "Split",
    "Splits",
    "cache_root",
    "clear_cache",
    "dataset_cache_dir",
    "expand_mnist",
    "fetch_file",
    "load_dataset",
    "load_fashion_mnist",
    "load_mnist",
    "locate_dataset",
    "read_idx",
    "write_idx",
]
