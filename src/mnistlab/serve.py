"""A small web app around a trained run: a page to draw a digit on, and a JSON API.

Starlette on uvicorn (the optional extra 'mnistlab[serve]'): an ASGI app of five routes needs
routing, requests and responses, and a thread pool for blocking work, which is what Starlette
is; its one POST takes images in three encodings, which an OpenAPI document written out below
describes more plainly than request models would. The model is loaded once; each prediction
runs in the thread pool, off the event loop, so requests are received concurrently (and
/healthz answers) while images are worked on one at a time. Input is bounded before it is
decoded: a body over `max_bytes` is refused from its Content-Length (or as it streams past the
limit; the rest, up to DRAIN_BYTES, is read and dropped first, so that a client sending it
whole reads the answer), an image over `max_pixels` from its header, so a decompression bomb
never unpacks. Every error is a 4xx JSON object with a message, and the server keeps serving.

    GET  /              the page (every asset inline: works offline)
    POST /api/predict   an image file as the body (any type Pillow reads), multipart field
                        `file` (one or several), or JSON {"pixels": 28x28 numbers in 0-255, or
                        a list of such}: class, calibrated confidence, unsure and unfamiliar
                        flags, probabilities, the 28x28 input, the model; several images give
                        {"predictions": [...]}, each an answer or its own error
    GET  /api/model     the run's name, config, test accuracy and the input limits
    GET  /healthz       {"status": "ok"}
    GET  /openapi.json  the routes above as OpenAPI 3.1 (written here; tests check every
                        answer against it)
"""

import asyncio
import contextlib
import json
import threading
from importlib import resources

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from mnistlab import preprocess, runfiles
from mnistlab.errors import ImageError, ImageTooLarge
from mnistlab.predict import Predictor
from mnistlab.preprocess import MAX_PIXELS

MAX_BYTES = 2_000_000
MAX_FILES = 16  # images in one request, multipart or JSON (within MAX_BYTES together)
# The names a browser on this machine uses for it; `serve --host` adds its own address.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
# Images worked on at once (decoded, prepared and classified; the rest wait their turn): one.
# That work holds Python's GIL most of the time, and torch starts a team of threads for each
# thread that calls it, so several at once on a few cores only wait on each other (measured
# with benchmarks/serve.py: the figures are in the docs' "Using a model"). A storm of large
# images costs one image's memory (a 4000x4000 PNG decodes to ~300 MB of arrays).
AT_ONCE = 1
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
                + preprocess.SMALLER,
            )
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:  # no Content-Length, or a false one
                await _drain(request, None)
                raise Refused(
                    413,
                    f"the body is over the limit of {max_bytes:,} bytes; " + preprocess.SMALLER,
                )
    except ClientDisconnect:  # the client stopped sending (or left) before the body ended
        raise Refused(
            400, f"the body ended after {len(body):,} bytes, before its Content-Length"
        ) from None
    if not body:
        raise Refused(400, 'the body is empty: send an image file, or JSON {"pixels": 28x28}')
    return bytes(body)


async def _uploads(request: Request, body: bytes) -> list[bytes]:
    """The files of a multipart body (already read, within the byte limit) sent as `file`."""
    from starlette.requests import Request as Parsed

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        parsed = Parsed(request.scope, receive)
        async with parsed.form(max_files=MAX_FILES, max_fields=MAX_FILES) as form:
            files = [await upload.read() for upload in form.getlist("file")]
    except AssertionError:  # starlette: python-multipart is not installed
        raise Refused(415, "multipart uploads need python-multipart on the server") from None
    except Exception as error:  # noqa: BLE001 - a malformed multipart body, whatever it breaks
        raise Refused(400, f"the multipart body could not be read ({error})") from None
    if not files or not all(isinstance(file, bytes) for file in files):
        raise Refused(400, "send the image as the multipart field `file` (curl -F file=@x.png)")
    return files


