"""Download one file from an ordered list of mirrors, verified by sha256, under a lock.

pooch does the careful part: it streams into a temporary file beside the target, checks the
hash, and only then renames it into place, so an interrupted or wrong download never leaves a
file that later passes for good. We add the fall-through across mirrors, the lock that keeps
two processes from fetching into the same folder at once, and errors a person can act on.
"""

import logging
from pathlib import Path

import pooch
from filelock import FileLock

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


def download(
    filename: str,
    sha256: str,
    mirrors: list[str],
    folder: Path,
    *,
    retries: int = 2,
    timeout: float = 30.0,
    progress: bool = False,
) -> tuple[Path | None, list[str]]:
    """Fetch `filename` into `folder` from the first mirror that serves the right bytes.

    Returns the path (None when every mirror failed) and one line per mirror that failed.
    Each mirror is tried `1 + retries` times with growing pauses (pooch's back-off).
    """
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / filename
    failures: list[str] = []
    # pooch announces each download at INFO; the CLI shows a progress bar instead.
    pooch.get_logger().setLevel(logging.WARNING)
    with FileLock(str(folder / ".mnistlab.lock")):
        # Another process may have finished the same download while we waited.
        if target.exists() and pooch.file_hash(str(target)) == sha256:
            return target, failures
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + filename
            fetcher = pooch.create(
                path=folder,
                base_url=mirror.rstrip("/") + "/",
                registry={filename: f"sha256:{sha256}"},
                retry_if_failed=retries,
            )
            downloader = pooch.HTTPDownloader(progressbar=progress, timeout=timeout)
            try:
                return Path(fetcher.fetch(filename, downloader=downloader)), failures
            except Exception as error:  # noqa: BLE001 - every failure moves on to the next mirror
                log.info("mirror %s failed: %s", url, error)
                failures.append(f"{url}: {_reason(error)}")
    return None, failures
