"""Load MNIST and Fashion-MNIST as Nielsen's train / validation / test split.

Takes: a dataset name, optionally a folder holding its four original ``.gz`` IDX files, a dtype.
Gives: ``Splits(train, validation, test)``; each is a ``Split(X, labels)`` tuple with ``X`` of shape
``(n, 784)`` holding the pixels scaled to [0, 1] (``pixel / 255``) in the requested float dtype, or with
``dtype="uint8"`` the pixels themselves (8× less memory; ``split.input_scale`` is then 1/255, the
``input_scale`` that ``Model.fit`` and the other methods take with them), and ``labels`` an int64 array of
shape ``(n,)``.  ``train`` is the first 50,000 images of the training
file, ``validation`` its last 10,000, ``test`` the 10,000 images of the t10k file.

The arrays are **read-only** (``arr.flags.writeable`` is False): parsed splits are kept in an
in-process cache and shared between calls, so ``X *= 2`` raises instead of corrupting later loads.
Take ``X.copy()`` for a private, writeable array.  ``clear_cache()`` frees the memory.

Where the files are looked for, in order (each file's SHA-256 is checked):

1. ``data_dir`` -- a folder holding the four files directly, or a subfolder named after the dataset
   (``DIR/mnist/...``);
2. ``$SYMBP_DATA_DIR/<name>/`` -- a folder with one subfolder per dataset;
3. the remembered folder of the dataset (``symbp.data.locations``: where a ``symbp`` command found it by 1 or 2
   before, or ``symbp data add DIR``), if it still holds the four files with the right checksums;
4. the cache folder ``<cache root>/datasets/<name>/`` (see ``symbp.data.download.cache_root``);
5. if ``download`` is true, a download into the cache folder from the mirrors.

A file with a wrong checksum in folders 1-2 is a ``ValueError``; a remembered folder that vanished or changed is
passed over; in the cache a wrong file is downloaded again.  Inside ``locations.remembering()`` (every ``symbp``
command), a dataset found by 1 or 2 is remembered for later commands.
When the files are found nowhere, ``DatasetNotFoundError`` says where it looked, why each mirror
failed and how to provide the files.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from symbp.data import locations
from symbp.data.download import (
    DEFAULT_TIMEOUT,
    ENV_CACHE_DIR,
    ENV_MIRRORS,
    DownloadError,
    clear_digest_cache,
    dataset_cache_dir,
    fetch_spec_file,
    resolve_mirrors,
    sha256_file,
)
from symbp.data.idx import read_idx
from symbp.data.registry import DatasetSpec, FileSpec, get_spec

ENV_DATA_DIR = "SYMBP_DATA_DIR"
N_TRAIN = 50_000  # Nielsen's split of the 60,000 training images: 50,000 train + 10,000 validation
IMAGE_SHAPE = (28, 28)
N_CLASSES = 10
_DTYPES = ("float32", "float64", "uint8")
#: the input scale of uint8 pixels: the inputs are pixel/255, in [0, 1]
PIXEL_SCALE = 1 / 255


class DatasetNotFoundError(FileNotFoundError):
    """The dataset files were found nowhere and could not be downloaded."""


class Split(NamedTuple):
    """One part of a dataset: ``X`` (n, 784) floats in [0, 1] (or uint8 pixels) and ``labels`` (n,) int64, both
    read-only."""

    X: np.ndarray
    labels: np.ndarray

    @property
    def input_scale(self) -> float | None:
        """The ``input_scale`` that goes with ``X``: 1/255 for uint8 pixels, None for floats (already scaled)."""
        return PIXEL_SCALE if self.X.dtype == np.uint8 else None

    def __repr__(self) -> str:
        X, y = self.X, self.labels
        return f"Split(X={X.dtype}{list(X.shape)}, labels={y.dtype}{list(y.shape)})"


class Splits(NamedTuple):
    """Nielsen's split: ``train`` (50,000), ``validation`` (10,000), ``test`` (10,000)."""

    train: Split
    validation: Split
    test: Split

    @property
    def input_scale(self) -> float | None:
        """The ``input_scale`` of every split's X (see ``Split.input_scale``)."""
        return self.train.input_scale


# --- finding the files ------------------------------------------------------------------------


def _complete(folder: Path, spec: DatasetSpec, origin: str, looked: list[str]) -> dict[str, Path] | None:
    """The four files in ``folder`` if all are there; otherwise note in ``looked`` what is missing."""
    if not folder.is_dir():
        looked.append(f"{folder} ({origin}): {'not a folder' if folder.exists() else 'does not exist'}")
        return None
    missing = [f.filename for f in spec.files if not (folder / f.filename).is_file()]
    if missing:
        looked.append(f"{folder} ({origin}): missing {', '.join(missing)}")
        return None
    return {f.role: folder / f.filename for f in spec.files}