def _pixels(body: bytes) -> np.ndarray:
    """JSON {"pixels": ...}: one 28x28 image (28, 28) or a batch of them (N, 28, 28)."""
    try:
        value = json.loads(body)
        pixels = np.asarray(value["pixels"], dtype=np.float64)
    # RecursionError: JSON nested thousands deep; OverflowError: an integer of 400 digits.
    except (ValueError, KeyError, TypeError, RecursionError, OverflowError):
        raise Refused(400, 'send JSON {"pixels": [[...28 numbers...] x 28]}') from None
    if pixels.shape[-2:] != (28, 28) or pixels.ndim not in (2, 3):
        shape = "x".join(map(str, pixels.shape))
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


def create_app(
    predictor: Predictor,
    info: dict,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    hosts: tuple[str, ...] = LOCAL_HOSTS,
    at_once: int = AT_ONCE,
    cors: tuple[str, ...] = (),
) -> Starlette:
    """The app for one loaded model; `info` is what /api/model answers. Requests naming
    another Host than `hosts` are refused (DNS rebinding: a page elsewhere whose name
    resolves to this machine); at most `at_once` images are worked on at once, the others
    wait their turn, so a storm of large images costs that many images' memory.
    Pages elsewhere may call the API only from the `cors` origins (none by default)."""
    page = resources.files("mnistlab").joinpath("static/index.html").read_text()
    # The page reads the limits, and sends a reduced copy of an upload past them.
    info = {**info, "limits": {"bytes": max_bytes, "pixels": max_pixels}}

    def prepared(body: bytes) -> np.ndarray:
        try:
            image = preprocess.open_image(body, max_pixels)
        except ImageTooLarge as error:
            raise Refused(413, str(error)) from None
        except ImageError as error:
            raise Refused(415, str(error)) from None
        try:
            return predictor.prepare(image)
        except ImageError as error:
            raise Refused(422, str(error)) from None

    turns = threading.BoundedSemaphore(at_once)
    identity = _identity(info)

    def answer(image) -> dict:
        """Decode (an image file's bytes), prepare and predict, in one trip to the thread pool;
        `image` may also be 28x28 pixels from JSON."""
        with turns:
            image = prepared(image) if isinstance(image, bytes) else _pixel_image(image)
            prediction = predictor.predict_prepared(image[None])[0]
        return {**prediction.as_dict(), "model": identity}

    def answer_or_error(image) -> dict:
        """One image of several: its prediction, or why it was refused (the rest go on)."""
        try:
            return answer(image)
        except Refused as refused:
            return {"error": str(refused), "status": refused.status}

    async def predict(request: Request):
        try:
            body = await _body(request, max_bytes)
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind == "multipart/form-data":  # curl -F file=@digit.png, requests' files=
                files = await _uploads(request, body)
                images = files[0] if len(files) == 1 else files
            elif kind == "application/json":
                pixels = _pixels(body)
                images = list(pixels) if pixels.ndim == 3 else pixels
            else:
                images = body
            if not isinstance(images, list):
                return JSONResponse(await run_in_threadpool(answer, images))
            answers = [await run_in_threadpool(answer_or_error, image) for image in images]
            return JSONResponse({"predictions": answers})
        except Refused as refused:
            return _error(refused.status, str(refused))

    async def index(request: Request):
        return HTMLResponse(page)

    async def model(request: Request):
        return JSONResponse(info)

    async def health(request: Request):
        return JSONResponse({"status": "ok"})

    description = openapi(info, max_bytes)

    async def schema(request: Request):
        return JSONResponse(description)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/predict", predict, methods=["POST"]),
            Route("/api/model", model),
            Route("/healthz", health),
            Route("/openapi.json", schema),
        ],
        middleware=[
            Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts)),
            *(
                [
                    Middleware(
                        CORSMiddleware,
                        allow_origins=list(cors),
                        allow_methods=["GET", "POST"],
                        allow_headers=["Content-Type"],
                    )
                ]  # fmt: skip
                if cors
                else []
            ),
        ],
    )


MAX_HEAD = 64 * 1024  # bytes of a request line and headers; past them a 431, and closed
MAX_HEADERS = 100


