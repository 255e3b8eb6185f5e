"""Shared fixtures: a hermetic environment, small synthetic IDX datasets, the real data."""

import contextlib
import dataclasses
import functools
import gzip
import hashlib
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from mnistlab import data, datasets

REAL_DATA = os.environ.get("MNISTLAB_TEST_DATA")


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: a test process per core and one more. Many slow tests wait on processes
    outside their own (the documentation's forked commands, notebook kernels, the browser, a
    search's workers): the third process keeps a core busy meanwhile. Measured in turns on 2
    cores, 3 processes finished sooner than 2 (docs/speed.md gives the suite's times)."""
    from mnistlab.cores import usable

    return usable() + 1


REAL_FIXTURES = {"real_data", "mnist", "trained", "mnist_run", "mnist_session"}


def pytest_collection_modifyitems(items):
    """Real-data tests (marked, or using a fixture of the real data) are slow tests, and the
    slow tests run first: pytest-xdist hands the first items out in turn, so the longest start
    together rather than one of them last."""
    for item in items:
        if REAL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.realdata)
        if item.get_closest_marker("realdata"):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable


def pytest_configure(config):
    """The suite runs in several processes (pytest-xdist): each, and the commands its tests
    start, keeps torch to one thread, so that none waits on a core another holds.

    They also write bytecode as they import, even where PYTHONDONTWRITEBYTECODE is set: the
    set-up compiles none (compiling all of PyTorch and the ~150 packages the tests install was
    most of the install's time, mostly for modules the suite never imports), and the suite
    starts many Python processes, which would otherwise each compile all they import."""
    sys.dont_write_bytecode = False
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the IDX format (magic 0x0000 0x08 ndim, big-endian dims)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def synthetic_split(count: int, seed: int, classes: int = 10):
    """Learnable images: each class is a fixed random prototype plus noise."""
    prototypes = np.random.default_rng(1234).random((classes, 28, 28)) > 0.7
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % classes
    rng.shuffle(labels)
    images = prototypes[labels] * 200.0 + rng.normal(0, 40, (count, 28, 28))
    return np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.uint8)


def write_dataset(folder: Path, train=512, test=256) -> dict[str, bytes]:
    """Write the four .gz files of a synthetic dataset; returns file name -> bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    contents = dict(_dataset_files(train, test))
    for name, content in contents.items():
        if name.endswith(".gz"):
            (folder / name).write_bytes(content)
    return contents


@functools.cache
def _dataset_files(train: int, test: int) -> tuple[tuple[str, bytes], ...]:
    """The synthetic dataset's files, .gz and raw, made once per test process: the bytes are
    the same every time (fixed seeds), and compressing noise is most of a test's set-up."""
    train_images, train_labels = synthetic_split(train, seed=1)
    test_images, test_labels = synthetic_split(test, seed=2)
    arrays = {
        "train-images-idx3-ubyte.gz": train_images,
        "train-labels-idx1-ubyte.gz": train_labels,
        "t10k-images-idx3-ubyte.gz": test_images,
        "t10k-labels-idx1-ubyte.gz": test_labels,
    }
    files = []
    for name, array in arrays.items():
        raw = idx_bytes(array)
        # mtime=0 keeps the bytes, and so the hashes, the same on every run
        files += [(name, gzip.compress(raw, mtime=0)), (name.removesuffix(".gz"), raw)]
    return tuple(files)


def spec_for(contents: dict[str, bytes], name="tiny", mirrors=()) -> datasets.DatasetSpec:
    keys = {
        "train_images": "train-images-idx3-ubyte.gz",
        "train_labels": "train-labels-idx1-ubyte.gz",
        "test_images": "t10k-images-idx3-ubyte.gz",
        "test_labels": "t10k-labels-idx1-ubyte.gz",
    }
    files = {
        key: datasets.FileSpec(
            file,
            sha256(contents[file]),
            sha256(contents[file.removesuffix(".gz")]),
            len(contents[file]),
        )
        for key, file in keys.items()
    }
    return datasets.DatasetSpec(
        name, "Tiny", files, tuple(mirrors), tuple(str(digit) for digit in range(10))
    )


