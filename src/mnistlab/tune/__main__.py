"""A worker process on this machine (workqueue/workers.py starts it): `python -P -m mnistlab.tune
JOB`, the job's search until the study has its trials, each trial printed."""

import sys

from mnistlab.workqueue.workers import work


def search(job: dict, runtime, stop) -> None:
    from mnistlab import text
    from mnistlab.config import TrainConfig
    from mnistlab.tune.space import parse_space
    from mnistlab.tune.study import Study
    from mnistlab.workqueue.storage import Engine

    def on_trial(study, trial) -> None:
        if line := text.trial_line(trial):
            print(line, flush=True)

    Study(job["folder"], Engine(**job["engine"])).optimize(
        parse_space(job["space"]),
        TrainConfig(**job["base"]),
        runtime,
        trials=job["trials"],
        timeout=job["timeout"],
        on_trial=on_trial,
        should_stop=stop,
    )


if __name__ == "__main__":
    sys.exit(work(sys.argv[1:], search))
