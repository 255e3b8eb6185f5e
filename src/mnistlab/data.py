"""The data sets' files: found on this machine or fetched, verified, decoded and loaded.

A file is looked for, in order, in the data folders named (by the user, or by what the edge
read from $MNISTLAB_DATA_DIR), in the cache folder, and in a torchvision-style
./data/<Name>/raw/ folder (so users of the course notebook reuse what they have), and only then
downloaded. Nothing here reads the environment: the folders and mirrors are arguments.
Whatever its source, a file is verified by sha256 before use. Decoded arrays are cached as .npy
files keyed by that hash, so a second load skips gzip and parsing.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mnistlab.datasets import DatasetSpec, get_spec, registry
from mnistlab.errors import DataError, Setting
from mnistlab.fetch import Limits, download
from mnistlab.files import atomic_write
from mnistlab.idx import parse_idx

if TYPE_CHECKING:  # torch is imported where tensors are made: finding and fetching need none
    import torch

log = logging.getLogger(__name__)


# One data folder, or several tried in turn (a run's: the one named now, then its own).
Folders = str | Path | Sequence[str | Path] | None


def cache_dir(folder: str | Path | None = None) -> Path:
    """Where downloads and decoded arrays go: `folder`, else the user cache folder."""
    if folder:
        return Path(folder).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("mnistlab"))


def user_mirrors(extra: tuple[str, ...] = (), dataset: str | None = None) -> list[str]:
    """The mirrors the user adds, for `dataset`. A mirror is the URL of a folder holding a
    dataset's four .gz files; one written DATASET=URL applies to that dataset only."""
    mirrors = []
    for entry in extra:
        name, _, url = entry.partition("=") if "=" in entry.split("/")[0] else ("", "", entry)
        if not name or name == dataset:
            mirrors.append(url)
    return mirrors


def _roots(data_dir: Folders, cache: str | Path | None) -> list[Path]:
    """The folders named, then the cache."""
    named = [data_dir] if isinstance(data_dir, str | Path) else list(data_dir or ())
    return [Path(root).expanduser() for root in named if root] + [cache_dir(cache)]


def search_folders(
    spec: DatasetSpec, data_dir: Folders = None, cache: str | Path | None = None
) -> list[Path]:
    """Every folder a dataset's files may already be in, in the order they are tried."""
    roots = _roots(data_dir, cache)
    folders = []
    for root in roots:
        folders += [root / spec.name, root, root / spec.torchvision_name / "raw"]
    folders.append(Path("data") / spec.torchvision_name / "raw")
    return list(dict.fromkeys(folders))


def download_folder(
    spec: DatasetSpec, data_dir: Folders = None, cache: str | Path | None = None
) -> Path:
    """Where a download lands: the first folder named, else the cache."""
    return _roots(data_dir, cache)[0] / spec.name


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
    data_dir: Folders = None,
    *,
    mirrors: tuple[str, ...] = (),
    cache_dir: str | Path | None = None,
    download_missing: bool = True,
    progress: bool = False,
    retries: int = 2,
    limits: Limits | None = None,
) -> dict[str, Path]:
    """Find (or download) and verify the four files of a dataset; returns key -> path.

    `data_dir`: the folders to look in first; `cache_dir`: the cache (else the user's);
    `mirrors`: tried before the dataset's own (URL, or DATASET=URL for one dataset only).
    `limits` bounds each download's time and size (fetch.Limits: connect and read timeouts,
    a deadline per file, the wait for another process's download)."""
    spec = get_spec(name)
    folders = search_folders(spec, data_dir, cache_dir)
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
        target = download_folder(spec, data_dir, cache_dir)
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
        lines = []
        for key, tried in missing.items():
            lines.append(f"  {spec.files[key].name}:")
            lines += [f"    - {place}" for place in tried]
        names = ", ".join(file.name for file in spec.files.values())
        lines.append(
            (
                f"To supply them by hand, put the files {names} "
                f"in {download_folder(spec, data_dir, cache_dir)} (or in another ",
                Setting("data_dir"),
                "), or add a mirror (",
                Setting("mirrors"),
                ", or MNISTLAB_MIRROR).",
            )
        )
        headline = f"could not find or download {spec.name} files:"
        raise DataError(headline, details=tuple(lines))
    return found


def read_idx(
    path: Path,
    sha256: str | None = None,
    raw_sha256: str | None = None,
    cache: str | Path | None = None,
) -> np.ndarray:
    """Decode an IDX file (.gz or raw), checking the very bytes it parses against `sha256`
    (of the file) and `raw_sha256` (of its uncompressed form).

    With `raw_sha256` the decoded array is cached (in `cache`, else the user cache), and a
    cached array is used only if it encodes back to exactly those uncompressed bytes: a
    damaged or altered cache entry is rebuilt from the verified file (and a warning says so),
    never trusted.
    """
    cached = cache_dir(cache) / "decoded" / f"{raw_sha256}.npy" if raw_sha256 else None
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
    # MemoryError: a header that claims a shape far past the file's size
    except (OSError, ValueError, EOFError, MemoryError):
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


def _split(files: dict[str, Path], spec: DatasetSpec, prefix: str, cache) -> Split:
    arrays = {}
    for part in ("images", "labels"):
        key, path = f"{prefix}_{part}", files[f"{prefix}_{part}"]
        file = spec.files[key]
        sha = file.sha256 if path.suffix == ".gz" else file.raw_sha256
        arrays[part] = read_idx(path, sha, file.raw_sha256, cache)
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
    import torch

    return Split(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))


def load(name: str = "mnist", data_dir: Folders = None, **locate_options) -> Dataset:
    """Load a dataset as uint8 image and int64 label tensors, fetching it first if needed
    (`locate_options` as locate's: mirrors, cache_dir, progress, ...)."""
    spec = get_spec(name)
    files = locate(name, data_dir, **locate_options)
    cache = locate_options.get("cache_dir")
    train, test = _split(files, spec, "train", cache), _split(files, spec, "test", cache)
    return Dataset(spec.name, train, test, spec.classes, files)


def class_counts(split: Split, classes: int = 10) -> list[int]:
    import torch

    return torch.bincount(split.labels, minlength=classes).tolist()
