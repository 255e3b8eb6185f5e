"""The served app, over a real socket: the API under load and abuse, and the page in a real
browser (Debian's chromium driven by Playwright)."""

import contextlib
import io
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnistlab import data
from mnistlab.predict import Predictor
from mnistlab.serve import MAX_BYTES, MAX_PIXELS, app_for_run, server_options

CHROMIUM = "/usr/bin/chromium"
# Headless chromium draws at most 60 frames a second and answers each pointer move at its next
# frame; unthrottled it answers as soon as the page has handled the move, which is what the page
# does with it either way (docs/speed.md, the test suite, gives the times).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-frame-rate-limit"]


@contextlib.contextmanager
def served(app):
    """uvicorn on a free loopback port, in a thread; yields the base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, **server_options()))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def request(url, body=None, kind="image/png", headers=None):
    """(status, parsed JSON) of one request."""
    if body is not None and len(body) > MAX_BYTES:
        return announce(url, len(body), kind)
    sent = urllib.request.Request(url, data=body, headers={"Content-Type": kind, **(headers or {})})
    try:
        with urllib.request.urlopen(sent, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def announce(url, size, kind="image/png"):
    """(status, parsed JSON) of a POST that announces `size` bytes the way curl does for a large
    body (Expect: 100-continue) and sends none of them: a server that refuses by Content-Length
    answers at once. Sending the body regardless races the server's close (a broken pipe or a
    reset instead of the answer) whatever the server does; if the server reads the body instead
    of refusing it, it says 100 Continue and waits, and this times out."""
    import http.client

    host, port = url.removeprefix("http://").split("/")[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("POST", "/" + url.removeprefix("http://").partition("/")[2])
        connection.putheader("Content-Type", kind)
        connection.putheader("Content-Length", str(size))
        connection.putheader("Expect", "100-continue")
        connection.endheaders()
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def upload_then_read(url, body: bytes, chunked: bool = False) -> tuple[int, dict]:
    """(status, parsed JSON) of a POST sent as Python's urllib sends one: the whole body, in
    pieces over a slow link, with `Connection: close`, and only then the answer read.
    chunked: no Content-Length."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    head = (
        f"POST /api/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\n"
        f"Connection: close\r\n{length}\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall((head + "\r\n").encode())
        for start in range(0, len(body), 65_536):
            piece = body[start : start + 65_536]
            connection.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            time.sleep(0.002)
        if chunked:
            connection.sendall(b"0\r\n\r\n")
        answer = connection.makefile("rb")
        status = int(answer.readline().split()[1])
        headers = {}
        while (line := answer.readline().strip()) != b"":
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, json.loads(answer.read(int(headers["content-length"])))


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def digit_png(array: np.ndarray, scale: int = 6) -> bytes:
    """A dataset image drawn black on white, larger."""
    return png(Image.fromarray(255 - array).resize((28 * scale, 28 * scale)))


