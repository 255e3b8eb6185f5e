"""A worker process on this machine (tune/workers.py starts it): `python -P -m mnistlab.tune
JOB`, the job's search until the study has its trials, each trial printed."""

import json
import signal
import sys

from mnistlab.tune.study import Study


def main(argv: list[str]) -> int:
    """A worker: the job's search until the study has its trials; each trial printed."""
    import torch

    from mnistlab import text
    from mnistlab.config import Runtime, TrainConfig
    from mnistlab.errors import MnistlabError
    from mnistlab.tune.space import parse_space
    from mnistlab.tune.storage import Engine
    from mnistlab.tune.workers import stop_on_signals

    given = json.loads(argv[0])
    runtime = Runtime(**given["runtime"])
    if runtime.threads:  # this process is the worker's own
        torch.set_num_threads(runtime.threads)
    stop = stop_on_signals()

    def on_trial(study, trial) -> None:
        if line := text.trial_line(trial):
            print(line, flush=True)

    study = Study(given["folder"], Engine(**given["engine"]))
    try:
        study.optimize(
            parse_space(given["space"]),
            TrainConfig(**given["base"]),
            runtime,
            trials=given["trials"],
            timeout=given["timeout"],
            on_trial=on_trial,
            should_stop=stop,
        )
    except MnistlabError as error:
        print(f"mnistlab worker: error: {error}", file=sys.stderr)
        return error.exit_code
    return 128 + signal.Signals[stop.reason].value if stop else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
