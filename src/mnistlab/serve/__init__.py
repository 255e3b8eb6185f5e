"""A small web app around a trained run: a page to draw a digit on, and a JSON API.

Starlette on uvicorn (the optional extra 'mnistlab[serve]'): an ASGI app of five routes needs
routing, requests and responses, and a thread pool for blocking work, which is what Starlette
is; its one POST takes images in three encodings, which an OpenAPI document written out
(openapi.py) describes more plainly than request models would. The model is loaded once;
each prediction runs in the thread pool, off the event loop, so requests are received
concurrently (and /healthz answers) while images are worked on one at a time. Input is
bounded before it is decoded (bodies.py): a body over `max_bytes` is refused from its
Content-Length (or as it streams past the limit; the rest, up to DRAIN_BYTES, is read and
dropped first, so that a client sending it whole reads the answer), an image over
`max_pixels` from its header, so a decompression bomb never unpacks. Every error is a 4xx
JSON object with a message, and the server keeps serving.

    GET  /              the page (every asset inline: works offline)
    POST /api/predict   an image file as the body (any type Pillow reads), multipart field
                        `file` (one or several), or JSON {"pixels": 28x28 numbers in 0-255, or
                        a list of such}: class, calibrated confidence, unsure and unfamiliar
                        flags, probabilities, the 28x28 input, the model; several images give
                        {"predictions": [...]}, each an answer or its own error
    GET  /api/model     the run's name, config, test accuracy and the input limits
    GET  /healthz       {"status": "ok"}
    GET  /openapi.json  the routes above as OpenAPI 3.1 (openapi.py; tests check every
                        answer against it)
"""

import json
import threading
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from mnistlab import images, runfiles
from mnistlab.errors import ImageError, ImageTooLarge
from mnistlab.images import MAX_PIXELS
from mnistlab.predict import Predictor, number
from mnistlab.serve.bodies import (
    MAX_BYTES,
    MAX_FILES,
    Refused,
    _body,
    _error,
    _pixel_image,
    _pixels,
    _uploads,
)
from mnistlab.serve.openapi import openapi
from mnistlab.serve.server import MAX_HEAD, MAX_HEADERS, return_freed_memory, server_options

__all__ = [
    "AT_ONCE",
    "LOCAL_HOSTS",
    "MAX_BYTES",
    "MAX_FILES",
    "MAX_HEAD",
    "MAX_HEADERS",
    "MAX_PIXELS",
    "Refused",
    "app_for_run",
    "create_app",
    "openapi",
    "return_freed_memory",
    "server_options",
]

# The names a browser on this machine uses for it; `serve --host` adds its own address.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
# Images worked on at once in each lane, light and heavy (decoded, prepared and classified;
# the rest wait their turn): one.
# That work holds Python's GIL most of the time, and torch starts a team of threads for each
# thread that calls it, so several at once on a few cores only wait on each other (measured
# with benchmarks/serve.py: the figures are in the docs' "Using a model"). A storm of large
# images costs one image's memory (a 4000x4000 PNG decodes to ~300 MB of arrays), and a
# light image's beside it.
AT_ONCE = 1


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
    wait their turn, so a storm of large images costs that many images' memory; light
    images have a lane of their own, so they never wait behind heavy ones.
    Pages elsewhere may call the API only from the `cors` origins (none by default)."""
    page = resources.files("mnistlab").joinpath("static/index.html").read_text()
    # The page reads the limits, and sends a reduced copy of an upload past them.
    info = {**info, "limits": {"bytes": max_bytes, "pixels": max_pixels}}

    # Two lanes, each `at_once` images: light ones (a drawing, a small photo) never wait
    # behind heavy ones (a camera's photo, a progressive JPEG of many scans), which take up
    # to a second or two each; decoding lets go of the GIL, so the lanes do run side by side.
    light_lane, heavy_lane = (
        threading.BoundedSemaphore(at_once),
        threading.BoundedSemaphore(at_once),
    )
    identity = _identity(info)

    def read(body: bytes) -> list:
        try:
            image = images.open_image(body, max_pixels, decode=False)  # the header only
        except ImageTooLarge as error:
            raise Refused(413, str(error)) from None
        except ImageError as error:
            raise Refused(415, str(error)) from None
        with heavy_lane if images.heavy(image) else light_lane:
            try:
                image = images.decoded(image)
            except ImageError as error:
                raise Refused(415, str(error)) from None
            try:
                return predictor.read(image)
            except ImageError as error:
                raise Refused(422, str(error)) from None

    def answer(image) -> dict:
        """Decode (an image file's bytes), prepare and read (a digit, or a number's digits),
        in one trip to the thread pool; `image` may also be 28x28 pixels from JSON."""
        if isinstance(image, bytes):
            digits = read(image)
        else:
            with light_lane:
                digits = predictor.predict_prepared(_pixel_image(image)[None])
        return {**number(digits), "model": identity}

    def answer_or_error(image) -> dict:
        """One image of several: its prediction, or why it was refused (the rest go on)."""
        try:
            return answer(image)
        except Refused as refused:
            return {"error": str(refused), "status": refused.status}

    async def predict(request: Request):
        try:
            _same_origin(request, cors)
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


def _same_origin(request: Request, cors: tuple[str, ...]) -> None:
    """A POST from a page elsewhere is refused unless its origin was allowed (`--cors`):
    whatever its content type, since a text/plain or multipart body needs no CORS preflight,
    and a page the user visits could otherwise make this server work. A request without an
    Origin (curl, a script) has no page behind it; the server's own page sends its own."""
    origin = request.headers.get("origin")
    if origin is None or origin in cors:
        return
    host = request.headers.get("host", "").lower()
    if origin.lower() not in (f"http://{host}", f"https://{host}"):
        raise Refused(
            403,
            f"a request from the page at {origin} is refused: only this server's own page may "
            "post here (start serve with --cors ORIGIN to allow another)",
        )


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