@pytest.mark.slow
def test_the_api_under_load_and_abuse(tiny, tiny_run):
    dataset = data.load("tiny", tiny[0])
    good = [digit_png(dataset.test.images[index].numpy()) for index in range(40)]
    predictor = Predictor.load(tiny_run)
    expected = [p.probabilities for p in predictor.predict(good)]
    malformed = [
        (b"\x00\x01 garbage, not an image" * 10, "image/png", 415),
        (b"", "image/png", 400),
        (bytes(3_000_000), "application/octet-stream", 413),
        (png(Image.new("1", (10_000, 10_000))), "image/png", 413),
        (png(Image.new("1", (20_000, 20_000))), "image/png", 413),  # past Pillow's own limit
        (json.dumps({"pixels": [[0] * 27] * 28}).encode(), "application/json", 400),
        (png(Image.new("L", (200, 200), 255)), "image/png", 422),
        (json.dumps({"pixels": "nope"}).encode(), "application/json", 400),
        (b"{not json", "application/json", 400),
    ]
    jobs = []  # 200 requests, every fifth one malformed
    for index in range(200):
        if index % 5 == 4:
            jobs.append(("bad", malformed[(index // 5) % len(malformed)]))
        else:
            jobs.append(("good", index % len(good)))
    with served(app_for_run(tiny_run)) as url:
        health, stop = [], threading.Event()

        def poll():
            while not stop.is_set():
                health.append(request(url + "/healthz")[0])
                time.sleep(0.02)

        def send(job):
            kind, what = job
            if kind == "good":
                return kind, what, request(url + "/api/predict", good[what])
            body, content_type, _ = what
            return kind, what, request(url + "/api/predict", body, content_type)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            with ThreadPoolExecutor(16) as pool:
                results = list(pool.map(send, jobs))
        finally:
            stop.set()
            poller.join()
        status, model = request(url + "/api/model")
    for kind, what, (code, answer) in results:
        if kind == "good":
            assert code == 200, answer
            assert answer["probabilities"] == pytest.approx(expected[what], abs=1e-5)
            assert np.array(answer["input"]).shape == (28, 28)
            assert answer["class"] == int(np.argmax(expected[what]))
        else:
            assert code == what[2], (what[2], answer)
            assert isinstance(answer["error"], str) and answer["error"]
            if code == 413:  # too large: the error says what to send instead
                assert "send a smaller copy" in answer["error"], answer
    assert len(health) > 3 and set(health) == {200}
    assert status == 200 and model["run"] == "tiny-run" and 0 < model["test_accuracy"] <= 1
    assert model["limits"] == {"bytes": MAX_BYTES, "pixels": MAX_PIXELS}


def test_the_server_works_on_one_image_at_a_time(tiny, tiny_run):
    # Several predictions at once only wait on each other (the GIL, and a torch thread team
    # per calling thread: serve.AT_ONCE), and a storm of large images costs one image's
    # memory: files and JSON pixels alike take their turn, whatever the clients' number.
    from mnistlab.serve import create_app

    dataset = data.load("tiny", tiny[0])
    predictor = Predictor.load(tiny_run)
    working, most, count = [0], [0], threading.Lock()

    def counted(method):
        def call(*args):
            with count:
                working[0] += 1
                most[0] = max(most[0], working[0])
            try:
                time.sleep(0.005)  # (a window wide enough for two to meet, were they let)
                return method(*args)
            finally:
                with count:
                    working[0] -= 1

        return call

    predictor.prepare = counted(predictor.prepare)
    predictor.predict_prepared = counted(predictor.predict_prepared)
    images = [dataset.test.images[index].numpy() for index in range(24)]
    bodies = [(digit_png(image), "image/png") for image in images[:16]]
    pixels = [json.dumps({"pixels": image.tolist()}).encode() for image in images[16:]]
    bodies += [(body, "application/json") for body in pixels]
    with served(create_app(predictor, {"run": "tiny-run"})) as url, ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda sent: request(url + "/api/predict", *sent)[0], bodies))
    assert codes == [200] * len(bodies)
    assert most[0] == 1


def test_a_client_that_sends_a_large_body_whole_reads_the_413(tiny_run):
    # Most clients send the whole body before they read. On a kept-alive connection uvicorn
    # drops the rest of a refused body itself; one that asked to close it (Python's urllib)
    # was closed with the body unread, and got a reset instead of the answer. The server now
    # reads and drops the rest first.
    with served(app_for_run(tiny_run)) as url:
        for chunked in (False, True):
            status, answer = upload_then_read(url, bytes(5_000_000), chunked)
            assert status == 413 and "send a smaller copy" in answer["error"], answer
        assert request(url + "/healthz")[0] == 200


def test_a_body_over_the_limit_is_refused_before_it_is_read(tiny_run):
    # A Content-Length that announces 50 MB: refused at once, nothing read.
    import http.client

    with served(app_for_run(tiny_run)) as url:
        host, port = url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.putrequest("POST", "/api/predict")
        connection.putheader("Content-Type", "image/png")
        connection.putheader("Content-Length", str(50_000_000))
        connection.endheaders()
        connection.send(b"\x89PNG" * 100)  # a start; the rest never comes
        response = connection.getresponse()
        assert response.status == 413 and "limit" in json.loads(response.read())["error"]
        assert request(url + "/healthz")[0] == 200


def test_serve_binds_loopback_unless_told(capsys, monkeypatch, tiny_run):
    import uvicorn

    from mnistlab.cli import main

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(options))
    assert main(["serve", str(tiny_run)]) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8000
    assert "http://127.0.0.1:8000/" in capsys.readouterr().out


def browser_available() -> bool:
    if shutil.which(CHROMIUM) or os.path.exists(CHROMIUM):
        return True
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
    pytest.skip("needs Debian's chromium (apt install chromium)")
    return False


def stroke(page, box, points):
    """A pointer stroke through `points`, each (x, y) in 0-1 of the canvas: about 30 moves in
    all, as a hand's stroke gives (each is a round trip to the browser, ~20 ms)."""

    def at(point):
        return box["x"] + point[0] * box["width"], box["y"] + point[1] * box["height"]

    steps = max(1, 30 // len(points))
    page.mouse.move(*at(points[0]))
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*at(point), steps=steps)
    page.mouse.up()


def shown(page) -> tuple[str, list[float]]:
    page.wait_for_timeout(50)
    name = page.locator("#prediction").text_content()
    bars = page.locator(".bar").evaluate_all("rows => rows.map(r => Number(r.dataset.probability))")
    return name, bars


def answered(page):
    """Until the page shows the answer to its latest input (its answer regions not busy)."""
    page.wait_for_function(
        "(shown => shown.getAttribute('aria-busy') === 'false' && shown.dataset.class"
        " !== undefined)(document.getElementById('prediction'))",
        timeout=15_000,
    )


def wait_for_class(page, label: str):
    page.wait_for_function(
        f"document.getElementById('prediction').dataset.class === '{label}'", timeout=15_000
    )


def phone_photo(array: np.ndarray, path: Path) -> None:
    """A digit on paper as a phone photographs it: 3024x2268, grey paper with grain, the digit
    large in the middle, a JPEG of a few MB."""
    rng = np.random.default_rng(0)
    sheet = np.full((2268, 3024), 235.0)
    digit = np.asarray(Image.fromarray(255 - array).resize((1400, 1400), Image.BILINEAR), float)
    sheet[434:1834, 812:2212] = np.minimum(sheet[434:1834, 812:2212], digit)
    sheet += rng.normal(0, 6, sheet.shape)
    colour = np.stack([sheet, 0.98 * sheet, 0.95 * sheet], axis=-1)
    Image.fromarray(np.clip(colour, 0, 255).astype(np.uint8)).save(path, quality=95)


@pytest.mark.slow
@pytest.mark.realdata
def test_the_page_in_a_real_browser(trained, mnist, tmp_path):
    browser_available()
    from playwright.sync_api import sync_playwright

    upload = tmp_path / "digit.png"
    index = int((mnist.test.labels == 3).nonzero()[0])
    upload.write_bytes(digit_png(mnist.test.images[index].numpy()))
    photo = tmp_path / "photo.jpg"
    phone_photo(mnist.test.images[int((mnist.test.labels == 7).nonzero()[0])].numpy(), photo)
    assert photo.stat().st_size > MAX_BYTES
    screenshot = Path(os.environ.get("MNISTLAB_SCREENSHOT", tmp_path / "serve.png"))
    with served(app_for_run(trained)) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 960, "height": 460})
        # the size of each image the page posts (a drawing: a reduced copy of the canvas)
        page.add_init_script(
            "window.sentSizes = []; const post = window.fetch;"
            "window.fetch = (url, options) => { const body = options && options.body;"
            " if (body instanceof Blob) createImageBitmap(body).then("
            "(b) => window.sentSizes.push([body.type, b.width, b.height]));"
            " return post(url, options); };"
        )
        page.goto(url + "/")
        page.wait_for_function("document.querySelectorAll('.bar').length === 10")
        assert "test accuracy 98." in page.locator("#model").text_content()
        box = page.locator("#canvas").bounding_box()
        stroke(page, box, [(0.5, 0.15 + 0.07 * i) for i in range(11)])  # a vertical stroke
        wait_for_class(page, "1")
        name, bars = shown(page)
        assert name == "1" and int(np.argmax(bars)) == 1 and sum(bars) == pytest.approx(1, abs=1e-3)
        canvas_side = page.evaluate("document.getElementById('canvas').width")
        sizes = {tuple(size) for size in page.evaluate("window.sentSizes")}
        assert canvas_side > 112 and sizes == {("image/png", 112, 112)}, (canvas_side, sizes)
        page.click("#clear")
        assert page.locator("#prediction").text_content() == "–"
        loop = [(0.5 + 0.22 * np.sin(t), 0.5 - 0.3 * np.cos(t)) for t in np.linspace(0, 6.4, 40)]
        stroke(page, box, loop)  # a closed loop
        wait_for_class(page, "0")
        assert shown(page)[0] == "0"
        page.screenshot(path=str(screenshot))
        # two digits side by side: read as a number, each digit's confidence in words
        page.click("#clear")
        stroke(page, box, [(0.3, 0.2 + 0.06 * i) for i in range(11)])  # a 1
        stroke(page, box, [(0.5, 0.22), (0.8, 0.22), (0.62, 0.82)])  # a 7
        page.wait_for_function(
            "document.getElementById('prediction').textContent === '17'", timeout=15_000
        )
        assert page.locator("#verdict").text_content().startswith("a number: 1 ")
        page.set_input_files("#upload", str(upload))
        wait_for_class(page, "3")
        # A phone's photo, past the server's byte limit: the page sends a reduced copy.
        page.set_input_files("#upload", str(photo))
        wait_for_class(page, "7")
        assert page.locator("#status").text_content() == ""
        browser.close()
    assert screenshot.stat().st_size > 10_000


