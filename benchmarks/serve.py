"""Prediction latency in process, and the server's throughput for PNG uploads.

    python benchmarks/serve.py [--data-dir DIR] [--run RUN] [--seconds 10]

Trains the default MLP (or takes --run), then measures:
- `Predictor.predict` on one handwriting-like PNG at a time, in this process: median and p99;
- `mnistlab serve` in its own process, loaded by 1, 8 and 32 concurrent clients posting PNG
  images over keep-alive connections for --seconds each: predictions per second, p50 and
  p99 latency. The clients run in this process, on the same 2 cores as the server.
- drawings as the page posts them, measured by ApacheBench (`ab`, Debian's apache2-utils: a
  client that is not this code's): 8 test digits drawn at 7x on a 280x280 canvas and saved
  as the canvas saves them (RGBA PNG, opaque), posted at that size and as the 112x112 copy
  the page sends, by 1, 8 and 32 keep-alive clients: requests per second and p99;
Then, hostile clients:
- a storm: 20 clients at once each posting a 4000x4000 PNG (70 KB, 16 MP decoded): the
  server's resident memory before, at its peak, and a few seconds after;
- 4 clients each streaming one endless header line while another polls /healthz: its
  latency, p50 and the worst;
- the worst JPEG this machine could make under the limits: 16 megapixels, progressive, its
  last scan repeated up to the 100 scans read (about 90 KB): 1 and 4 clients posting it
  without pause beside one client posting drawings: the seconds each worst image took, and
  the drawing client's p50 and worst latency.
"""

import argparse
import contextlib
import http.client
import io
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mnistlab import data
from mnistlab.config import Runtime, TrainConfig
from mnistlab.predict import Predictor
from mnistlab.runs import Run


