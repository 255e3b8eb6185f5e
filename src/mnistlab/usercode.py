"""A model file someone wrote: loaded as Python runs it, and checked (mnistlab.diagnose) in a
process of its own with a time limit, so that whatever the file does (raises, exits, hangs,
crashes, prints) is a finding of its report and never stops whoever checks a class's files.

This runs the file as `python FILE.py` would: give only files you trust.
"""

import sys
from dataclasses import asdict

import torch

from mnistlab.config import CHECK_TIME_LIMIT
from mnistlab.diagnose import Finding, Report, batch, batch_source, check


def locate_target(target: str):
    """FILE.py:NAME -> (the file's module spec, NAME), without running the file: a target that
    names no file, or no Python file, is a ConfigError here (so that `check` says so before it
    starts a process for it)."""
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
    return spec, name


def load_target(target: str):
    """FILE.py:NAME -> the model: NAME is a class (made with no arguments) or an object.

    This runs the file, as `python FILE.py` would: give only files you trust."""
    import importlib.util

    from mnistlab.errors import ConfigError

    spec, name = locate_target(target)
    path = spec.origin
    module = importlib.util.module_from_spec(spec)
    # as `python FILE.py` leaves no __pycache__ beside FILE.py, nor does checking it
    writes, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001 - the user's file: say what it raised
        raise ConfigError(f"{path} raised {error!r} when it was run") from None
    finally:
        sys.dont_write_bytecode = writes
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


MAX_MEMORY = 2 << 30  # bytes of address space a checked file's process may take


def check_file(
    target: str,
    dataset: str = "mnist",
    data_dir=None,
    time_limit: float = CHECK_TIME_LIMIT,
    only=None,
    cache_dir=None,
) -> tuple[Report, str]:
    """`check` on FILE.py:NAME in a process of its own (mnistlab.confined), as `python FILE.py`
    would run it, for at most `time_limit` seconds and MAX_MEMORY bytes: whatever the file does
    (raises, exits, hangs, crashes, forks, prints without end) is an ERROR of its report, and
    what it prints (its first confined.MAX_OUTPUT bytes) is returned apart, never mixed into
    the report. Returns (report, its output). A file that cannot be used as asked (no such file
    or name) is a ConfigError, as `load_target` says.

    The report comes back with a token the process read before the file ran: a file that
    writes there, or exits early, is an ERROR, not a pass. The file still runs inside the
    checking process, so one written to deceive can forge a report: `check` diagnoses honest
    mistakes, and grading that must resist cheating runs each submission in a sandbox of its
    own and re-measures what it grades (docs/teaching.md)."""
    from mnistlab import confined
    from mnistlab.datasets import registry_file
    from mnistlab.errors import ConfigError

    locate_target(target)  # no file, or not a Python one: said before a process starts
    job = dict(target=target, dataset=dataset, data_dir=data_dir, cache_dir=cache_dir, only=only)
    job["registry"] = registry_file()  # the data sets this process knows
    outcome = confined.run("mnistlab.usercode", job, time_limit, MAX_MEMORY)
    report = Report()
    if outcome.status is None:
        report.error(
            "time",
            f"{target} did not finish within {time_limit:g} s (a forward that sleeps or "
            "loops for ever?); it was stopped",
            "make forward return; time it on a batch of 64 images",
        )
        return report, outcome.output
    saved = None if outcome.tampered else _result(outcome.answer)
    if outcome.answer is None and not outcome.tampered:
        report.error(
            "run",
            f"{target} ended the process with exit status {outcome.status} before the check "
            "was done (sys.exit, exit(), a crash, or memory past "
            f"{MAX_MEMORY / 2**30:g} GiB)",
            "a model file defines the model: leave exiting to whoever runs it",
        )
    elif saved is None:
        report.error(
            "run",
            f"{target} wrote to the channel check's report comes back by; the report could "
            "not be trusted",
            "a model file defines the model: leave the checker's files alone",
        )
    elif "usage" in saved:
        raise ConfigError(saved["usage"])
    else:
        report.findings, report.values = saved["findings"], saved["values"]
    return report, outcome.output


def _result(saved: dict | None) -> dict | None:
    """The report the checking process sent, or None when it is not exactly one report."""
    if saved is None:
        return None
    try:
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
    except (ValueError, TypeError):
        return None


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
    from mnistlab.datasets import use_registry

    use_registry(job["registry"])
    source = batch_source(job["dataset"], job["data_dir"], job["cache_dir"])
    report = check(model, *batch(source), only=job["only"])
    return {"findings": [asdict(finding) for finding in report.findings], "values": report.values}


if __name__ == "__main__":  # check_file's process
    from mnistlab import confined
    from mnistlab.runfiles import plain

    confined.serve(lambda job: plain(_checked_in_this_process(job)))
