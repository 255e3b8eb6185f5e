"""Someone else's code, run in a process of its own: a time limit, a memory cap, its output
kept apart, and nothing of it left running after. `check` runs a student's model file this
way, and `grade` each submission of a class (whose notebook runs in a Jupyter kernel, a
process of its own session that a process group alone would miss).

The parent sends the job as JSON on stdin with a secret token; the child reads it all, closes
stdin, and only then runs the code; its answer comes back through a pipe named by number, with
the token. An answer without the token, or not one JSON object, is 'tampered'; none at all
means the process ended first (an exit, a crash, memory past the cap).
"""

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

MAX_OUTPUT = 64_000  # bytes of what the process prints that are kept (the rest dropped)
MAX_ANSWER = 64 << 20  # bytes of answer read back
MARK = "MNISTLAB_CONFINED"  # environment entry every process of a job inherits: how all are found


@dataclass
class Outcome:
    status: int | None  # exit status; None when the time limit stopped it
    answer: dict | None  # what the process sent (token removed); None: nothing
    tampered: bool  # something came back, but not one answer with the token
    output: str  # its first MAX_OUTPUT bytes of stdout and stderr
    seconds: float


def run(module: str, job: dict, time_limit: float, memory: int, threads: int = 1) -> Outcome:
    """`python -P -m module FD` with `job`, for at most `time_limit` seconds and `memory` bytes of
    address space a process; the process and every one it started are ended before this
    returns."""
    token, mark = secrets.token_hex(16), secrets.token_hex(8)
    result_read, result_write = os.pipe()
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MALLOC_ARENA_MAX": "2",
        MARK: mark,
    }
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            [sys.executable, "-P", "-m", module, str(result_write)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            pass_fds=(result_write,), start_new_session=True, env=env,
        )  # fmt: skip
    finally:
        os.close(result_write)
    output, result = bytearray(), bytearray()

    def drain(stream, kept: bytearray, limit: int) -> None:
        while chunk := stream.read1(65536):
            kept += chunk[: max(0, limit - len(kept))]

    result_stream = os.fdopen(result_read, "rb")
    readers = [
        threading.Thread(target=drain, args=(process.stdout, output, MAX_OUTPUT), daemon=True),
        threading.Thread(target=drain, args=(result_stream, result, MAX_ANSWER), daemon=True),
    ]
    for reader in readers:
        reader.start()
    with contextlib.suppress(OSError):  # (a process that ended at once: its status says why)
        process.stdin.write(json.dumps({**job, "token": token, "memory": memory}).encode())
    with contextlib.suppress(OSError):
        process.stdin.close()
    try:
        status = process.wait(timeout=time_limit)
    except subprocess.TimeoutExpired:
        status = None
    finally:  # the process and whatever it started: none outlives the job
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        _end_marked(mark)
        process.wait()
        for reader in readers:
            reader.join(timeout=5)
        result_stream.close()
    answer, tampered = _answer(bytes(result), token)
    return Outcome(
        status, answer, tampered, bytes(output).decode(errors="replace"),
        time.monotonic() - started,
    )  # fmt: skip


def _end_marked(mark: str, rounds: int = 20) -> None:
    """SIGKILL every process carrying the job's mark in its environment (a Jupyter kernel
    starts in a session of its own), until none is left: one that forks while it is being
    ended is caught on the next round."""
    wanted = f"{MARK}={mark}".encode()
    for _ in range(rounds):
        found = []
        for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as handle:
                    if wanted in handle.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:  # gone, or another user's
                continue
        if not found:
            return
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _answer(content: bytes, token: str) -> tuple[dict | None, bool]:
    if not content:
        return None, False
    try:
        answer = json.loads(content)
        if not isinstance(answer, dict) or answer.pop("token", None) != token:
            raise ValueError("no token")
    except (ValueError, TypeError, RecursionError):
        return None, True
    return answer, False


def serve(handler) -> None:
    """The child's side: read the job (and its token) before anything else runs, cap memory,
    answer with handler(job) (a JSON-able dict), and exit at once, so that a thread or child
    the code left running does not hold the job."""
    import resource

    channel = int(sys.argv[1])
    given = json.loads(sys.stdin.read())
    sys.stdin.close()
    token, memory = given.pop("token"), given.pop("memory")
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    answer = json.dumps({"token": token, **handler(given)}).encode()
    del token, given
    sys.stdout.flush()
    sys.stderr.flush()
    view = memoryview(answer)
    while view:
        view = view[os.write(channel, view) :]
    os._exit(0)