def images(dataset, count=64) -> list[bytes]:
    """Test digits drawn black on white at 6x, off-centre on a 240x200 canvas, as PNG."""
    rng = np.random.default_rng(0)
    out = []
    for index in range(count):
        digit = Image.fromarray(255 - dataset.test.images[index].numpy()).resize((168, 168))
        canvas = Image.new("L", (240, 200), 255)
        canvas.paste(digit, (int(rng.integers(0, 72)), int(rng.integers(0, 32))))
        buffer = io.BytesIO()
        canvas.save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def canvases(dataset, side: int, count: int = 8) -> list[bytes]:
    """Test digits drawn black on white at 7x on a 280x280 canvas, saved as a browser saves a
    canvas (RGBA PNG, opaque), at `side` px (the page sends a 112-px copy)."""
    out = []
    for index in range(count):
        digit = Image.fromarray(255 - dataset.test.images[index].numpy()).resize((196, 196))
        canvas = Image.new("RGBA", (280, 280), (255, 255, 255, 255))
        canvas.paste(digit.convert("RGBA"), (42, 42))
        if side != 280:
            canvas = canvas.resize((side, side), Image.BOX)
        buffer = io.BytesIO()
        canvas.save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def apache_bench(port: int, bodies: list[bytes], clients: int, requests: int) -> str:
    """`ab` posting the bodies in turn (one file each, a share of the requests), keep-alive."""
    import shutil

    if shutil.which("ab") is None:
        return "ab not found (apt install apache2-utils)"
    rates, worst = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for index, body in enumerate(bodies[:2]):
            path = Path(scratch) / f"{index}.png"
            path.write_bytes(body)
            done = subprocess.run(
                ["ab", "-q", "-k", "-c", str(clients), "-n", str(requests // 2), "-p", str(path),
                 "-T", "image/png", f"http://127.0.0.1:{port}/api/predict"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            for line in done.stdout.splitlines():
                if line.startswith("Requests per second:"):
                    rates.append(float(line.split()[3]))
                if line.strip().startswith("99%"):
                    worst.append(float(line.split()[1]))
                if line.startswith("Non-2xx responses:"):
                    return f"{line.strip()}: {done.stdout[-500:]}"
    return f"{statistics.mean(rates):7.0f} requests/s, p99 {max(worst):4.0f} ms"


def worst_jpeg() -> bytes:
    """A 4000x4000 progressive JPEG whose last scan is repeated to the 100 scans read: the
    most decoding work an image under the limits asks for, found by trying (a flat page: a
    scan of noise would pass the byte limit first)."""
    from mnistlab.images import MAX_SCANS

    buffer = io.BytesIO()
    Image.new("L", (4000, 4000), 255).save(buffer, format="JPEG", quality=75, progressive=True)
    data = buffer.getvalue()
    last, end = data.rfind(b"\xff\xda"), data.rfind(b"\xff\xd9")
    repeats = MAX_SCANS - data.count(b"\xff\xda")
    return data[:end] + data[last:end] * repeats + data[end:]


def beside_the_worst(port: int, drawing: bytes, hostile: int, seconds: float) -> None:
    worst, answered, latencies = worst_jpeg(), [], []
    stop = time.monotonic() + seconds

    def poster(body: bytes, kind: str, seconds_each: list) -> None:
        """Posts `body` without pause until the time is up, each answer's seconds kept."""
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while time.monotonic() < stop:
            start = time.perf_counter()
            connection.request("POST", "/api/predict", body, {"Content-Type": kind})
            connection.getresponse().read()
            seconds_each.append(time.perf_counter() - start)
        connection.close()

    threads = [
        threading.Thread(target=poster, args=(worst, "image/jpeg", answered))
        for _ in range(hostile)
    ]
    threads.append(threading.Thread(target=poster, args=(drawing, "image/png", latencies)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(
        f"worst JPEG ({len(worst) // 1000} KB, 100 scans of 16 MP) from {hostile} client(s): "
        f"{len(answered)} answered, {statistics.median(answered):.2f} s each (median); a "
        f"drawing beside them: p50 {1000 * percentile(latencies, 50):.0f} ms, worst "
        f"{1000 * max(latencies):.0f} ms (n = {len(latencies)})",
        flush=True,
    )


def percentile(values, q) -> float:
    return float(np.percentile(values, q))


def in_process(run: Path, pngs: list[bytes], repeats: int = 500) -> None:
    predictor = Predictor.load(run)
    predictor.predict(pngs[:8])  # warm up
    times = []
    for index in range(repeats):
        start = time.perf_counter()
        predictor.predict([pngs[index % len(pngs)]])
        times.append(time.perf_counter() - start)
    print(
        f"predict, in process, one PNG at a time: median {1000 * statistics.median(times):.2f} ms,"
        f" p99 {1000 * percentile(times, 99):.2f} ms (n = {repeats})"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def together(client, count: int) -> float:
    """Seconds until `count` threads running client(index) have all finished."""
    threads = [threading.Thread(target=client, args=(index,)) for index in range(count)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - started


def load(port: int, pngs: list[bytes], clients: int, seconds: float) -> None:
    latencies, errors = [], []
    stop = time.monotonic() + seconds

    def client(offset: int):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        index = offset
        while time.monotonic() < stop:
            body = pngs[index % len(pngs)]
            index += 1
            start = time.perf_counter()
            connection.request("POST", "/api/predict", body, {"Content-Type": "image/png"})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                errors.append(response.status)
            latencies.append(time.perf_counter() - start)
        connection.close()

    elapsed = together(client, clients)
    print(
        f"{clients:>3} clients: {len(latencies) / elapsed:7.0f} predictions/s, "
        f"p50 {1000 * percentile(latencies, 50):6.1f} ms, "
        f"p99 {1000 * percentile(latencies, 99):6.1f} ms"
        + (f", {len(errors)} errors" if errors else ""),
        flush=True,
    )


def rss(pid: int) -> float:
    """Resident memory of a process, MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def storm(port: int, pid: int, clients: int = 20) -> None:
    canvas = Image.new("L", (4000, 4000), 255)
    canvas.paste(0, (1800, 1000, 2200, 3000))  # one thick stroke: a "1"
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    body, peak = buffer.getvalue(), [rss(pid)]
    before, done = peak[0], threading.Event()

    def watch():
        while not done.is_set():
            peak.append(rss(pid))
            time.sleep(0.02)

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        connection.request("POST", "/api/predict", body, {"Content-Type": "image/png"})
        connection.getresponse().read()
        connection.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    answered = together(lambda _: client(), clients)
    time.sleep(3)
    done.set()
    watcher.join()
    print(
        f"storm of {clients} 4000x4000 PNGs ({len(body) / 1e3:.0f} KB each): server RSS "
        f"{before:.0f} MB before, {max(peak):.0f} MB at the peak, {rss(pid):.0f} MB 3 s after; "
        f"all answered in {answered:.1f} s"
    )


def endless_headers(port: int, clients: int = 4, seconds: float = 10.0) -> None:
    stop = threading.Event()

    def stream():
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
            with contextlib.suppress(OSError):
                while not stop.is_set():
                    connection.sendall(b"a" * 8192)

    streams = [threading.Thread(target=stream) for _ in range(clients)]
    for thread in streams:
        thread.start()
    latencies, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("GET", "/healthz")
        connection.getresponse().read()
        connection.close()
        latencies.append(time.perf_counter() - start)
        time.sleep(0.05)
    stop.set()
    for thread in streams:
        thread.join()
    print(
        f"/healthz beside {clients} endless-header clients: p50 "
        f"{1000 * percentile(latencies, 50):.1f} ms, worst {1000 * max(latencies):.1f} ms "
        f"(n = {len(latencies)})"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", help="where the data is (default: found or fetched as mnistlab does)"
    )
    parser.add_argument("--run", help="a run folder (default: train the default MLP)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=0, help="the server's --threads")
    args = parser.parse_args()
    dataset = data.load("mnist", args.data_dir)
    pngs = images(dataset)
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(args.run) if args.run else Path(scratch) / "run"
        if not args.run:
            with Run.create(run, TrainConfig()) as new:
                new.fit(Runtime(data_dir=args.data_dir), pictures=False)
        in_process(run, pngs)
        port = free_port()
        command = [sys.executable, "-m", "mnistlab", "serve", str(run), "--port", str(port)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            server.stdout.readline()  # "serving ..."
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            load(port, pngs, 1, 2)  # warm up
            for clients in (1, 8, 32):
                load(port, pngs, clients, args.seconds)
            for side in (280, 112):
                drawn = canvases(dataset, side)
                apache_bench(port, drawn, 8, 400)  # warm up
                for clients in (1, 8, 32):
                    figures = apache_bench(port, drawn, clients, 3000)
                    print(f"{side}x{side} canvas, ab, {clients:>2} clients: {figures}", flush=True)
            storm(port, server.pid)
            endless_headers(port)
            for hostile in (1, 4):
                beside_the_worst(port, canvases(dataset, 112)[0], hostile, args.seconds)
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
