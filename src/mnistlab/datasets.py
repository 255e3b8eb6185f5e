"""The dataset table: each data set's files, pinned by their hashes, its mirrors and classes.

The built-in data sets, and those a JSON registry file adds (the one $MNISTLAB_DATASETS names,
which the program's edges read: mnistlab.environment).
"""

import functools
from dataclasses import dataclass
from pathlib import Path

from mnistlab.errors import ConfigError, unknown
from mnistlab.files import read_small

# What every data set here holds, and so what every model takes and gives: 28x28 images of
# grey levels, flattened to 784 inputs, in ten classes.
SIDE = 28
INPUTS = SIDE * SIDE
CLASSES = 10

MAX_ADDED = 100  # data sets one registry file may add


@dataclass(frozen=True)
class FileSpec:
    name: str  # the compressed file's name, as the mirrors serve it
    sha256: str  # of the .gz file
    raw_sha256: str  # of its uncompressed form, for folders that hold only that
    size: int | None = None  # of the .gz file, in bytes: a download is cut off past it


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    torchvision_name: str  # the folder torchvision uses: ./data/<torchvision_name>/raw/
    files: dict[str, FileSpec]  # train_images, train_labels, test_images, test_labels
    mirrors: tuple[str, ...]  # tried in order, after any mirror the user adds
    classes: tuple[str, ...]


def _files(sha: dict[str, tuple[str, str, int]]) -> dict[str, FileSpec]:
    names = {
        "train_images": "train-images-idx3-ubyte.gz",
        "train_labels": "train-labels-idx1-ubyte.gz",
        "test_images": "t10k-images-idx3-ubyte.gz",
        "test_labels": "t10k-labels-idx1-ubyte.gz",
    }
    return {key: FileSpec(names[key], *sha[key]) for key in names}


DATASETS = {
    "mnist": DatasetSpec(
        name="mnist",
        torchvision_name="MNIST",
        files=_files(
            {
                "train_images": (
                    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                    9912422,
                ),
                "train_labels": (
                    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                    28881,
                ),
                "test_images": (
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                    1648877,
                ),
                "test_labels": (
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                    4542,
                ),
            }
        ),
        # The original host comes last: it now answers 403 or drops the connection.
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        classes=tuple(str(digit) for digit in range(10)),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        torchvision_name="FashionMNIST",
        files=_files(
            {
                "train_images": (
                    "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                    26421880,
                ),
                "train_labels": (
                    "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                    29515,
                ),
                "test_images": (
                    "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                    4422102,
                ),
                "test_labels": (
                    "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                    5148,
                ),
            }
        ),
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
}


_added: str | None = None  # the registry file of more data sets, as an edge named it


def use_registry(path: str | None) -> None:
    """Make the data sets of a registry file known to this process (None: the built-in ones
    alone). The edges name the file $MNISTLAB_DATASETS names; it is read at each lookup, and
    again only when it changes."""
    global _added
    _added = path or None


def registry_file() -> str | None:
    """The registry file in use, for the processes this one starts."""
    return _added


def registry() -> dict[str, DatasetSpec]:
    """The built-in datasets, and those the registry file in use adds: IDX datasets of your
    own (or KMNIST), each file pinned by its hashes like the built-in ones.

    The file is JSON: {"NAME": {"classes": [...], "mirrors": [...], "files": {"train_images":
    {"name": "train-images-idx3-ubyte.gz", "sha256": "...", "raw_sha256": "...", "size": N},
    "train_labels": ..., "test_images": ..., "test_labels": ...}}}. A built-in name is never
    replaced."""
    path = _added
    if not path:
        return DATASETS
    try:
        return {**_read_registry(path, Path(path).stat().st_mtime_ns), **DATASETS}
    except OSError as error:
        raise ConfigError(f"MNISTLAB_DATASETS={path}: {error.strerror}") from None


@functools.lru_cache(maxsize=4)
def _read_registry(path: str, mtime: int) -> dict[str, DatasetSpec]:
    """The datasets a registry file adds (read again only when the file changes)."""
    import json

    try:
        entries = json.loads(read_small(path))
        if not isinstance(entries, dict) or len(entries) > MAX_ADDED:
            raise ValueError(f"a JSON object of at most {MAX_ADDED} data sets by name")
        added = {
            name: DatasetSpec(
                name,
                entry.get("torchvision_name", name),
                {key: FileSpec(**file) for key, file in entry["files"].items()},
                tuple(entry.get("mirrors", ())),
                tuple(entry["classes"]),
            )
            for name, entry in entries.items()
        }
        for spec in added.values():
            _check(spec)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(f"MNISTLAB_DATASETS={path}: not a dataset registry ({error})") from None
    return added


FILE_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def _check(spec: DatasetSpec) -> None:
    """What a data set must have for mnistlab to train on it: a ValueError that says what not."""
    missing = [key for key in FILE_KEYS if key not in spec.files]
    if missing:
        raise ValueError(f"{spec.name}: its files lack {', '.join(missing)}")
    if len(spec.classes) != CLASSES or not all(isinstance(c, str) for c in spec.classes):
        raise ValueError(f"{spec.name}: needs {CLASSES} class names, has {len(spec.classes)}")


def get_spec(name: str) -> DatasetSpec:
    known = registry()
    if name not in known:
        raise unknown("dataset", name, known, what="dataset")
    return known[name]
