"""A model file someone wrote: loaded as Python runs it, and checked (mnistlab.diagnose) in a
process of its own with a time limit, so that whatever the file does (raises, exits, hangs,
crashes, prints) is a finding of its report and never stops whoever checks a class's files.

This runs the file as `python FILE.py` would: give only files you trust.
"""

from dataclasses import asdict

import torch

from mnistlab.config import CHECK_TIME_LIMIT
from mnistlab.diagnose import Finding, Report, batch, check


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


def check_file(
    target: str, dataset: str = "mnist", data_dir=None, time_limit: float = CHECK_TIME_LIMIT
) -> tuple[Report, str]:
    """`check` on FILE.py:NAME in a process of its own, as `python FILE.py` would run it, for
    at most `time_limit` seconds: whatever the file does (raises, exits, hangs, crashes) is an
    ERROR of its report, and what it prints is returned apart, never mixed into the report.
    Returns (report, its output). A file that cannot be used as asked (no such file or name) is
    a ConfigError, as `load_target` says."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from mnistlab.errors import ConfigError

    with tempfile.TemporaryDirectory(prefix="mnistlab-check-") as scratch:
        result = Path(scratch) / "report.json"
        job = {"target": target, "dataset": dataset, "data_dir": data_dir, "result": str(result)}
        command = [sys.executable, "-P", "-m", "mnistlab.usercode", json.dumps(job)]
        try:
            done = subprocess.run(
                command, capture_output=True, timeout=time_limit, stdin=subprocess.DEVNULL
            )
            output, status = done.stdout + done.stderr, done.returncode
        except subprocess.TimeoutExpired as expired:
            output, status = (expired.stdout or b"") + (expired.stderr or b""), None
        output = output.decode(errors="replace")
        report = Report()
        if status is None:
            report.error(
                "time",
                f"{target} did not finish within {time_limit:g} s (a forward that sleeps or "
                "loops for ever?); it was stopped",
                "make forward return; time it on a batch of 64 images",
            )
        elif result.is_file():
            saved = json.loads(result.read_text())
            if "usage" in saved:
                raise ConfigError(saved["usage"])
            report.findings = [Finding(**finding) for finding in saved["findings"]]
        else:
            report.error(
                "run",
                f"{target} ended the process with exit status {status} before the check was "
                "done (sys.exit, exit() or a crash in the file)",
                "a model file defines the model: leave exiting to whoever runs it",
            )
    return report, output


def _checked_in_this_process(job: dict) -> dict:
    """The worker side of `check_file`: the report as plain data, or the usage error."""
    from mnistlab import data
    from mnistlab.errors import ConfigError

    # The user's model draws its weights from torch's global generator: seeded here (this
    # process is the check's own), so that a verdict is the same every time.
    torch.manual_seed(0)
    try:
        model = load_target(job["target"])
    except ConfigError as error:
        return {"usage": str(error)}
    report = check(model, *batch(data.load(job["dataset"], job["data_dir"])))
    return {"findings": [asdict(finding) for finding in report.findings]}


if __name__ == "__main__":  # check_file's process
    import json
    import sys

    from mnistlab.files import atomic_write
    from mnistlab.runfiles import plain

    given = json.loads(sys.argv[1])
    answer = plain(_checked_in_this_process(given))
    atomic_write(given["result"], json.dumps(answer))
