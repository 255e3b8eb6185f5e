"""The worker processes that `tune --workers` and `sweep --workers` start on this machine
(workqueue.spawn): `python -P -m mnistlab.cli.worker tune|sweep JOB`, JOB the work as JSON.
Part of the command line because a worker prints: each trial or run as it ends, and an error
as one line. It has no way to start workers itself: it takes a job, not a command line."""

import sys

from mnistlab.cli.sweep import print_run
from mnistlab.cli.tune import print_trial
from mnistlab.errors import MnistlabError
from mnistlab.workqueue.workers import work


def search(job: dict, runtime, stop) -> None:
    """A search's trials, until the study has them all."""
    from mnistlab.config import TrainConfig
    from mnistlab.tune.space import parse_space
    from mnistlab.tune.study import Study
    from mnistlab.workqueue.storage import Engine

    Study(job["folder"], Engine(**job["engine"])).optimize(
        parse_space(job["space"]),
        TrainConfig(**job["base"]),
        runtime,
        trials=job["trials"],
        timeout=job["timeout"],
        on_trial=print_trial,
        should_stop=stop,
    )


def runs(job: dict, runtime, stop) -> None:
    """A sweep's runs, taken from its queue until it is empty."""
    from mnistlab.config import TrainConfig
    from mnistlab.sweep import Sweep
    from mnistlab.workqueue.storage import Engine

    configs = [TrainConfig(**values) for values in job["configs"]]
    Sweep(job["folder"], Engine(**job["engine"])).run(
        configs, runtime, pictures=False, on_record=print_run, should_stop=stop, summary=False
    )


TASKS = {"tune": search, "sweep": runs}


def main(argv: list[str]) -> int:
    kind, job = argv
    try:
        return work(job, TASKS[kind])
    except MnistlabError as error:
        print(f"mnistlab worker: error: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
