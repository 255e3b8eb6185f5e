"""Download one file from an ordered list of mirrors, verified by sha256, under a lock.

pooch does the careful part: it streams into a temporary file beside the target, checks the
hash, and only then renames it into place, so an interrupted or wrong download never leaves a
file that later passes for good. We add the fall-through across mirrors, retries only where
they can help, the lock that keeps two processes from fetching into the same folder at once,
and errors a person can act on.
"""

import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def _reason(error: Exception) -> str:
    """One line for what went wrong at one mirror."""
    import requests

    if isinstance(error, requests.HTTPError) and error.response is not None:
        return f"HTTP {error.response.status_code} {error.response.reason}"
    if isinstance(error, ValueError) and "hash" in str(error).lower():
        return "served a file whose sha256 does not match the known hash"
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return "connection closed before the whole file arrived"
    if isinstance(error, requests.ConnectionError):
        return "could not connect"
    if isinstance(error, requests.Timeout):
        return "timed out"
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".strip()


def _worth_retrying(error: Exception) -> bool:
    """A dropped or slow connection or a server error may pass; a refused connection (no
    network, no such host), a 4xx answer or wrong bytes will not within seconds."""
    import requests

    if isinstance(error, requests.HTTPError) and error.response is not None:
        return error.response.status_code >= 500 or error.response.status_code == 429
    return isinstance(error, requests.exceptions.ChunkedEncodingError | requests.Timeout)


def _unreachable(error: Exception) -> bool:
    import requests

    return isinstance(error, requests.ConnectionError) and not isinstance(
        error, requests.exceptions.ChunkedEncodingError | requests.Timeout
    )


def download(
    filename: str,
    sha256: str,
    mirrors: list[str],
    folder: Path,
    *,
    retries: int = 2,
    backoff: float = 1.0,
    timeout: float = 30.0,
    progress: bool = False,
    unreachable: set[str] | None = None,
) -> tuple[Path | None, list[str]]:
    """Fetch `filename` into `folder` from the first mirror that serves the right bytes.

    Returns the path (None when every mirror failed) and one line per mirror that failed.
    A failure that may pass is retried `retries` times, after `backoff`, 2·`backoff`, ...
    seconds. Mirrors that could not be reached are added to `unreachable`, and skipped when
    the same set comes back for the next file, so an offline machine fails in seconds.
    """
    folder.mkdir(parents=True, exist_ok=True)
    unreachable = set() if unreachable is None else unreachable
    failures: list[str] = []
    # Imported here: a run whose files are already on disk never pays for them.
    import pooch
    from filelock import FileLock

    # pooch announces each download at INFO; the CLI shows a progress bar instead.
    pooch.get_logger().setLevel(logging.WARNING)
    with FileLock(str(folder / ".mnistlab.lock")):
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + filename
            if mirror in unreachable:
                failures.append(f"{url}: skipped (could not connect for an earlier file)")
                continue
            for attempt in range(1 + retries):
                try:
                    # Returns at once when another process finished the file while we waited.
                    path = pooch.retrieve(
                        url,
                        known_hash=f"sha256:{sha256}",
                        fname=filename,
                        path=folder,
                        downloader=pooch.HTTPDownloader(progressbar=progress, timeout=timeout),
                    )
                    return Path(path), failures
                except Exception as error:  # noqa: BLE001 - every failure is reported below
                    log.info("attempt %d at %s failed: %s", attempt + 1, url, error)
                    if attempt < retries and _worth_retrying(error):
                        time.sleep(backoff * 2**attempt)
                        continue
                    failures.append(
                        f"{url}: {_reason(error)}"
                        + (f" (after {attempt + 1} tries)" if attempt else "")
                    )
                    if _unreachable(error):
                        unreachable.add(mirror)
                    break
    return None, failures