def _arc(cx, cy, rx, ry, start, end, count=24):
    """Points on an ellipse from angle `start` to `end` (degrees, 0 = right, 90 = down)."""
    angles = np.radians(np.linspace(start, end, count))
    return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles]


# Each digit as a person draws it, in strokes of (x, y) points in 0-1 of the box it fills.
DRAWN = {
    "0": [_arc(0.5, 0.5, 0.3, 0.45, -90, 275)],
    "1": [[(0.42, 0.18), (0.55, 0.05), (0.55, 0.95)]],
    "2": [_arc(0.5, 0.3, 0.3, 0.25, 190, 390) + [(0.2, 0.95), (0.85, 0.95)]],
    "3": [_arc(0.5, 0.27, 0.28, 0.22, 200, 450) + _arc(0.5, 0.72, 0.32, 0.23, 270, 520)],
    "4": [[(0.55, 0.05), (0.15, 0.65), (0.9, 0.65)], [(0.65, 0.35), (0.65, 0.98)]],
    "5": [[(0.8, 0.05), (0.3, 0.05), (0.25, 0.45)] + _arc(0.5, 0.68, 0.32, 0.28, 230, 500)],
    "6": [[(0.7, 0.05), (0.35, 0.4)] + _arc(0.5, 0.7, 0.28, 0.27, 180, 540)],
    "7": [[(0.15, 0.08), (0.85, 0.08), (0.4, 0.98)]],
    "8": [_arc(0.5, 0.27, 0.25, 0.22, 90, 450), _arc(0.5, 0.72, 0.3, 0.26, -90, 270)],
    "9": [_arc(0.5, 0.3, 0.3, 0.25, 0, 360), [(0.8, 0.3), (0.75, 0.98)]],
}
SIZES = {
    "large": (0.1, 0.1, 0.8),
    "half": (0.45, 0.45, 0.45),
    "small, in a corner": (0.05, 0.05, 0.3),
}


