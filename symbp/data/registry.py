"""The datasets symbp knows: their four IDX files, checksums, sizes and public mirrors.

Takes: a dataset name (``"mnist"``, ``"fashion-mnist"``; case and ``_``/``-`` do not matter).
Gives: a frozen ``DatasetSpec`` with one ``FileSpec`` per file (role, file name, SHA-256, size in
bytes, number of samples) and the default mirror base URLs, tried in order.

The checksums are those of the original distribution files (see ``shared/data/README.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass(frozen=True)
class FileSpec:
    """One original ``.gz`` file of a dataset."""

    role: str  # one of ROLES
    filename: str
    sha256: str
    size: int  # bytes of the .gz file
    count: int  # samples in the file


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its name, a title for messages, its four files and its default mirrors."""

    name: str
    title: str
    files: tuple[FileSpec, ...]
    mirrors: tuple[str, ...]

    def file(self, key: str) -> FileSpec:
        """The file with this role (``"train_images"``...) or file name; ``ValueError`` if none."""
        for f in self.files:
            if key in (f.role, f.filename):
                return f
        known = ", ".join(f.filename for f in self.files)
        raise ValueError(f"{self.name} has no file {key!r}: expected one of {known}")

    @property
    def filenames(self) -> tuple[str, ...]:
        return tuple(f.filename for f in self.files)


def _files(sums: dict[str, tuple[str, int]]) -> tuple[FileSpec, ...]:
    names = {
        "train_images": ("train-images-idx3-ubyte.gz", 60000),
        "train_labels": ("train-labels-idx1-ubyte.gz", 60000),
        "test_images": ("t10k-images-idx3-ubyte.gz", 10000),
        "test_labels": ("t10k-labels-idx1-ubyte.gz", 10000),
    }
    return tuple(FileSpec(role, name, *sums[role], count) for role, (name, count) in names.items())


MNIST = DatasetSpec(
    name="mnist",
    title="MNIST",
    files=_files(
        {
            "train_images": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
            "train_labels": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
            "test_images": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
            "test_labels": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
        }
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    files=_files(
        {
            "train_images": ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
            "train_labels": ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
            "test_images": ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
            "test_labels": ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
        }
    ),
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}


def get_spec(name: str | DatasetSpec) -> DatasetSpec:
    """The spec of dataset ``name``; ``ValueError`` listing the known names if there is none."""
    if isinstance(name, DatasetSpec):
        return name
    key = str(name).strip().lower().replace("_", "-")
    try:
        return DATASETS[key]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}") from None
