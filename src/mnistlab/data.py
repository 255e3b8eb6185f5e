"""The datasets: where their files are, how they load, and how they are batched in memory.

A file is looked for, in order, in an explicit data folder, in $MNISTLAB_DATA_DIR, in the
user cache folder, and in a torchvision-style ./data/<Name>/raw/ folder (so users of the
course notebook reuse what they have), and only then downloaded. Whatever its source, a file is
verified by sha256 before use. Decoded arrays are cached as .npy files keyed by that hash, so a
second load skips gzip and parsing.
"""

import functools
import gzip
import hashlib
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mnistlab.errors import ConfigError, DataError
from mnistlab.fetch import Limits, download
from mnistlab.files import atomic_write
from mnistlab.idx import parse_idx

log = logging.getLogger(__name__)


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


def registry() -> dict[str, DatasetSpec]:
    """The built-in datasets, and those a file named by $MNISTLAB_DATASETS adds: IDX
    datasets of your own (or KMNIST), each file pinned by its hashes like the built-in ones.

    The file is JSON: {"NAME": {"classes": [...], "mirrors": [...], "files": {"train_images":
    {"name": "train-images-idx3-ubyte.gz", "sha256": "...", "raw_sha256": "...", "size": N},
    "train_labels": ..., "test_images": ..., "test_labels": ...}}}. A built-in name is never
    replaced."""
    path = os.environ.get("MNISTLAB_DATASETS")
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
        entries = json.loads(Path(path).read_text())
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
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(f"MNISTLAB_DATASETS={path}: not a dataset registry ({error})") from None
    return added


def get_spec(name: str) -> DatasetSpec:
    known = registry()
    if name not in known:
        raise ConfigError(
            f"dataset: unknown dataset {name!r}; choose one of: {', '.join(known)}", "dataset"
        )
    return known[name]


def cache_dir() -> Path:
    """Where downloads and decoded arrays go unless told otherwise ($MNISTLAB_CACHE_DIR)."""
    if os.environ.get("MNISTLAB_CACHE_DIR"):
        return Path(os.environ["MNISTLAB_CACHE_DIR"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("mnistlab"))


def user_mirrors(extra: tuple[str, ...] = (), dataset: str | None = None) -> list[str]:
    """Mirrors the user adds: the option's first, then $MNISTLAB_MIRROR's (comma- or
    space-separated). A mirror is the URL of a folder holding a dataset's four .gz files; an
    entry of the variable written DATASET=URL applies to that dataset only."""
    mirrors = list(extra)
    for entry in os.environ.get("MNISTLAB_MIRROR", "").replace(",", " ").split():
        name, _, url = entry.partition("=") if "=" in entry.split("/")[0] else ("", "", entry)
        if not name or name == dataset:
            mirrors.append(url)
    return mirrors


def search_folders(spec: DatasetSpec, data_dir: str | Path | None = None) -> list[Path]:
    """Every folder a dataset's files may already be in, in the order they are tried."""
    roots = []
    if data_dir is not None:
        roots.append(Path(data_dir).expanduser())
    if os.environ.get("MNISTLAB_DATA_DIR"):
        roots.append(Path(os.environ["MNISTLAB_DATA_DIR"]).expanduser())
    roots.append(cache_dir())
    folders = []
    for root in roots:
        folders += [root / spec.name, root, root / spec.torchvision_name / "raw"]
    folders.append(Path("data") / spec.torchvision_name / "raw")
    return list(dict.fromkeys(folders))


def download_folder(spec: DatasetSpec, data_dir: str | Path | None = None) -> Path:
    """Where a download lands: the first root named by the user, else the cache."""
    root = data_dir or os.environ.get("MNISTLAB_DATA_DIR") or cache_dir()
    return Path(root).expanduser() / spec.name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}; check its permissions") from None
    return digest.hexdigest()


def identify(digest: str) -> str | None:
    """Which known file has this sha256 (of its .gz or its uncompressed form), if any."""
    for spec in registry().values():
        for file in spec.files.values():
            if digest in (file.sha256, file.raw_sha256):
                return f"{spec.name}'s {file.name}"
    return None


