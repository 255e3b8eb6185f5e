"""Writing files so that a reader never sees half of one, and a failure leaves nothing behind.

Every file mnistlab writes (configs, metrics, checkpoints, pictures, reports, cached arrays)
goes through `atomic_write`: a new temporary file in the target's folder, created exclusively
(never following a planted link), filled, flushed to disk, given ordinary permissions, and
renamed over the target. On any failure, Ctrl-C included, the temporary file is removed.
"""

import errno
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# Short and fixed, so that a temporary name fits wherever the target's name fits (255 bytes),
# and so that leftovers of a killed process can be found and removed.
TEMP_PREFIX = ".mnistlab-tmp-"
# The lock a process holds on a folder it writes in (a run, a sweep, a download folder).
LOCK = ".mnistlab.lock"


def _umask() -> int:
    # The only portable way to read the umask is to set it; done once, before any thread runs.
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


_UMASK: int | None = None


def atomic_write(path: str | Path, content: bytes | str | Callable[[BinaryIO], None]) -> Path:
    """Write `content` (bytes, text, or a function that writes to a binary handle) to `path`."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            if callable(content):
                content(stream)
            else:
                stream.write(content.encode() if isinstance(content, str) else content)
            stream.flush()
            os.fsync(stream.fileno())
        make_readable(temporary)  # mkstemp makes it private; it is an ordinary file
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def make_readable(path: str | Path) -> None:
    """The permissions a new file gets by default (0o644 under the usual umask)."""
    os.chmod(path, 0o666 & ~_umask())


def remove_stale_temporaries(folder: str | Path, older_than: float = 0.0) -> int:
    """Remove temporary files that a killed process left in `folder`; returns how many.

    Call it where no other process can be writing (under the folder's lock), or with
    `older_than` seconds so that a live writer's file is spared.
    """
    removed = 0
    now = time.time()
    for leftover in Path(folder).glob(TEMP_PREFIX + "*"):
        try:
            if now - leftover.stat().st_mtime >= older_than:
                leftover.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def open_regular(path: str | Path) -> BinaryIO:
    """A regular file opened for reading, or an OSError that says why not. Opened without
    blocking, so that a FIFO put in a file's place is refused, not waited on (a plain open()
    waits for a writer that never comes); a device, or a link to one, is refused too."""
    import stat

    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def read_small(path: str | Path, limit: int = 1_000_000) -> bytes:
    """A small file's bytes (settings, a run's JSON files): a regular file of at most `limit`
    bytes, or an OSError that says why not (a device, a FIFO or a huge file is never read to
    the end; the size is counted on what is read, not taken from stat)."""
    with open_regular(path) as handle:
        content = handle.read(limit + 1)
    if len(content) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit:,} bytes", str(path))
    return content


def is_no_space(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, errno.EDQUOT)
