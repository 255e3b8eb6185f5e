"""Download one file from an ordered list of mirrors, verified by sha256, under a lock.

pooch does the careful part: it streams into a temporary file beside the target, checks the
hash, and only then renames it into place, so an interrupted or wrong download never leaves a
file that later passes for good. We add the fall-through across mirrors, retries only where
they can help, bounds on time and size that no mirror can stretch (a slow drip, an endless
body, a black hole), the lock that keeps two processes from fetching into the same folder at
once, and errors a person can act on.
"""

import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mnistlab.errors import DataError
from mnistlab.files import LOCK, make_readable

log = logging.getLogger(__name__)

# pooch's temporary files: tempfile's default names, in the target folder.
POOCH_TEMPORARY = re.compile(r"^tmp[a-z0-9_]{8}$")


@dataclass(frozen=True)
class Limits:
    """How long and how much one download may take."""

    connect: float = 10.0  # seconds to connect: a black-holed mirror fails in this time
    read: float = 30.0  # seconds without a byte
    deadline: float = 600.0  # seconds for the whole file, however the bytes trickle in
    margin: int = 1 << 20  # bytes tolerated past the known size before the body is cut
    unknown_size: int = 64 << 20  # the cap when the size is not known
    lock_wait: float = 900.0  # seconds to wait for another process's download


class TooSlow(Exception):
    pass


class TooLarge(Exception):
    pass


def _reason(error: Exception) -> str:
    """One line for what went wrong at one mirror."""
    import requests

    if isinstance(error, TooSlow | TooLarge):
        return str(error)
    if isinstance(error, requests.HTTPError) and error.response is not None:
        return f"HTTP {error.response.status_code} {error.response.reason}"
    if isinstance(error, ValueError) and "hash" in str(error).lower():
        return "served a file whose sha256 does not match the known hash"
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return "connection closed before the whole file arrived"
    if isinstance(error, requests.Timeout):
        return "timed out (no answer in time); skipped for the other files"
    if isinstance(error, requests.ConnectionError):
        return "could not connect"
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".strip()


def _worth_retrying(error: Exception) -> bool:
    """A dropped connection or a server error may pass; a refused connection, a timeout, a
    4xx answer, wrong bytes or a mirror that is too slow or too large will not within
    seconds."""
    import requests

    if isinstance(error, requests.HTTPError) and error.response is not None:
        return error.response.status_code >= 500 or error.response.status_code == 429
    return isinstance(error, requests.exceptions.ChunkedEncodingError) and not isinstance(
        error, requests.Timeout
    )


def _give_up_on(error: Exception) -> bool:
    """Mirrors not worth asking again for the next file: unreachable, silent or too slow."""
    import requests

    if isinstance(error, TooSlow | requests.Timeout):
        return True
    return isinstance(error, requests.ConnectionError) and not isinstance(
        error, requests.exceptions.ChunkedEncodingError
    )