def _verified(path: Path, expected: str) -> Path:
    actual = sha256_of(path)
    if actual != expected:
        known = identify(actual)
        if known:  # a good file in the wrong place: nothing to delete
            raise DataError(
                f"{path} is {known}, not the file expected here (sha256 {expected}); "
                "point --data-dir at the folder of the dataset you asked for"
            )
        raise DataError(
            f"{path}: sha256 {actual} does not match the expected {expected}; the file is "
            "corrupt or not the original: delete it and run again to fetch a fresh copy"
        )
    return path


def locate(
    name: str,
    data_dir: str | Path | None = None,
    *,
    mirrors: tuple[str, ...] = (),
    download_missing: bool = True,
    progress: bool = False,
    retries: int = 2,
    limits: Limits | None = None,
) -> dict[str, Path]:
    """Find (or download) and verify the four files of a dataset; returns key -> path.

    `limits` bounds each download's time and size (fetch.Limits: connect and read timeouts,
    a deadline per file, the wait for another process's download)."""
    spec = get_spec(name)
    folders = search_folders(spec, data_dir)
    found: dict[str, Path] = {}
    missing: dict[str, list[str]] = {}
    for key, file in spec.files.items():
        for folder in folders:
            packed, raw = folder / file.name, folder / file.name.removesuffix(".gz")
            if packed.is_file():
                found[key] = _verified(packed, file.sha256)
                break
            if raw.is_file():
                found[key] = _verified(raw, file.raw_sha256)
                break
        else:
            missing[key] = [f"{folder}: not found" for folder in folders]
    if missing and download_missing:
        target = download_folder(spec, data_dir)
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DataError(f"cannot make the download folder {target}: {error.strerror}") from None
        log.info("downloading %s's %s into %s", spec.name, ", ".join(missing), target.resolve())
        all_mirrors = [*user_mirrors(mirrors, spec.name), *spec.mirrors]
        unreachable: set[str] = set()  # shared across the files: offline fails fast
        for key in list(missing):
            file = spec.files[key]
            path, failures = download(
                file.name,
                file.sha256,
                all_mirrors,
                target,
                size=file.size,
                retries=retries,
                limits=limits or Limits(),
                progress=progress,
                unreachable=unreachable,
            )
            if path is not None:
                found[key] = path
                del missing[key]
            else:
                missing[key] += failures
    if missing:
        lines = [f"could not find or download {spec.name} files:"]
        for key, tried in missing.items():
            lines.append(f"  {spec.files[key].name}:")
            lines += [f"    - {place}" for place in tried]
        names = ", ".join(file.name for file in spec.files.values())
        lines.append(
            f"To supply them by hand, put the files {names} "
            f"in {download_folder(spec, data_dir)} (or pass --data-dir FOLDER), "
            "or add a mirror with --mirror URL or MNISTLAB_MIRROR."
        )
        raise DataError("\n".join(lines))
    return found


def read_idx(path: Path, sha256: str | None = None, raw_sha256: str | None = None) -> np.ndarray:
    """Decode an IDX file (.gz or raw), checking the very bytes it parses against `sha256`
    (of the file) and `raw_sha256` (of its uncompressed form).

    With `raw_sha256` the decoded array is cached, and a cached array is used only if it
    encodes back to exactly those uncompressed bytes: a damaged or altered cache entry is
    rebuilt from the verified file (and a warning says so), never trusted.
    """
    cached = cache_dir() / "decoded" / f"{raw_sha256}.npy" if raw_sha256 else None
    if cached is not None and cached.is_file():
        array = _cached_array(cached, raw_sha256)
        if array is not None:
            return array
    try:
        content = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}; check its permissions") from None
    if sha256 is not None and hashlib.sha256(content).hexdigest() != sha256:
        raise DataError(f"{path} changed after it was verified; run again")
    raw = content
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(content)
        except (OSError, EOFError) as error:
            raise DataError(f"{path}: not a valid gzip file ({error})") from None
    if raw_sha256 is not None and hashlib.sha256(raw).hexdigest() != raw_sha256:
        raise DataError(f"{path}: its uncompressed content does not match sha256 {raw_sha256}")
    array = parse_idx(raw, str(path))
    if cached is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(cached, lambda handle: np.save(handle, array))
        except OSError:
            pass  # a read-only or full cache only costs speed
    return array