def draw_digit(page, box, digit, size):
    """The digit's strokes with the mouse, in the part of the canvas `size` names."""
    left, top, span = SIZES[size]
    for points in DRAWN[digit]:
        stroke(page, box, [(left + span * x, top + span * y) for x, y in points])


def touch_stroke(page, session, box, points):
    """A finger's stroke: touch events through the DevTools protocol (Chromium turns them into
    pointer events, as on a phone)."""

    def at(point):
        return {"x": box["x"] + point[0] * box["width"], "y": box["y"] + point[1] * box["height"]}

    session.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [at(points[0])]})
    for point in points[1:]:
        session.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [at(point)]})
    session.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


@pytest.mark.slow
@pytest.mark.realdata
def test_the_page_on_a_phone_by_keyboard_and_against_races(trained, mnist, tmp_path, capsys):
    browser_available()
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    upload = tmp_path / "digit.png"
    upload.write_bytes(
        digit_png(mnist.test.images[int((mnist.test.labels == 3).nonzero()[0])].numpy())
    )
    with served(app_for_run(trained)) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # A phone: 375x667 CSS pixels at 2 device pixels each, touch.
        phone = browser.new_context(
            viewport={"width": 375, "height": 667}, device_scale_factor=2, is_mobile=True,
            has_touch=True,
        )  # fmt: skip
        page = phone.new_page()
        favicons = []
        page.on("request", lambda r: favicons.append(r.url) if "favicon" in r.url else None)
        page.goto(url + "/")
        page.wait_for_function("document.querySelectorAll('.bar').length === 10")
        canvas = page.locator("#canvas")
        box = canvas.bounding_box()
        assert box["x"] >= 8 and box["x"] + box["width"] <= 375 - 8  # off the screen's edges
        assert canvas.evaluate("c => c.width") == 2 * round(box["width"] - 4)  # pixel density
        last = page.locator(".bar").last.bounding_box()
        assert last["y"] + last["height"] <= 667  # every bar in view, without scrolling
        session = phone.new_cdp_session(page)
        touch_stroke(page, session, box, [(0.5, 0.15 + 0.07 * i) for i in range(11)])
        wait_for_class(page, "1")
        assert not favicons  # the icon is in the page: no request, no 404
        # The Clear race: Clear right after a stroke, before the prediction was due.
        stroke(page, box, [(0.3, 0.3), (0.7, 0.7)])
        assert page.locator("#prediction").get_attribute("aria-busy") == "true"  # an answer due
        page.click("#clear")
        page.wait_for_timeout(600)
        assert page.locator("#prediction").text_content() == "–"
        assert page.locator("#prediction").get_attribute("aria-busy") == "false"
        assert page.locator("#status").text_content() == ""
        phone.close()

        # Keyboard only: Tab to the upload control, Enter opens the file chooser, Escape clears.
        page = browser.new_page(viewport={"width": 960, "height": 600})
        page.goto(url + "/")
        page.wait_for_function("document.querySelectorAll('.bar').length === 10")
        assert "draw one digit" in page.locator("#canvas").get_attribute("aria-label")
        assert page.locator("#model").text_content().startswith(trained.name + ": MLP")
        for _ in range(6):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "upload":
                break
        assert page.evaluate("document.activeElement.id") == "upload"
        for _ in range(3):  # a key press lost by a busy headless browser is pressed again
            try:
                with page.expect_file_chooser(timeout=10_000) as chooser:
                    page.keyboard.press("Enter")
                break
            except PlaywrightTimeout:
                assert page.evaluate("document.activeElement.id") == "upload"
        else:
            pytest.fail("Enter on the focused upload button opened no file chooser")
        chooser.value.set_files(str(upload))
        wait_for_class(page, "3")
        labels = page.locator(".bar").evaluate_all("rows => rows.map(r => r.ariaLabel)")
        assert labels[3].startswith("3: ") and labels[3].endswith("%")
        page.keyboard.press("Escape")
        assert page.locator("#prediction").text_content() == "–"
        # The layout holds still when an error is shown.
        before = page.locator("#prediction").bounding_box()
        page.evaluate("document.getElementById('status').textContent = 'x'.repeat(300)")
        assert page.locator("#prediction").bounding_box() == before

        # Digits drawn with the mouse at three sizes, scored on the page.
        box = page.locator("#canvas").bounding_box()
        right = {size: 0 for size in SIZES}
        for size in SIZES:
            for digit in DRAWN:
                page.keyboard.press("Escape")
                draw_digit(page, box, digit, size)
                answered(page)  # the answer to the last stroke
                right[size] += page.locator("#prediction").get_attribute("data-class") == digit
        browser.close()
    with capsys.disabled():
        print("\ndrawn on the page, right of 10:", right)
    assert sum(right.values()) >= 26 and min(right.values()) >= 8


