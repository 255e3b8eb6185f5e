"""Worker processes on this machine: each runs `python -P -m mnistlab.cli.worker KIND JOB`,
KIND `tune` (a search) or `sweep` (a sweep's runs), JOB being the work as JSON (where the
study lives, the space or the runs, the settings, the folder, the budget), written by the
layer that starts them. A worker has no way
to start workers: its entry point takes a job, not a command line. Each joins the study as a
worker on another machine would.
"""

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from mnistlab.errors import RunError


def check_count(workers: int) -> None:
    """A number of worker processes, refused past MAX_WORKERS before any is started."""
    from mnistlab.config import MAX_WORKERS
    from mnistlab.errors import ConfigError, Setting

    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(
            (
                Setting("workers"),
                f": 1 to {MAX_WORKERS} processes on this machine, got {workers} (several "
                "machines share a study through --storage)",
            ),
        )


def work(job_text: str, task: Callable) -> int:
    """A worker process's whole life: the job (JSON) read, torch given the worker's threads,
    signals turned into a stop flag, `task(job, runtime, stop)` run; the exit status says how
    it ended (128 + the signal when stopped). Errors are the caller's to report."""
    import torch

    from mnistlab import datasets
    from mnistlab.config import Runtime

    job = json.loads(job_text)
    datasets.use_registry(job.get("registry"))  # the data sets the starting process knew
    runtime = Runtime(**job["runtime"])
    if runtime.threads:  # this process is the worker's own
        torch.set_num_threads(runtime.threads)
    stop = stop_on_signals()
    task(job, runtime, stop)
    return stop.exit_status if stop else 0


def stop_on_signals():
    """In a worker: SIGINT and SIGTERM set the returned StopFlag (the worker stops after its
    step and its work goes back to the queue); a second signal aborts."""
    from mnistlab.runs import StopFlag

    stop = StopFlag()

    def handle(signum, frame):
        if stop:
            raise KeyboardInterrupt
        stop.set(signal.Signals(signum).name)

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, handle)
    return stop


def spawn(
    job_text: str,
    workers: int,
    here: Callable[[], object],
    should_stop: Callable[[], bool] | None = None,
    kind: str = "tune",
) -> None:
    """The job run by `workers` processes, this one among them; returns when all have ended.
    This process calls here() (its share of the job, as a worker would take it) while
    `workers - 1` processes it starts run the job: it has imported what the job needs already,
    so a process of its own would only wait. Those are started with -P, so that nothing in the
    working directory is imported, and each in a process group of its own, so that a Ctrl-C at
    the terminal reaches this process only, which asks each worker once (SIGTERM: it stops
    after its step and queues its trial again) when `should_stop()` turns true (a second signal
    would make a worker abort its trial)."""
    from mnistlab import datasets

    check_count(workers)
    job_text = json.dumps({**json.loads(job_text), "registry": datasets.registry_file()})
    command = [sys.executable, "-P", "-m", "mnistlab.cli.worker", kind, job_text]
    processes = [subprocess.Popen(command, process_group=0) for _ in range(workers - 1)]
    asked = threading.Event()

    def ask() -> None:
        asked.set()
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def asking() -> bool:
        """Ask the workers once, when this process is asked to stop; True once asked."""
        if not asked.is_set() and should_stop is not None and should_stop():
            ask()
        return asked.is_set()

    try:
        _beside(here, processes, asking)
        while any(process.poll() is None for process in processes):
            asking()
            time.sleep(0.1)
    except BaseException:  # aborted here (a second Ctrl-C, an error): the workers stop too
        ask()
        raise
    from mnistlab.runs import signal_status

    stopped = (signal_status("SIGINT"), signal_status("SIGTERM"))
    codes = [process.returncode for process in processes]
    failed = [code for code in codes if code and not (asked.is_set() and code in stopped)]
    if failed:
        raise RunError(f"{len(failed)} of {workers} workers failed (exits {codes})")


def _beside(here: Callable[[], object], processes: list, asking: Callable[[], bool]) -> None:
    """here() in this thread, while another passes on a stop asked of this process to the
    worker processes (a signal's handler runs in this thread, between here()'s steps)."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1) and not asking() and any(p.poll() is None for p in processes):
            pass

    watcher = threading.Thread(target=watch, name="mnistlab-workers", daemon=True)
    watcher.start()
    try:
        here()
    finally:
        done.set()
        watcher.join()