def _downloader(filename: str, size: int | None, limits: Limits, progress: bool):
    """A pooch downloader that streams with bounds on time and size, and a named bar."""
    import requests

    cap = size + limits.margin if size else limits.unknown_size

    def download(url: str, output_file: str, pooch_=None, check_only: bool = False):
        started = time.monotonic()
        timeout = (limits.connect, limits.read)
        with requests.get(url, stream=True, timeout=timeout) as response:
            response.raise_for_status()
            announced = int(response.headers.get("Content-Length") or 0)
            if announced > cap:
                raise TooLarge(f"announced {announced:,} bytes, more than the file's {cap:,}")
            bar = None
            if progress:
                from tqdm import tqdm

                host = urlsplit(url).netloc
                bar = tqdm(
                    total=size or announced or None,
                    unit="B",
                    unit_scale=True,
                    desc=f"{filename} from {host}",
                    leave=False,
                )
            written = 0
            try:
                with open(output_file, "wb") as out, _as_requests_errors():
                    # read1 returns what has arrived, so the deadline is checked even when
                    # the bytes come one at a time.
                    while chunk := response.raw.read1(1 << 16, decode_content=True):
                        written += len(chunk)
                        if written > cap:
                            raise TooLarge(f"sent more than {cap:,} bytes; cut off")
                        if time.monotonic() - started > limits.deadline:
                            raise TooSlow(
                                f"too slow: {written:,} bytes in {limits.deadline:g} s; "
                                "skipped for the other files"
                            )
                        out.write(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()

    return download


@contextlib.contextmanager
def _as_requests_errors():
    """urllib3's errors from reading the raw stream, as requests names them (what
    iter_content would have raised)."""
    import requests
    import urllib3

    try:
        yield
    except urllib3.exceptions.ReadTimeoutError as error:
        raise requests.exceptions.ReadTimeout(error) from None
    except (urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError) as error:
        raise requests.exceptions.ChunkedEncodingError(error) from None


def _lock(folder: Path, filename: str, limits: Limits, on_wait: Callable[[str], None] | None):
    from filelock import FileLock, Timeout

    lock = FileLock(str(folder / LOCK))
    try:
        lock.acquire(timeout=0)
        return lock
    except Timeout:
        pass
    message = f"waiting for another mnistlab process to finish downloading {filename} in {folder}"
    log.warning(message)
    if on_wait is not None:
        on_wait(message)
    try:
        lock.acquire(timeout=limits.lock_wait)
    except Timeout:
        raise DataError(
            f"gave up after {limits.lock_wait:g} s {message[0].lower()}{message[1:]}; "
            "if no other mnistlab process is running, run again"
        ) from None
    return lock


def remove_stale_downloads(folder: Path) -> None:
    """pooch's temporary files that a killed download left (call under the folder's lock)."""
    for leftover in folder.iterdir():
        if POOCH_TEMPORARY.match(leftover.name) and leftover.is_file():
            leftover.unlink(missing_ok=True)


def download(
    filename: str,
    sha256: str,
    mirrors: list[str],
    folder: Path,
    *,
    size: int | None = None,
    retries: int = 2,
    backoff: float = 1.0,
    limits: Limits = Limits(),
    progress: bool = False,
    unreachable: set[str] | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> tuple[Path | None, list[str]]:
    """Fetch `filename` into `folder` from the first mirror that serves the right bytes.

    Returns the path (None when every mirror failed) and one line per mirror that failed.
    A failure that may pass is retried `retries` times, after `backoff`, 2·`backoff`, ...
    seconds. Mirrors that could not be reached, did not answer in time or were too slow are
    added to `unreachable`, and skipped when the same set comes back for the next file, so
    an offline machine fails in seconds and a firewalled one within `limits.connect` per
    mirror.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot make the download folder {folder}: {error.strerror}") from None
    unreachable = set() if unreachable is None else unreachable
    failures: list[str] = []
    # Imported here: a run whose files are already on disk never pays for them.
    import pooch

    # pooch announces each download at INFO; the CLI shows a progress bar instead.
    pooch.get_logger().setLevel(logging.WARNING)
    downloader = _downloader(filename, size, limits, progress)
    lock = _lock(folder, filename, limits, on_wait)
    try:
        remove_stale_downloads(folder)
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + filename
            if mirror in unreachable:
                failures.append(f"{url}: skipped (unreachable or too slow for an earlier file)")
                continue
            for attempt in range(1 + retries):
                try:
                    # Returns at once when another process finished the file while we waited.
                    path = pooch.retrieve(
                        url,
                        known_hash=f"sha256:{sha256}",
                        fname=filename,
                        path=folder,
                        downloader=downloader,
                    )
                    # pooch's temporary file is private; a cache file is everyone's to read.
                    make_readable(path)
                    return Path(path), failures
                except Exception as error:  # noqa: BLE001 - every failure is reported below
                    log.debug("attempt %d at %s failed: %s", attempt + 1, url, error)
                    if attempt < retries and _worth_retrying(error):
                        time.sleep(backoff * 2**attempt)
                        continue
                    failures.append(
                        f"{url}: {_reason(error)}"
                        + (f" (after {attempt + 1} tries)" if attempt else "")
                    )
                    if _give_up_on(error):
                        unreachable.add(mirror)
                    break
    finally:
        lock.release()
    return None, failures