def _idx_digest(array: np.ndarray) -> str | None:
    """sha256 of the uncompressed IDX file that `array` decodes from (uint8 arrays)."""
    if array.dtype != np.uint8 or not 1 <= array.ndim <= 255:
        return None
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    digest = hashlib.sha256(header)
    digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _cached_array(cached: Path, raw_sha256: str) -> np.ndarray | None:
    try:
        array = np.load(cached, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        array = None
    if array is None or _idx_digest(array) != raw_sha256:
        log.warning("the decoded cache %s does not match its source; rebuilt from it", cached)
        cached.unlink(missing_ok=True)
        return None
    return array


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # (N, 28, 28) uint8
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    test: Split
    classes: tuple[str, ...]
    files: dict[str, Path]


def _split(files: dict[str, Path], spec: DatasetSpec, prefix: str) -> Split:
    arrays = {}
    for part in ("images", "labels"):
        key, path = f"{prefix}_{part}", files[f"{prefix}_{part}"]
        file = spec.files[key]
        sha = file.sha256 if path.suffix == ".gz" else file.raw_sha256
        arrays[part] = read_idx(path, sha, file.raw_sha256)
    images, labels = arrays["images"], arrays["labels"]
    if images.dtype != np.uint8 or images.ndim != 3 or labels.ndim != 1:
        raise DataError(f"{files[prefix + '_images']}: unexpected IDX layout {images.shape}")
    if len(images) != len(labels):
        raise DataError(f"{prefix} split: {len(images)} images but {len(labels)} labels")
    if len(labels) and int(labels.max()) >= len(spec.classes):
        raise DataError(
            f"{files[prefix + '_labels']}: a label {int(labels.max())} outside the "
            f"{len(spec.classes)} classes"
        )
    return Split(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))


def load(name: str = "mnist", data_dir: str | Path | None = None, **locate_options) -> Dataset:
    """Load a dataset as uint8 image and int64 label tensors, fetching it first if needed."""
    spec = get_spec(name)
    files = locate(name, data_dir, **locate_options)
    return Dataset(
        spec.name, _split(files, spec, "train"), _split(files, spec, "test"), spec.classes, files
    )


def class_counts(split: Split, classes: int = 10) -> list[int]:
    return torch.bincount(split.labels, minlength=classes).tolist()


def split_validation(train: Split, fraction: float, seed: int = 0) -> tuple[Split, Split]:
    """Carve a validation set off the training set: the same fraction and seed, the same split."""
    count = round(len(train) * fraction)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    held, kept = order[:count], order[count:]
    return (
        Split(train.images[kept], train.labels[kept]),
        Split(train.images[held], train.labels[held]),
    )


def normalization(split: Split) -> tuple[float, float]:
    """Mean and std of the training pixels in [0, 1]; applied to every split alike.

    Computed from the 256-bin histogram of the uint8 pixels: exact, and far cheaper than
    converting 47 million pixels to float64.
    """
    counts = torch.bincount(split.images.flatten(), minlength=256).to(torch.float64)
    values = torch.arange(256, dtype=torch.float64) / 255
    total = counts.sum()
    mean = (counts * values).sum() / total
    variance = (counts * (values - mean) ** 2).sum() / (total - 1)
    return mean.item(), variance.sqrt().item()


def to_inputs(
    images: torch.Tensor, mean: float, std: float, device="cpu", dtype=torch.float32
) -> torch.Tensor:
    """uint8 (N, 28, 28) -> normalised (N, 784), once, on the device."""
    x = images.to(device).reshape(len(images), -1).to(dtype)
    return x.div_(255).sub_(mean).div_(std)


def batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator | None = None,
    skip: int = 0,
):
    """Yield (x, y) batches: a shuffled epoch when a generator is given, in order otherwise,
    leaving out the first `skip` batches (a resumed epoch).

    Batches are gathered into two reused buffers instead of fresh tensors each step; a batch
    is only valid until the next one is drawn, which is all a training step needs.
    """
    count = len(y)
    if generator is None:
        for start in range(skip * batch_size, count, batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]
        return
    order = torch.randperm(count, generator=generator).to(x.device)
    size = min(batch_size, count)
    x_buffer = x.new_empty((size, *x.shape[1:]))
    y_buffer = y.new_empty((size,))
    # The whole permutation is drawn even when resuming, so the batches after `skip` are
    # the ones an uninterrupted epoch would have had.
    for start in range(skip * batch_size, count, batch_size):
        index = order[start : start + batch_size]
        size = len(index)
        torch.index_select(x, 0, index, out=x_buffer[:size])
        torch.index_select(y, 0, index, out=y_buffer[:size])
        yield x_buffer[:size], y_buffer[:size]