def http_protocol():
    """uvicorn's httptools protocol with its request head bounded: httptools keeps a header
    being received whole in memory, so one endless header line would grow the server without
    end. The bytes before the head is complete, and the headers, are counted as they come."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class BoundedHead(HttpToolsProtocol):
        head = 0  # bytes received since the current request began, until its head is complete
        counting = True

        def data_received(self, data: bytes) -> None:
            if self.counting:  # (a piece may also hold the start of the body: parsed first)
                self.head += len(data)
            super().data_received(data)
            if self.counting and self.head > MAX_HEAD:  # the head still incomplete
                self._refuse()

        def on_header(self, name: bytes, value: bytes) -> None:
            if len(self.headers) >= MAX_HEADERS:
                return self._refuse()
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self.counting = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self.counting, self.head = True, 0

        def _refuse(self) -> None:
            if not self.transport.is_closing():
                self.transport.write(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n"
                    b"connection: close\r\n\r\n"
                )
                self.transport.close()

    return BoundedHead


def server_options() -> dict:
    """How `serve` runs the app on uvicorn: the bounded head, quiet logs."""
    return {"http": http_protocol(), "log_level": "warning"}


def return_freed_memory() -> bool:
    """Make the C allocator hand large freed blocks back to the system (glibc; elsewhere
    nothing is done, and False returned). A decoded 16-megapixel image and its float copies
    are tens of MB each; glibc raises its threshold for mapping such blocks as they are freed,
    so after a storm of large images the next ones land in the heap, which keeps its size: the
    server stayed 350 MB larger after 20 large uploads. With the threshold fixed at 1 MB, every
    large block is mapped and returned when freed. Called by `serve`, once, in its process."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, 1 << 20))  # M_MMAP_THRESHOLD = -3
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False


def app_for_run(run, device: str = "cpu", **limits) -> Starlette:
    """The app for a run folder: its model loaded once, its name and test accuracy shown."""
    from mnistlab import checkpoint
    from mnistlab.config import model_name

    predictor = Predictor.load(run, device)
    folder = checkpoint.resolve(run).parent
    history = runfiles.read_metrics(folder)
    info = {
        "run": folder.name,
        "weights": checkpoint.weights_digest(predictor.model.state_dict()),
        "model": model_name(predictor.config),
        "config": runfiles.plain(json.loads(json.dumps(predictor.config.__dict__))),
        "test_accuracy": history[-1].get("test_accuracy") if history else None,
        "classes": predictor.classes,
    }
    return create_app(predictor, info, **limits)


def _identity(info: dict) -> dict:
    """What every answer says of the model that gave it."""
    from mnistlab import meta

    return {"run": info.get("run"), "weights": info.get("weights"), "mnistlab": meta.version()}


