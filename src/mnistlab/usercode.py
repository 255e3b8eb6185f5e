"""A model file someone wrote: loaded as Python runs it, and checked (mnistlab.diagnose) in a
process of its own with a time limit, so that whatever the file does (raises, exits, hangs,
crashes, prints) is a finding of its report and never stops whoever checks a class's files.

This runs the file as `python FILE.py` would: give only files you trust.
"""

from dataclasses import asdict

import torch

from mnistlab.config import CHECK_TIME_LIMIT
from mnistlab.diagnose import Finding, Report, batch, batch_source, check


def load_target(target: str):
    """FILE.py:NAME -> the model: NAME is a class (made with no arguments) or an object.

    This runs the file, as `python FILE.py` would: give only files you trust."""
    import importlib.util
    from pathlib import Path

    from mnistlab.errors import ConfigError

    path, _, name = target.rpartition(":")
    if not path or not name:
        raise ConfigError(f"{target}: write FILE.py:NAME, e.g. my_model.py:BasicMLP")
    if not Path(path).is_file():
        raise ConfigError(f"{path}: no such file")
    spec = importlib.util.spec_from_file_location(f"mnistlab_checked_{Path(path).stem}", path)
    if spec is None:
        raise ConfigError(f"{path}: not a Python file (give FILE.py:NAME)")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001 - the user's file: say what it raised
        raise ConfigError(f"{path} raised {error!r} when it was run") from None
    if not hasattr(module, name):
        found = [
            k
            for k, v in vars(module).items()
            if isinstance(v, type) and v.__module__ == module.__name__
        ]
        raise ConfigError(f"{path} has no {name}; it defines: {', '.join(found) or 'no class'}")
    model = getattr(module, name)
    if isinstance(model, type):
        try:
            model = model()
        except Exception as error:  # noqa: BLE001
            raise ConfigError(
                f"{name}() raised {error!r}; check makes it with no arguments"
            ) from None
    if not callable(model) and not hasattr(model, "forward"):
        raise ConfigError(f"{name} has neither forward nor __call__: it is not a model")
    return model


MAX_OUTPUT = 64_000  # bytes of what a checked file prints that are kept (the rest dropped)
MAX_MEMORY = 2 << 30  # bytes of address space a checked file's process may take


def check_file(
    target: str,
    dataset: str = "mnist",
    data_dir=None,
    time_limit: float = CHECK_TIME_LIMIT,
    only=None,
) -> tuple[Report, str]:
    """`check` on FILE.py:NAME in a process of its own, as `python FILE.py` would run it, for
    at most `time_limit` seconds and MAX_MEMORY bytes: whatever the file does (raises, exits,
    hangs, crashes, forks, prints without end) is an ERROR of its report, and what it prints
    (its first MAX_OUTPUT bytes) is returned apart, never mixed into the report. Returns
    (report, its output). A file that cannot be used as asked (no such file or name) is a
    ConfigError, as `load_target` says.

    The process, and any it starts, are ended with the check. The report comes back through
    a pipe, with a token the process read before the file ran: a file that writes there, or
    exits early, is an ERROR, not a pass. The file still runs inside the checking process, so
    one written to deceive can forge a report: `check` diagnoses honest mistakes, and grading
    that must resist cheating runs each submission in a sandbox of its own and re-measures
    what it grades (docs/teaching.md)."""
    import contextlib
    import json
    import os
    import secrets
    import signal
    import subprocess
    import sys
    import threading

    from mnistlab.errors import ConfigError

    token = secrets.token_hex(16)
    job = {"target": target, "dataset": dataset, "data_dir": data_dir, "only": only}
    job["token"] = token
    result_read, result_write = os.pipe()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    try:
        process = subprocess.Popen(
            [sys.executable, "-P", "-m", "mnistlab.usercode", str(result_write)],
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
        threading.Thread(target=drain, args=(result_stream, result, 1_000_000), daemon=True),
    ]
    for reader in readers:
        reader.start()
    with contextlib.suppress(OSError):  # (a process that ended at once: its status says why)
        process.stdin.write(json.dumps(job).encode())
    with contextlib.suppress(OSError):
        process.stdin.close()
    try:
        status = process.wait(timeout=time_limit)
    except subprocess.TimeoutExpired:
        status = None
    finally:  # the process and whatever it started: none outlives the check
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for reader in readers:
            reader.join(timeout=5)
        result_stream.close()
    output = bytes(output).decode(errors="replace")
    report = Report()
    if status is None:
        report.error(
            "time",
            f"{target} did not finish within {time_limit:g} s (a forward that sleeps or "
            "loops for ever?); it was stopped",
            "make forward return; time it on a batch of 64 images",
        )
        return report, output
    saved = _result(bytes(result), token)
    if saved is None:
        report.error(
            "run",
            f"{target} ended the process with exit status {status} before the check was "
            "done (sys.exit, exit(), a crash, or memory past "
            f"{MAX_MEMORY / 2**30:g} GiB)",
            "a model file defines the model: leave exiting to whoever runs it",
        )
    elif "usage" in saved:
        raise ConfigError(saved["usage"])
    elif "tampered" in saved:
        report.error(
            "run",
            f"{target} wrote to the channel check's report comes back by; the report could "
            "not be trusted",
            "a model file defines the model: leave the checker's files alone",
        )
    else:
        report.findings, report.values = saved["findings"], saved["values"]
    return report, output


