"""mnistlab tune: a search on Optuna, chosen on validation, shared through a database."""

import argparse
import importlib.util
from pathlib import Path

from mnistlab import text
from mnistlab.cli import flags
from mnistlab.cli.console import runtime_from_args, stopping_on_signals
from mnistlab.cli.flags import config_from_args, training_parser
from mnistlab.errors import ConfigError
from mnistlab.workqueue.storage import HEARTBEAT, PRUNERS, SAMPLERS


def add_parsers(commands) -> None:
    tune = training_parser(commands, "tune", "search settings on Optuna, chosen on validation")
    tune.add_argument(
        "--space",
        action="append",
        default=[],
        metavar="NAME=KIND:ARGS",
        help="a dimension: lr=log:1e-4:3e-2, dropout=float:0:0.5, epochs=int:2:20, "
        "hidden=choice:256,512,1024x1024; repeatable",
    )
    tune.add_argument("--space-file", metavar="FILE.toml", help="a [space] table of dimensions")
    tune.add_argument("--sampler", choices=SAMPLERS, default=SAMPLERS[0])
    tune.add_argument("--pruner", choices=PRUNERS, default=PRUNERS[0])
    tune.add_argument(
        "--baseline",
        action="store_true",
        help="run the base settings (recipe and flags) first, to score the starting point",
    )
    tune.add_argument("--trials", type=int, help="finished trials the study needs (all workers)")
    tune.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    tune.add_argument(
        "--storage",
        help="Optuna storage URL (default: STUDY/study.db, SQLite); "
        "postgresql://... shares the study between machines",
    )
    tune.add_argument("--study", default="study", help="the study's name in the storage")
    tune.add_argument("--out", help="study folder: trial runs, best.toml (default studies/NAME)")
    tune.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes on this machine (--threads: each one's; default: a share of "
        "the free cores)",
    )
    tune.add_argument(
        "--heartbeat",
        type=int,
        default=HEARTBEAT,
        help="seconds between heartbeats; a trial 3 beats silent is failed, retried",
    )
    tune.add_argument("--summary", action="store_true", help="print the study and stop")
    # A worker on another machine: it searches, and leaves the summary to whoever asks.
    tune.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    tune.set_defaults(handler=cmd_tune)


def print_trial(study, trial) -> None:
    if line := text.trial_line(trial):
        print(line, flush=True)


def cmd_tune(args) -> int:
    if importlib.util.find_spec("optuna") is None:
        raise ConfigError("tune needs optuna: pip install 'mnistlab[tune]'")
    from mnistlab.tune import Engine, Study, default_storage, read_space

    out = Path(args.out or Path("studies") / args.study)
    storage = args.storage or default_storage(out)
    engine = Engine(
        storage,
        args.study,
        args.sampler,
        args.pruner,
        heartbeat=args.heartbeat,
        baseline=args.baseline,
    )
    study = Study(out, engine)
    from mnistlab.workqueue.workers import check_count

    check_count(args.workers)  # refused before anything starts
    if args.summary:  # with --out, the study's files are written there too (torch not needed)
        return _finish(study, flags.read_runtime(args), measure=False, files=bool(args.out))
    from mnistlab.runs import StopFlag

    # With --workers, the threads chosen are each worker's share of the free cores.
    runtime = runtime_from_args(args, processes=max(1, args.workers))
    specs = (read_space(args.space_file) if args.space_file else []) + args.space
    with stopping_on_signals(StopFlag()) as stop:
        study.optimize(
            specs,
            config_from_args(args),
            runtime,
            trials=args.trials,
            timeout=args.timeout,
            workers=args.workers,
            on_trial=print_trial,
            should_stop=stop,
        )
    if stop:
        print("stopped: the trials in progress are queued again; run the same command to go on")
        return stop.exit_status
    if args.worker:
        return 0
    return _finish(study, runtime)


def _finish(study, runtime, measure: bool = True, files: bool = True) -> int:
    summary = study.finish(runtime, measure=measure) if files else study.summary()
    measured = summary.get("measured") or {}
    if "elsewhere" in measured:
        print(
            f"the best trial ({measured['trial']}) ran on {measured['elsewhere']}: its test "
            "accuracy is measured there, when that machine's search ends"
        )
    print(text.study(summary))
    if files and summary["best"]:
        best = study.folder / "best.toml"
        print(f"the best trial's settings in {best}: mnistlab train --config {best} trains it")
    return 0
