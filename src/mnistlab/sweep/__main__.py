"""A worker process of `sweep --workers` (workqueue/workers.py starts it): `python -P -m
mnistlab.sweep JOB`, runs taken from the sweep's queue until it is empty, each printed."""

import sys

from mnistlab.workqueue.workers import work


def runs(job: dict, runtime, stop) -> None:
    from mnistlab.config import TrainConfig
    from mnistlab.sweep import Sweep
    from mnistlab.workqueue.storage import Engine

    def on_record(record, skipped) -> None:
        if not skipped:
            config = record["config"]
            print(
                f"run {record['key']} (seed {config['seed']}): "
                f"{100 * record['test_accuracy']:.2f}% ({record['seconds']:.1f} s)",
                flush=True,
            )

    configs = [TrainConfig(**values) for values in job["configs"]]
    Sweep(job["folder"], Engine(**job["engine"])).run(
        configs, runtime, pictures=False, on_record=on_record, should_stop=stop, summary=False
    )


if __name__ == "__main__":
    sys.exit(work(sys.argv[1:], runs))
