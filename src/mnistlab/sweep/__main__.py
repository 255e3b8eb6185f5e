"""A worker process of `sweep --workers` (tune/workers.py starts it): `python -P -m
mnistlab.sweep JOB`, runs taken from the sweep's queue until it is empty, each printed."""

import json
import signal
import sys


def main(argv: list[str]) -> int:
    import torch

    from mnistlab.config import Runtime, TrainConfig
    from mnistlab.errors import MnistlabError
    from mnistlab.sweep import Sweep
    from mnistlab.tune.storage import Engine
    from mnistlab.tune.workers import stop_on_signals

    given = json.loads(argv[0])
    runtime = Runtime(**given["runtime"])
    if runtime.threads:  # this process is the worker's own
        torch.set_num_threads(runtime.threads)
    stop = stop_on_signals()

    def on_record(record, skipped) -> None:
        if not skipped:
            config = record["config"]
            print(
                f"run {record['key']} (seed {config['seed']}): "
                f"{100 * record['test_accuracy']:.2f}% ({record['seconds']:.1f} s)",
                flush=True,
            )

    configs = [TrainConfig(**values) for values in given["configs"]]
    try:
        Sweep(given["folder"], Engine(**given["engine"])).run(
            configs, runtime, pictures=False, on_record=on_record, should_stop=stop, summary=False
        )
    except MnistlabError as error:
        print(f"mnistlab worker: error: {error}", file=sys.stderr)
        return error.exit_code
    return 128 + signal.Signals[stop.reason].value if stop else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