def openapi(info: dict, max_bytes: int) -> dict:
    """The routes as OpenAPI 3.1, for clients and their generators. Written out, not derived:
    four routes need no framework of request models; tests check every answer against it."""
    classes = len(info.get("classes") or []) or None
    number = {"type": "number", "minimum": 0, "maximum": 1}
    row = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}}
    image28 = {**row, "minItems": 28, "maxItems": 28}
    grid = {"type": "array", "items": image28, "minItems": 28, "maxItems": 28}
    pixels = {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}
    prediction = {
        "type": "object",
        "required": [
            "class",
            "name",
            "confidence",
            "unsure",
            "unfamiliar",
            "verdict",
            "probabilities",
            "top",
            "input",
            "model",
        ],  # fmt: skip
        "properties": {
            "class": {"type": "integer", "minimum": 0},
            "name": {"type": "string"},
            "confidence": {**number, "description": "the top probability, calibrated"},
            "unsure": {"type": "boolean", "description": "confidence under 0.8"},
            "unfamiliar": {
                "type": "boolean",
                "description": "unlike the training images (for digits: probably not one)",
            },
            "verdict": {"type": "string", "description": "the answer in words"},
            "probabilities": {
                "type": "array",
                "items": number,
                "minItems": classes,
                "maxItems": classes,
            },  # fmt: skip
            "top": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "probability"],
                    "properties": {"name": {"type": "string"}, "probability": number},
                },
            },
            "input": {**grid, "description": "the prepared 28x28 image the model saw"},
            "model": {
                "type": "object",
                "required": ["run", "weights", "mnistlab"],
                "properties": {
                    "run": {"type": "string"},
                    "weights": {"type": "string", "description": "a hash of the weights"},
                    "mnistlab": {"type": "string"},
                },
            },
        },
    }
    error = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
    item_error = {
        "type": "object",
        "required": ["error", "status"],
        "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
    }
    batch = {
        "type": "object",
        "required": ["predictions"],
        "properties": {
            "predictions": {
                "type": "array",
                "items": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/Prediction"},
                        {"$ref": "#/components/schemas/ItemError"},
                    ]
                },
            }  # fmt: skip
        },
    }

    def answer(description, schema, kind="application/json"):
        return {"description": description, "content": {kind: {"schema": schema}}}

    def refused(description):
        return answer(description, {"$ref": "#/components/schemas/Error"})

    binary = {"type": "string", "contentMediaType": "application/octet-stream"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"mnistlab: {info.get('run')}",
            "version": _identity(info)["mnistlab"],
            "description": f"{info.get('model')}; bodies up to {max_bytes:,} bytes, "
            f"up to {MAX_FILES} images a request",
        },
        "paths": {
            "/": {
                "get": {
                    "responses": {
                        "200": answer("the drawing page", {"type": "string"}, "text/html")
                    }
                }
            },  # fmt: skip
            "/api/predict": {
                "post": {
                    "summary": "classify one image or several",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "image/*": {"schema": binary},
                            "application/octet-stream": {"schema": binary},
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"file": {"type": "array", "items": binary}},
                                }
                            },
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["pixels"],
                                    "properties": {
                                        "pixels": {
                                            "description": "28x28 numbers in 0-255 (white ink "
                                            "on black, as the dataset's), or a list of them",
                                            "oneOf": [
                                                {"type": "array", "items": pixels["items"]},
                                                {"type": "array", "items": pixels},
                                            ],
                                        }
                                    },
                                }
                            },
                        },
                    },
                    "responses": {
                        "200": answer(
                            "one image's prediction, or several images' answers",
                            {"oneOf": [{"$ref": "#/components/schemas/Prediction"}, batch]},
                        ),
                        "400": refused("a malformed body: empty, bad JSON, wrong shape"),
                        "413": refused("a body or an image over the limits"),
                        "415": refused("not an image of a format read here"),
                        "422": refused("an image with no ink"),
                    },
                }
            },
            "/api/model": {
                "get": {
                    "responses": {
                        "200": answer(
                            "the run served and the limits",
                            {
                                "type": "object",
                                "required": ["run", "weights", "model", "classes", "limits"],
                                "properties": {
                                    "run": {"type": "string"},
                                    "weights": {"type": "string"},
                                    "model": {"type": "string"},
                                    "config": {"type": "object"},
                                    "test_accuracy": {"type": ["number", "null"]},
                                    "classes": {"type": "array", "items": {"type": "string"}},
                                    "limits": {
                                        "type": "object",
                                        "required": ["bytes", "pixels"],
                                        "properties": {
                                            "bytes": {"type": "integer"},
                                            "pixels": {"type": "integer"},
                                        },
                                    },
                                },
                            },
                        )
                    }
                }
            },
            "/healthz": {
                "get": {
                    "responses": {
                        "200": answer(
                            "serving",
                            {"type": "object", "properties": {"status": {"const": "ok"}}},
                        )
                    }
                }
            },
            "/openapi.json": {
                "get": {"responses": {"200": answer("this description", {"type": "object"})}}
            },
        },
        "components": {
            "schemas": {"Prediction": prediction, "Error": error, "ItemError": item_error}
        },
    }
