"""What a request to the API brings, read within its limits: the body (refused from its
Content-Length, or as it streams past the limit, before anything is decoded), a multipart
body's files, JSON pixels; each fault a `Refused` with its HTTP status."""

import asyncio
import contextlib
import functools
import json

import numpy as np
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from mnistlab import images
from mnistlab.datasets import SIDE

MAX_BYTES = 2_000_000
MAX_FILES = 16  # images in one request, multipart or JSON (within MAX_BYTES together)
DRAIN_BYTES = 16_000_000  # the most of a refused body read (and dropped) so the 413 is seen
DRAIN_SECONDS = 10.0


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _drain(request: Request, declared: int | None) -> None:
    """Read and drop the rest of a refused body before answering: a client that sends its
    whole body before it reads (most do, unless they sent Expect: 100-continue) then reads
    the 413, not a reset connection, as behind nginx. Nothing is kept or decoded, and a body
    past DRAIN_BYTES, or slower than DRAIN_SECONDS, is left unread."""
    if request.headers.get("expect", "").lower() == "100-continue":
        return  # the client waits for the answer before it sends anything
    if declared is not None and declared > DRAIN_BYTES:
        return
    dropped = 0
    with contextlib.suppress(TimeoutError, ClientDisconnect):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for chunk in request.stream():
                dropped += len(chunk)
                if dropped > DRAIN_BYTES:
                    return


async def _body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Refused(400, "Content-Length is not a number")
        if int(declared) > max_bytes:
            await _drain(request, int(declared))
            raise Refused(
                413,
                f"the body is {int(declared):,} bytes, over the limit of {max_bytes:,}; "
                + images.SMALLER,
            )
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:  # no Content-Length, or a false one
                await _drain(request, None)
                raise Refused(
                    413,
                    f"the body is over the limit of {max_bytes:,} bytes; " + images.SMALLER,
                )
    except ClientDisconnect:  # the client stopped sending (or left) before the body ended
        raise Refused(
            400, f"the body ended after {len(body):,} bytes, before its Content-Length"
        ) from None
    if not body:
        raise Refused(400, 'the body is empty: send an image file, or JSON {"pixels": 28x28}')
    return bytes(body)


@functools.cache  # (looked up once, not on every upload)
def _multipart_installed() -> bool:
    """Whether starlette can parse forms: python-multipart, under either of its names."""
    from importlib.util import find_spec

    return any(find_spec(name) for name in ("python_multipart", "multipart"))


async def _uploads(request: Request, body: bytes) -> list[bytes]:
    """The files of a multipart body (already read, within the byte limit) sent as `file`."""
    from starlette.requests import Request as Parsed

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    if not _multipart_installed():
        raise Refused(415, "multipart uploads need python-multipart on the server")
    try:
        parsed = Parsed(request.scope, receive)
        async with parsed.form(max_files=MAX_FILES, max_fields=MAX_FILES) as form:
            parts = form.getlist("file")
            if any(isinstance(part, str) for part in parts):  # a part without a filename
                raise Refused(
                    400, "the multipart field `file` holds text, not a file: send the image "
                    "as a file (curl -F file=@x.png)",
                )  # fmt: skip
            files = [await upload.read() for upload in parts]
    except Refused:
        raise
    except Exception as error:  # noqa: BLE001 - a malformed multipart body, whatever it breaks
        raise Refused(400, f"the multipart body could not be read ({error})") from None
    if not files or not all(isinstance(file, bytes) for file in files):
        raise Refused(400, "send the image as the multipart field `file` (curl -F file=@x.png)")
    return files


def _pixels(body: bytes) -> np.ndarray:
    """JSON {"pixels": ...}: one 28x28 image (28, 28) or a batch of them (N, 28, 28)."""
    try:
        value = json.loads(body)
        raw = np.asarray(value["pixels"])
        pixels = raw.astype(np.float64)
    # RecursionError: JSON nested thousands deep; OverflowError: an integer of 400 digits.
    except (ValueError, KeyError, TypeError, RecursionError, OverflowError):
        raise Refused(400, 'send JSON {"pixels": [[...28 numbers...] x 28]}') from None
    if raw.dtype.kind not in "iuf":  # strings ("255") and true/false are not grey levels
        raise Refused(400, "pixels must be numbers in 0-255, not text or true/false")
    if pixels.shape[-2:] != (SIDE, SIDE) or pixels.ndim not in (2, 3):
        shape = "x".join(map(str, pixels.shape)) if pixels.ndim else "a single number"
        raise Refused(400, f"pixels must be 28x28, or a list of 28x28 images; got {shape}")
    if pixels.ndim == 3 and not 1 <= len(pixels) <= MAX_FILES:
        raise Refused(400, f"send 1 to {MAX_FILES} images in one request, not {len(pixels)}")
    if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 255:
        raise Refused(400, "pixels must be numbers in 0-255")
    return pixels


def _pixel_image(pixels: np.ndarray) -> np.ndarray:
    if pixels.max() < 32:  # as an image with no ink: refused, never a guess
        raise Refused(422, "the pixels are blank: no ink stands out from the background")
    return np.rint(pixels).astype(np.uint8)