def test_hostile_bodies_and_hosts_get_4xx_answers_and_the_server_keeps_serving(tiny_run):
    import http.client

    with served(app_for_run(tiny_run)) as url:
        api = url + "/api/predict"
        nested = b'{"pixels": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        huge = b'{"pixels": [[' + b"9" * 401 + b"]]}"
        for body, status, says in (
            (nested, 400, "send JSON"),  # was a RecursionError and a 500
            (huge, 400, "send JSON"),  # was an OverflowError and a 500
            (json.dumps({"pixels": [[0] * 28] * 28}).encode(), 422, "blank"),  # was class 1
        ):
            code, answer = request(api, body, "application/json")
            assert code == status and says in answer["error"], (code, answer)
        # DNS rebinding: a page at evil.example whose name resolves to 127.0.0.1.
        host, port = url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("GET", "/api/model", headers={"Host": "evil.example"})
        assert connection.getresponse().status == 400
        connection.close()
        assert request(url + "/healthz")[0] == 200


def test_serve_says_in_one_line_when_it_cannot_listen(capsys, tiny_run):
    import socket

    from mnistlab.cli import main

    assert main(["serve", str(tiny_run), "--port", "99999"]) == 2
    assert "--port: must be between 1 and 65535" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(tiny_run), "--port", str(port)]) == 2
    captured = capsys.readouterr()
    assert f"--port: cannot listen on 127.0.0.1:{port}" in captured.err
    assert captured.err.count("\n") == 1 and "serving" not in captured.out


def test_an_endless_or_crowded_request_head_is_cut_off_and_the_server_keeps_serving(tiny_run):
    import socket

    from mnistlab.serve import MAX_HEAD, MAX_HEADERS

    def send(head: bytes) -> bytes:
        with socket.create_connection(address, timeout=30) as client:
            try:
                for start in range(0, len(head), 65536):
                    client.sendall(head[start : start + 65536])
            except (BrokenPipeError, ConnectionResetError):
                pass  # cut off while sending: the answer is still there to read
            return client.recv(200)

    with served(app_for_run(tiny_run)) as url:
        host, port = url.removeprefix("http://").split(":")
        address = (host, int(port))
        endless = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"a" * 4 * MAX_HEAD
        crowded = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(
            b"X-%d: 1\r\n" % n for n in range(MAX_HEADERS + 5)
        ) + b"\r\n"  # fmt: skip
        for head in (endless, crowded):
            assert send(head).startswith(b"HTTP/1.1 431")
            assert request(url + "/healthz")[0] == 200
        # A request within the bounds is served as ever.
        ordinary = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        assert send(ordinary).startswith(b"HTTP/1.1 200")


def test_a_request_head_sent_by_halves_or_not_at_all_is_timed_out(tiny_run, monkeypatch):
    import socket

    from mnistlab.serve import server

    monkeypatch.setattr(server, "HEAD_SECONDS", 1.0)
    with served(app_for_run(tiny_run)) as url:
        host, port = url.removeprefix("http://").split(":")
        half = socket.create_connection((host, int(port)), timeout=30)
        half.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
        silent = socket.create_connection((host, int(port)), timeout=30)
        started = time.monotonic()
        assert half.recv(200).startswith(b"HTTP/1.1 408") and half.recv(200) == b""  # closed
        assert silent.recv(200) == b""  # nothing sent, nothing answered: closed
        assert time.monotonic() - started < 10
        half.close()
        silent.close()
        # a slow but whole head inside the time, and a kept-alive connection, are served
        with socket.create_connection((host, int(port)), timeout=30) as client:
            for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"\r\n"):
                client.sendall(piece)
                time.sleep(0.3)
            assert client.recv(200).startswith(b"HTTP/1.1 200")
            time.sleep(1.5)  # longer than a head may take, but between requests
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert client.recv(200).startswith(b"HTTP/1.1 200")