@pytest.fixture(autouse=True)
def hermetic(tmp_path, monkeypatch):
    """Every test runs in its own folder with its own cache, and no user settings: for the
    commands (which read MNISTLAB_CACHE_DIR) and for library calls (whose cache, unless one is
    named, is the user cache folder: platformdirs takes it from XDG_CACHE_HOME)."""
    monkeypatch.setenv("MNISTLAB_CACHE_DIR", str(tmp_path / "mnistlab"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the same folder: tmp_path/mnistlab
    monkeypatch.delenv("MNISTLAB_DATA_DIR", raising=False)
    monkeypatch.delenv("MNISTLAB_MIRROR", raising=False)
    monkeypatch.setattr(datasets, "_added", None)  # no registry an earlier command named
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A synthetic dataset named 'tiny' in tmp_path/tiny-data; returns (folder, contents)."""
    folder = tmp_path / "tiny-data"
    contents = write_dataset(folder)
    spec = spec_for(contents)
    monkeypatch.setitem(datasets.DATASETS, "tiny", spec)
    # The same, for child processes: a dataset registry they find through the environment.
    registry = tmp_path / "datasets.json"
    files = {key: dataclasses.asdict(file) for key, file in spec.files.items()}
    entry = {"torchvision_name": "Tiny", "classes": list(spec.classes), "files": files}
    registry.write_text(json.dumps({"tiny": entry}))
    monkeypatch.setenv("MNISTLAB_DATASETS", str(registry))
    return folder, contents


@pytest.fixture
def real_data() -> Path:
    """The original files. Skipped on a developer's machine without them; a failure in CI."""
    if not REAL_DATA:
        if os.environ.get("CI"):
            pytest.fail("MNISTLAB_TEST_DATA is not set: CI must run the real-data tests")
        pytest.skip("set MNISTLAB_TEST_DATA to a folder holding mnist/ and fashion-mnist/")
    folder = Path(REAL_DATA)
    if not (folder / "mnist").is_dir():
        pytest.fail(f"MNISTLAB_TEST_DATA={folder} has no mnist/ folder")
    return folder


@pytest.fixture(scope="session")
def mnist_session(tmp_path_factory):
    """MNIST loaded once per session, for tests that train on it (None without the data)."""
    if not REAL_DATA:
        return None
    cache = tmp_path_factory.mktemp("cache")
    return data.load("mnist", Path(REAL_DATA), cache_dir=cache, download_missing=False)


@pytest.fixture
def mnist(real_data, mnist_session):
    return mnist_session


def register_tiny(folder) -> None:
    """Register the synthetic dataset written in `folder` as 'tiny' (for child processes)."""
    contents = {}
    for path in Path(folder).glob("*.gz"):
        contents[path.name] = path.read_bytes()
        contents[path.name.removesuffix(".gz")] = gzip.decompress(contents[path.name])
    datasets.DATASETS["tiny"] = spec_for(contents)


def shared_folder(tmp_path_factory, worker_id) -> Path:
    """The temporary folder all test processes of this session see: pytest-xdist makes each
    worker's own base folder inside it."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


@pytest.fixture(scope="session")
def mnist_run(tmp_path_factory, worker_id):
    """The default recipe trained on MNIST once for the whole session, by `mnistlab train` in
    a process of its own as a newcomer runs it: a run folder (None without the data; tests use
    it through `trained` and must not change it). The test processes share it through a file
    lock in their common temporary folder, as pytest-xdist documents; what the command printed
    is kept beside it, in mnist-default.out."""
    if not REAL_DATA:
        return None
    from filelock import FileLock

    shared = shared_folder(tmp_path_factory, worker_id)
    folder = shared / "mnist-default"
    with FileLock(str(shared / "mnist-default.lock")):
        if not (shared / "mnist-default.out").is_file():
            import subprocess
            import sys

            code = (
                "import sys; from mnistlab.cli import main; status = main(sys.argv[1:]); "
                "print('dynamo imported:', 'torch._dynamo' in sys.modules); sys.exit(status)"
            )
            env = {**os.environ, "MNISTLAB_CACHE_DIR": str(shared / "mnist-cache")}
            env.pop("MNISTLAB_DATASETS", None)
            done = subprocess.run(
                [sys.executable, "-c", code, "train", "--data-dir", REAL_DATA, "--out", folder],
                capture_output=True, text=True, timeout=600, env=env, cwd=shared,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
            (shared / "mnist-default.out").write_text(done.stdout)
    return folder


@pytest.fixture
def trained(real_data, mnist_run) -> Path:
    return mnist_run


@pytest.fixture
def tiny_run(tiny, tmp_path) -> Path:
    """A small model trained on the synthetic data set: a run folder."""
    from mnistlab.config import Runtime, TrainConfig
    from mnistlab.runs import Run

    folder = tmp_path / "tiny-run"
    with Run.create(folder, TrainConfig(dataset="tiny", hidden=(32,), epochs=3)) as run:
        run.fit(Runtime(data_dir=str(tiny[0])), pictures=False)
    return folder


@pytest.fixture
def idle_workers(monkeypatch) -> list:
    """The worker processes `--workers` starts end at once, having taken nothing: the work is
    left to the process that started them. Returns the commands started."""
    import subprocess

    from mnistlab.workqueue import workers

    started, popen = [], subprocess.Popen

    def start(command, *args, **options):
        if "mnistlab.cli.worker" not in command:  # (not a worker: matplotlib's fc-list, say)
            return popen(command, *args, **options)
        started.append(command)
        return popen([sys.executable, "-c", "pass"], *args, **options)

    monkeypatch.setattr(workers.subprocess, "Popen", start)
    return started


def slowed_cli(folder, tally=None) -> str:
    """Python code for `python -c CODE ARGS...`: the CLI on the synthetic data set in
    `folder`, each batch slowed by 50 ms so that a test can act while it trains; with
    `tally`, a byte is added to that file as each batch is taken."""
    mark = f"open({str(tally)!r}, 'ab').write(b'.') and " if tally else ""
    return (
        f"import sys, time; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"import conftest; from mnistlab import resident; conftest.register_tiny({str(folder)!r}); "
        "batches = resident.batches; "
        f"resident.batches = lambda *a, **k: (time.sleep(0.05) or {mark}b "
        "for b in batches(*a, **k)); "
        "from mnistlab.cli import main; sys.exit(main(sys.argv[1:]))"
    )


def run_sweep(configs, folder, runtime=None, **options) -> list[dict]:
    """A sweep's records, as the library leaves them (no pictures: they are tested apart)."""
    from mnistlab.sweep import Sweep

    return Sweep(folder).run(configs, runtime, pictures=False, **options).records


@contextlib.contextmanager
def small_file_system(folder: Path, size: str):
    """A tmpfs of `size` mounted on `folder` (made), unmounted after: a real full or read-only
    file system for a test. Root can mount one, as CI runs; elsewhere the test skips."""
    import subprocess

    folder.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)])
    if made.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("cannot mount a tmpfs: CI runs as root")
        pytest.skip("needs the right to mount a tmpfs")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