def _verify_user_files(paths: dict[str, Path], spec: DatasetSpec) -> dict[str, Path]:
    for fs in spec.files:
        got = sha256_file(paths[fs.role])
        if got != fs.sha256:
            raise ValueError(
                f"{paths[fs.role]}: checksum mismatch: expected sha256 {fs.sha256}, got {got}; "
                f"this is not the original {spec.title} file {fs.filename} (damaged, or another dataset's)"
            )
    return paths


def _not_found_message(spec: DatasetSpec, looked: list[str], cache: Path, download_note: str) -> str:
    names = ", ".join(spec.filenames)
    lines = [f"{spec.title} files not found.", "Looked in:"]
    lines += [f"  - {entry}" for entry in looked]
    lines += [download_note, "", "To provide the data, do one of:"]
    lines += [
        f"  - run `symbp data add DIR` once, DIR holding the four files or {spec.name}/ with them: every later "
        "command finds them there;",
        f"  - pass data_dir=DIR (--data-dir DIR on the command line), DIR holding the four files "
        f"or {spec.name}/ with them;",
        f"  - set {ENV_DATA_DIR} to a folder holding {spec.name}/ with the four .gz files ({names});",
        f"  - download the four files by hand into the cache folder: {cache}",
        f"    (set {ENV_CACHE_DIR} to move the cache; set {ENV_MIRRORS} to a comma-separated list of mirror "
        "base URLs to download from elsewhere).",
    ]
    return "\n".join(lines)


def user_folders(spec: DatasetSpec, data_dir: str | os.PathLike[str] | None) -> list[tuple[Path, str]]:
    """The folders given by the user, in the order they are tried, each with its origin for messages:
    ``data_dir`` and ``data_dir/<name>``, then ``$SYMBP_DATA_DIR/<name>``."""
    out = []
    if data_dir is not None:
        base = Path(data_dir).expanduser()
        out += [(base, "data_dir argument"), (base / spec.name, "data_dir argument")]
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        out.append((Path(env).expanduser() / spec.name, f"${ENV_DATA_DIR}/{spec.name}"))
    return out


def locate_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    mirrors: str | Sequence[str] | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Path]:
    """Find (or download) the four verified files of dataset ``name``; return role -> path.

    Roles are ``train_images``, ``train_labels``, ``test_images``, ``test_labels``.  See the module
    docstring for the lookup order.  Raises ``DatasetNotFoundError`` or ``ValueError`` (bad checksum).
    """
    spec = get_spec(name)
    looked: list[str] = []
    for folder, origin in user_folders(spec, data_dir):
        found = _complete(folder, spec, origin, looked)
        if found:
            paths = _verify_user_files(found, spec)
            locations.found(spec, folder)
            return paths
    if not os.environ.get(ENV_DATA_DIR):
        looked.append(f"${ENV_DATA_DIR}: not set")
    folder = locations.remembered().get(spec.name)
    if folder is not None:
        why = locations.folder_problem(folder, spec)
        if why is None:
            return {f.role: folder / f.filename for f in spec.files}
        looked.append(f"{folder} (remembered): {why}")
    else:
        looked.append("remembered folder: none")

    cache = dataset_cache_dir(spec)
    paths: dict[str, Path] = {}
    todo: list[FileSpec] = []
    problems: list[str] = []
    for fs in spec.files:
        p = cache / fs.filename
        if p.is_file() and sha256_file(p) == fs.sha256:
            paths[fs.role] = p
            continue
        todo.append(fs)
        problems.append(f"{fs.filename} (bad checksum)" if p.is_file() else fs.filename)
    if not todo:
        return paths
    looked.append(f"{cache} (cache folder): missing {', '.join(problems)}")
    if not download:
        note = "Download disabled (download=False)."
        raise DatasetNotFoundError(_not_found_message(spec, looked, cache, note))

    bases = resolve_mirrors(spec, mirrors)
    for fs in todo:
        try:
            paths[fs.role], used = fetch_spec_file(fs, spec, cache, bases, progress, timeout)
        except DownloadError as e:
            note = f"Download failed: {e}"
            raise DatasetNotFoundError(_not_found_message(spec, looked, cache, note)) from e
        if used is not None:  # try the mirror that worked first for the next files
            bases = [used] + [b for b in bases if b != used]
    return paths


# --- parsing ----------------------------------------------------------------------------------