def multipart(*parts: tuple[str, bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body as curl -F sends it, and its content type."""
    boundary = "mnistlab-test-boundary"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="x.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + content
        + b"\r\n"
        for name, content in parts
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_multipart_uploads_one_file_or_several(tiny_run, monkeypatch):
    from PIL import Image

    from mnistlab.serve import bodies

    digit = Image.new("L", (40, 40), 255)
    digit.paste(0, (15, 5, 25, 35))
    buffer = io.BytesIO()
    digit.save(buffer, format="PNG")
    good, blank = buffer.getvalue(), io.BytesIO()
    Image.new("L", (40, 40), 255).save(blank, format="PNG")
    with served(app_for_run(tiny_run)) as url:
        api = url + "/api/predict"
        code, one = request(api, *multipart(("file", good)))
        assert code == 200 and "class" in one and len(one["probabilities"]) == 10
        code, several = request(api, *multipart(("file", good), ("file", blank.getvalue())))
        answers = several["predictions"]
        assert code == 200 and "class" in answers[0] and "blank" in answers[1]["error"]
        code, answer = request(api, *multipart(("image", good)))
        assert code == 400 and "multipart field `file`" in answer["error"]
        # a server without python-multipart says so (and a raw body still works there)
        monkeypatch.setattr(bodies, "_multipart_installed", lambda: False)
        code, answer = request(api, *multipart(("file", good)))
        assert code == 415 and "python-multipart" in answer["error"]


def test_answers_name_their_model_and_cors_is_off_unless_asked(tiny_run):
    import http.client

    from mnistlab import __version__, checkpoint

    saved = checkpoint.load(tiny_run)
    expected = checkpoint.weights_digest(saved["model"])
    pixels = json.dumps({"pixels": [[0] * 10 + [255] * 8 + [0] * 10] * 28}).encode()

    def preflight(url):
        host, port = url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        headers = {"Origin": "https://lab.example", "Access-Control-Request-Method": "POST"}
        connection.request("OPTIONS", "/api/predict", headers=headers)
        response = connection.getresponse()
        response.read()
        connection.close()
        return response.getheader("access-control-allow-origin")

    with served(app_for_run(tiny_run)) as url:
        code, answer = request(url + "/api/predict", pixels, "application/json")
        assert code == 200 and answer["model"] == {
            "run": tiny_run.name, "weights": expected, "mnistlab": __version__}  # fmt: skip
        assert request(url + "/api/model")[1]["weights"] == expected
        assert preflight(url) is None
    with served(app_for_run(tiny_run, cors=("https://lab.example",))) as url:
        assert preflight(url) == "https://lab.example"
    # The digest follows the weights, not the folder: another model, another digest.
    changed = {name: value + 1 for name, value in saved["model"].items()}
    assert checkpoint.weights_digest(changed) != expected
    assert checkpoint.weights_digest({k: v.clone() for k, v in saved["model"].items()}) == expected


def test_a_page_elsewhere_cannot_post_whatever_it_sends_unless_allowed(tiny_run):
    # A form or fetch from another site needs no CORS preflight for text/plain or multipart:
    # its Origin is what tells. The server's own page, and clients with no page, still work.
    bar = np.zeros((28, 28), np.uint8)
    bar[4:24, 12:16] = 255
    one = digit_png(bar)
    evil = {"Origin": "https://evil.example"}
    with served(app_for_run(tiny_run)) as url:
        api = url + "/api/predict"
        for body, kind in ((one, "text/plain"), (one, "image/png"), multipart(("file", one))):
            code, answer = request(api, body, kind, evil)
            assert code == 403 and "https://evil.example" in answer["error"], (kind, answer)
        assert request(api, one, "image/png", {"Origin": "null"})[0] == 403  # a sandboxed page
        assert request(api, one, "image/png", {"Origin": url})[0] == 200  # the page it serves
        assert request(api, one, "image/png")[0] == 200  # curl, a script
    with served(app_for_run(tiny_run, cors=("https://evil.example",))) as url:
        assert request(url + "/api/predict", one, "image/png", evil)[0] == 200


@pytest.mark.slow
@pytest.mark.realdata
def test_a_number_is_answered_digit_by_digit_as_the_openapi_description_says(trained, mnist):
    import jsonschema

    from test_use import _number_picture

    with served(app_for_run(trained)) as url:
        description = request(url + "/openapi.json")[1]
        status, answer = request(url + "/api/predict", _number_picture(mnist, [0, 1, 2], 4))
        schema = description["paths"]["/api/predict"]["post"]["responses"]["200"]["content"][
            "application/json"]["schema"]  # fmt: skip
        jsonschema.validate(answer, {**schema, "components": description["components"]})
    want = "".join(str(int(mnist.test.labels[i])) for i in (0, 1, 2))
    assert status == 200 and answer["number"] == want and len(answer["digits"]) == 3
    assert answer["verdict"] == want and answer["model"]["run"]


def test_json_batches_and_every_answer_matches_the_openapi_description(tiny, tiny_run):
    import jsonschema

    dataset = data.load("tiny", tiny[0])
    digits = dataset.test.images[:3].numpy()
    blank = np.zeros((28, 28), int)
    with served(app_for_run(tiny_run)) as url:
        status, description = request(url + "/openapi.json")
        assert status == 200 and description["openapi"].startswith("3.1")
        paths = description["paths"]
        api = url + "/api/predict"
        one_png = digit_png(digits[0])
        cases = [
            ("/api/predict", request(api, one_png)),
            (
                "/api/predict",
                request(
                    api, json.dumps({"pixels": digits[0].tolist()}).encode(), "application/json"
                ),
            ),  # fmt: skip
            ("/api/predict", request(api, *multipart(("file", one_png), ("file", one_png)))),
            ("/api/predict", request(api, b"", "image/png")),
            ("/api/predict", request(api, b"not an image at all", "image/png")),
            ("/api/predict", request(api, png(Image.new("L", (64, 64), 255)))),
            ("/api/predict", announce(api, MAX_BYTES + 1)),
        ]
        # A batch in JSON: each image answered, a blank one refused on its own.
        batch = json.dumps({"pixels": [digits[1].tolist(), blank.tolist(), digits[2].tolist()]})
        status, answer = request(api, batch.encode(), "application/json")
        cases.append(("/api/predict", (status, answer)))
        assert status == 200 and [a.get("status") for a in answer["predictions"]] == [
            None,
            422,
            None,
        ]
        predictor = Predictor.load(tiny_run)
        expected = [p.label for p in predictor.predict_prepared(digits[[1, 2]])]
        assert [answer["predictions"][k]["class"] for k in (0, 2)] == expected
        too_many = json.dumps({"pixels": [digits[0].tolist()] * 17}).encode()
        status, answer = request(api, too_many, "application/json")
        assert status == 400 and "1 to 16 images" in answer["error"]
        cases.append(("/api/predict", (status, answer)))
        for path in ("/api/model", "/healthz", "/openapi.json"):
            cases.append((path, request(url + path)))
        for path, (status, body) in cases:
            method = "post" if path == "/api/predict" else "get"
            responses = paths[path][method]["responses"]
            assert str(status) in responses, (path, status, body)
            schema = responses[str(status)]["content"]["application/json"]["schema"]
            jsonschema.validate(body, {**schema, "components": description["components"]})
        statuses = {status for path, (status, _) in cases if path == "/api/predict"}
        assert statuses == {200, 400, 413, 415, 422}
        # and the description is what it says it is
        jsonschema.validate({"pixels": digits[0].tolist()}, paths["/api/predict"]["post"][
            "requestBody"]["content"]["application/json"]["schema"])  # fmt: skip


def test_a_body_that_ends_before_its_content_length_is_a_400_not_a_crash():
    import asyncio

    from starlette.requests import Request

    from mnistlab.serve import bodies

    messages = iter(
        [
            {"type": "http.request", "body": b"\x89PNG\r\n\x1a\n", "more_body": True},
            {"type": "http.disconnect"},  # the client stopped sending
        ]
    )

    async def receive():
        return next(messages)

    scope = {"type": "http", "method": "POST", "headers": [(b"content-length", b"1000")]}
    with pytest.raises(bodies.Refused, match="ended after 8 bytes, before its Content-Length"):
        asyncio.run(bodies._body(Request(scope, receive), MAX_BYTES))


def test_serve_hands_large_freed_blocks_back_to_the_system():
    import sys

    from mnistlab.serve import return_freed_memory

    # (glibc: the mapping threshold fixed, so a storm of large images leaves no heap behind;
    # benchmarks/serve.py measures the memory)
    assert return_freed_memory() is sys.platform.startswith("linux")


def test_pixels_and_parts_of_the_wrong_kind_are_said_as_such(tiny_run):
    row = [0] * 10 + [255] * 8 + [0] * 10
    with served(app_for_run(tiny_run)) as url:
        api = url + "/api/predict"
        for pixels, says in (
            ([[str(v) for v in row]] * 28, "not text or true/false"),  # "255"
            ([[v > 0 for v in row]] * 28, "not text or true/false"),  # true
            (255, "got a single number"),
            ([row] * 27, "got 27x28"),
        ):
            body = json.dumps({"pixels": pixels}).encode()
            code, answer = request(api, body, "application/json")
            assert code == 400 and says in answer["error"], (pixels, answer)
        # a multipart `file` part sent as text (no filename), not as a file
        boundary = "mnistlab-text-part"
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"\r\n\r\n'
            f"not a file\r\n--{boundary}--\r\n"
        ).encode()
        code, answer = request(api, body, f"multipart/form-data; boundary={boundary}")
        assert code == 400 and "holds text, not a file" in answer["error"], answer


def _slow_jpeg() -> bytes:
    """The slowest JPEG to decode under the limits, as benchmarks/serve.py makes it."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from serve import worst_jpeg

    return worst_jpeg()


def test_a_drawing_never_waits_behind_an_image_that_is_slow_to_decode(tiny, tiny_run):
    from mnistlab import images

    slow = _slow_jpeg()
    assert images.heavy(images.open_image(slow, decode=False))
    drawing = digit_png(data.load("tiny", tiny[0]).test.images[0].numpy())
    assert not images.heavy(images.open_image(drawing, decode=False))
    finished = []
    with served(app_for_run(tiny_run)) as url, ThreadPoolExecutor(2) as pool:
        api = url + "/api/predict"

        def post(name, body, kind):
            status = request(api, body, kind)[0]
            finished.append(name)
            return status

        heavy = pool.submit(post, "heavy", slow, "image/jpeg")
        time.sleep(0.2)  # the heavy one is being decoded
        light = pool.submit(post, "light", drawing, "image/png")
        assert light.result() == 200 and heavy.result() == 422  # (a blank page: no ink)
    assert finished == ["light", "heavy"]
