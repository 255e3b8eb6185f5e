"""The documentation test's `mnistlab`: one process that imports torch, matplotlib and mnistlab
once and forks a copy of itself for each `mnistlab` command and each Python block a page runs.

Each command a page ran spent most of its time starting, importing torch and matplotlib
(docs/speed.md gives the figures, under "The test suite"). A forked copy starts with them
imported. What a reader's command does is unchanged: bash runs the line as
written, with its redirections; `mnistlab` on the page's PATH is a small client (the shim below)
that hands the zygote its arguments, working folder, environment and its standard input, output
and error (the file descriptors themselves), and exits with the command's status. The copy runs
the console script's function (`mnistlab.cli.run`), and its atexit handlers at the end. A
page's Python block goes the same way, through a second client, `python-block -c BLOCK`:
the copy runs the block as `python -c` would, in a fresh `__main__` namespace, with the working
folder first on sys.path.

What a forked copy does not show, the other tests do: the console script itself and the
imports a command makes on its own (tests/test_cli.py, tests/test_package.py, which installs the
wheel and runs its scripts). `mnistlab serve` is started as a real process (a page's test
stops it with a signal, which the client does not pass on).

Run as `python zygote.py FOLDER SESSION`: it listens on FOLDER/socket, writes the clients to
FOLDER/mnistlab and FOLDER/python-block, prints "ready" and serves the test processes until
the process SESSION (the pytest that started them) has ended; then it ends, with its copies
(its process group).
"""

import atexit
import json
import os
import pkgutil
import signal
import socket
import sys
import time
import traceback

SHIM = """#!{python} -S
# For the documentation test: the zygote at {path} runs the command (zygote.py).
import json, os, socket, sys
client = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
client.connect({path!r})
request = {{"argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ), "python": {python_c}}}
socket.send_fds(client, [json.dumps(request).encode()], [0, 1, 2])
status = client.recv(16)
sys.exit(int(status) if status else 125)
"""


def write_shims(folder: str, path: str) -> None:
    """`folder`/mnistlab and `folder`/python-block: the clients that ask the zygote listening
    at `path` to run a command, or a Python block (`python-block -c BLOCK`)."""
    for name, python_c in (("mnistlab", False), ("python-block", True)):
        shim = os.path.join(folder, name)
        with open(shim, "w") as handle:
            handle.write(SHIM.format(python=sys.executable, path=path, python_c=python_c))
        os.chmod(shim, 0o755)


def preload() -> None:
    """What the pages' commands import: torch, matplotlib's Agg canvas and every mnistlab
    module (importing one does nothing but define it)."""
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401
    import numpy  # noqa: F401
    import torch  # noqa: F401

    import mnistlab

    for module in pkgutil.walk_packages(mnistlab.__path__, "mnistlab."):
        if not module.name.endswith("__main__"):
            __import__(module.name)


def run(request: dict, fds: list[int]) -> None:
    """In the forked copy: become the command's process, run it, exit with its status."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = request["argv"]
    code = 1
    try:
        if request["python"]:  # python -c BLOCK: argv ['-c'], the working folder on sys.path
            option, block = sys.argv[1:3]
            assert option == "-c", sys.argv
            sys.argv, sys.path[0] = ["-c"], ""
            exec(compile(block, "<string>", "exec"), {"__name__": "__main__"})
            code = 0  # (the console script always ends in SystemExit)
        else:
            from mnistlab.cli import run as console_script

            console_script()
    except SystemExit as stop:
        code = stop.code
    except BaseException:
        traceback.print_exc()
    finally:
        atexit._run_exitfuncs()
        if not isinstance(code, int):  # sys.exit("message") prints it and exits 1
            if code is not None:
                print(code, file=sys.stderr)
            code = 0 if code is None else 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(folder: str, session: int) -> None:
    preload()
    path = os.path.join(folder, "socket")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(64)
    listener.settimeout(0.02)
    write_shims(folder, path)
    print("ready", flush=True)
    waiting = {}  # pid -> the client's connection, told the status when the copy exits
    looked = time.monotonic()
    while True:
        if time.monotonic() - looked > 1:  # the session is over: so is this process group
            looked = time.monotonic()
            try:
                os.kill(session, 0)
            except ProcessLookupError:
                os.killpg(os.getpid(), signal.SIGKILL)
        try:
            connection, _ = listener.accept()
        except TimeoutError:
            connection = None
        if connection is not None:
            connection.settimeout(None)
            message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
            pid = os.fork()
            if pid == 0:
                listener.close()
                connection.close()
                run(json.loads(message), fds)
            for fd in fds:
                os.close(fd)
            waiting[pid] = connection
        while waiting:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            code = os.waitstatus_to_exitcode(status)
            connection = waiting.pop(pid)
            connection.send(str(code if code >= 0 else 128 - code).encode())
            connection.close()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