def _check(images: np.ndarray, labels: np.ndarray, paths: tuple[Path, Path], count: int) -> None:
    img_path, lab_path = paths
    if images.dtype != np.uint8 or images.shape != (count, *IMAGE_SHAPE):
        raise ValueError(
            f"{img_path}: expected uint8 images of shape {(count, *IMAGE_SHAPE)}, "
            f"found {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.shape != (count,):
        raise ValueError(
            f"{lab_path}: expected uint8 labels of shape ({count},), found {labels.dtype} {labels.shape}"
        )
    if labels.size and labels.max() >= N_CLASSES:
        raise ValueError(f"{lab_path}: expected labels 0..{N_CLASSES - 1}, found {int(labels.max())}")


def _read_pair(img: Path, lab: Path, count: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    # Each file is bounded by the size it must have, so a damaged or hostile one is refused before it is read.
    images = read_idx(img, max_bytes=count * IMAGE_SHAPE[0] * IMAGE_SHAPE[1])
    labels = read_idx(lab, max_bytes=count)
    _check(images, labels, (img, lab), count)
    if dtype == np.uint8:  # the pixels themselves; the model reads them as pixel · PIXEL_SCALE
        X = np.ascontiguousarray(images.reshape(count, -1))
    else:
        X = np.empty((count, images[0].size), dtype=dtype)
        np.divide(images.reshape(count, -1), dtype.type(255), out=X, dtype=dtype)
    y = labels.astype(np.int64)
    X.flags.writeable = False
    y.flags.writeable = False
    return X, y


@functools.lru_cache(maxsize=4)
def _parse_splits(key: tuple[tuple[str, str, int, int], ...], dtype_name: str) -> Splits:
    """Parse the files named in ``key`` ((role, resolved path, size, mtime_ns), ...) into read-only splits."""
    dtype = np.dtype(dtype_name)
    paths = {role: Path(path) for role, path, _, _ in key}
    X, y = _read_pair(paths["train_images"], paths["train_labels"], N_TRAIN + 10_000, dtype)
    Xt, yt = _read_pair(paths["test_images"], paths["test_labels"], 10_000, dtype)
    # Views of read-only arrays cannot be made writeable again.
    return Splits(
        train=Split(X[:N_TRAIN], y[:N_TRAIN]),
        validation=Split(X[N_TRAIN:], y[N_TRAIN:]),
        test=Split(Xt[:], yt[:]),
    )


def _dtype_name(dtype: object) -> str:
    name = None
    if dtype is not None:  # np.dtype(None) would silently mean float64
        with contextlib.suppress(TypeError):
            name = np.dtype(dtype).name  # type: ignore[call-overload]
    if name not in _DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}: expected one of {', '.join(_DTYPES)}")
    return name


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    dtype: str | np.dtype | type = "float64",
    download: bool = True,
    *,
    mirrors: str | Sequence[str] | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> Splits:
    """Load dataset ``name`` (``"mnist"`` or ``"fashion-mnist"``) as ``Splits(train, validation, test)``.

    ``dtype`` is ``"float32"``, ``"float64"`` or ``"uint8"`` (the pixels, with ``split.input_scale`` 1/255).
    The arrays are read-only and shared between calls
    (see the module docstring).  ``mirrors``, ``progress`` and ``timeout`` are passed on to the
    download, if one is needed.  Raises ``DatasetNotFoundError`` when the files cannot be found or
    downloaded, ``ValueError`` on a bad checksum in a user folder or a malformed file.
    """
    dtype_name = _dtype_name(dtype)
    paths = locate_dataset(name, data_dir, download, mirrors=mirrors, progress=progress, timeout=timeout)
    key = []
    for role in sorted(paths):
        p = paths[role].resolve()
        st = p.stat()
        key.append((role, str(p), st.st_size, st.st_mtime_ns))
    return _parse_splits(tuple(key), dtype_name)


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    dtype: str | np.dtype | type = "float64",
    download: bool = True,
    *,
    mirrors: str | Sequence[str] | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> Splits:
    """MNIST as ``Splits(train, validation, test)`` of read-only arrays; see ``load_dataset``."""
    return load_dataset(
        "mnist", data_dir, dtype, download, mirrors=mirrors, progress=progress, timeout=timeout
    )


def load_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    dtype: str | np.dtype | type = "float64",
    download: bool = True,
    *,
    mirrors: str | Sequence[str] | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> Splits:
    """Fashion-MNIST as ``Splits(train, validation, test)`` of read-only arrays; see ``load_dataset``."""
    return load_dataset(
        "fashion-mnist", data_dir, dtype, download, mirrors=mirrors, progress=progress, timeout=timeout
    )


def clear_cache() -> None:
    """Drop the parsed arrays and the remembered checksums kept in this process."""
    _parse_splits.cache_clear()
    clear_digest_cache()