def _result(content: bytes, token: str) -> dict | None:
    """The report the checking process sent: None when it sent nothing; {"tampered": True}
    when what came is not exactly one report with the token."""
    import json

    if not content:
        return None
    try:
        saved = json.loads(content)
        if not isinstance(saved, dict) or saved.pop("token", None) != token:
            raise ValueError("no token")
        if "usage" in saved and set(saved) == {"usage"}:
            return {"usage": str(saved["usage"])}
        if set(saved) != {"findings", "values"} or not isinstance(saved["findings"], list):
            raise ValueError("unknown keys")
        values = saved["values"]
        if not isinstance(values, dict) or not all(
            isinstance(v, int | float | str) for v in values.values()
        ):
            raise ValueError("values that are not numbers")
        return {
            "findings": [Finding(**finding) for finding in saved["findings"]],
            "values": values,
        }
    except (ValueError, TypeError, RecursionError):
        return {"tampered": True}


def _checked_in_this_process(job: dict) -> dict:
    """The worker side of `check_file`: the report as plain data, or the usage error."""
    from mnistlab.errors import ConfigError

    # The user's model draws its weights from torch's global generator: seeded here (this
    # process is the check's own), so that a verdict is the same every time.
    torch.manual_seed(0)
    try:
        model = load_target(job["target"])
    except ConfigError as error:
        return {"usage": str(error)}
    report = check(model, *batch(batch_source(job["dataset"], job["data_dir"])), only=job["only"])
    return {"findings": [asdict(finding) for finding in report.findings], "values": report.values}


if __name__ == "__main__":  # check_file's process
    import json
    import os
    import resource
    import sys

    from mnistlab.runfiles import plain

    # All that is the checker's is read before the file runs: the job (its token among it)
    # from stdin, which is then closed; the report goes to the pipe named in argv.
    channel = int(sys.argv[1])
    given = json.loads(sys.stdin.read())
    sys.stdin.close()
    token = given.pop("token")
    resource.setrlimit(resource.RLIMIT_AS, (MAX_MEMORY, MAX_MEMORY))
    answer = json.dumps({"token": token, **plain(_checked_in_this_process(given))}).encode()
    del token, given
    sys.stdout.flush()
    sys.stderr.flush()
    view = memoryview(answer)
    while view:
        view = view[os.write(channel, view) :]
    # Exit at once: a thread or a child the file left running does not hold the check.
    os._exit(0)
