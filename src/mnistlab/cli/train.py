"""mnistlab train, params, evaluate, compare and bench: a model trained, counted, tested,
compared across implementations, and timed."""

import argparse
import contextlib
import dataclasses
import json
import shutil
import sys
import tempfile

from mnistlab import text
from mnistlab.cli.console import Progress, runtime_from_args, stopping_on_signals, training_runtime
from mnistlab.cli.flags import (
    add_setting_flags,
    command,
    config_from_args,
    given,
    training_parser,
)
from mnistlab.config import IMPLEMENTATIONS, Runtime, describe
from mnistlab.errors import ConfigError, RunError


def add_parsers(commands) -> None:
    train = training_parser(commands, "train", "train a model and save the run")
    train.add_argument("--out", help="run folder (default: runs/DATASET-MODEL-TIME)")
    train.add_argument("--resume", metavar="RUN", help="continue the run in this folder")
    train.add_argument(
        "--dry-run",
        action="store_true",
        help="one epoch of two batches, in a temporary folder removed after (or in --out): a "
        "quick end-to-end check",
    )
    train.add_argument("--no-plots", action="store_true", help="skip the run's pictures")
    train.set_defaults(handler=cmd_train)

    params = command(commands, "params", "count trainable parameters, layer by layer")
    add_setting_flags(params, skip=tuple(_all_but("hidden", "model")))
    params.set_defaults(handler=cmd_params)

    evaluate = command(commands, "evaluate", "test a saved run or checkpoint")
    evaluate.add_argument("run", help="run folder or checkpoint.pt")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    add_setting_flags(evaluate, Runtime, skip=("threads",))
    evaluate.set_defaults(handler=cmd_evaluate)

    compare = training_parser(
        commands, "compare", "train module, scratch and manual side by side", skip=("impl",)
    )
    compare.set_defaults(handler=cmd_compare)

    bench = training_parser(
        commands, "bench", "time an epoch against its matmul bound", skip=("impl", "epochs")
    )
    bench.add_argument(
        "--impl", dest="impls", nargs="*", default=list(IMPLEMENTATIONS), choices=IMPLEMENTATIONS
    )
    bench.add_argument("--no-notebook", action="store_true", help="skip the notebook pipeline")
    bench.add_argument(
        "--repeats", type=int, default=argparse.SUPPRESS, help="repeats, the best kept (default 5)"
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(handler=cmd_bench)


def _all_but(*kept: str) -> list[str]:
    from mnistlab.config import field_names

    return [name for name in field_names() if name not in kept]


def _open_run(args):
    """The Run a train command works on: resumed, a dry run's temporary one, or a new one."""
    from mnistlab.runfiles import MACHINE
    from mnistlab.runs import Run

    if args.resume:
        if args.dry_run:  # never touches the run: its settings, in a fresh temporary folder
            with Run.open(args.resume, given(args)) as resumed:
                config = dataclasses.replace(resumed.config, epochs=1)
                run = Run.create(tempfile.mkdtemp(prefix="mnistlab-dry-run-"), config)
                # Where the run found its data, for the dry run to find it there too.
                if (resumed.folder / MACHINE).is_file():
                    shutil.copy(resumed.folder / MACHINE, run.folder / MACHINE)
            return run
        run = Run.open(args.resume, given(args))
        if run.finished:
            run.close()
            raise RunError(
                f"{run.folder} already finished {text.plural(run.epochs_done, 'epoch')}; "
                "pass a larger --epochs to train on"
            )
        return run
    config = config_from_args(args)
    if args.dry_run:
        config = dataclasses.replace(config, epochs=1)
        return Run.create(args.out or tempfile.mkdtemp(prefix="mnistlab-dry-run-"), config)
    return Run.create(args.out, config) if args.out else Run.new(config)


def cmd_train(args) -> int:

    for flag in ("out", "recipe", "config"):
        if args.resume and getattr(args, flag):
            raise RunError(f"--{flag} cannot be given with --resume: a run keeps its own")
    runtime, pacer = training_runtime(args)
    run = _open_run(args)
    # A dry run without --out works in a temporary folder, removed when it ends however it ends.
    temporary = run.folder if args.dry_run and not args.out else None
    try:
        return _train(args, run, runtime, pacer)
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


def _train(args, run, runtime, pacer) -> int:
    from mnistlab.runs import StopFlag

    with run:
        dry = " (a dry run: two batches)" if args.dry_run else ""
        print(
            f"training {describe(run.config)} on {run.config.dataset}; run folder {run.folder}{dry}"
        )
        for record in run.history:
            print(text.epoch_line(record, run.config.epochs))
        progress = Progress(runtime, run.config)
        with stopping_on_signals(StopFlag()) as stop, contextlib.closing(progress):
            try:
                result = run.fit(
                    runtime,
                    dry_run=args.dry_run,
                    pictures=not args.no_plots,
                    on_batch=progress.on_batch,
                    on_epoch=progress.on_epoch,
                    should_stop=stop,
                    pacer=pacer,
                )
            except BrokenPipeError:  # `| head`: each epoch is saved before it is printed
                print(
                    f"mnistlab: output closed; the run stopped after its last saved epoch. "
                    f"Continue with: mnistlab train --resume {run.folder}",
                    file=sys.stderr,
                )
                raise
        if result.interrupted:
            print(
                f"interrupted at epoch {result.position.epoch + 1}, batch "
                f"{result.position.batch}; checkpoint saved. "
                f"Continue with: mnistlab train --resume {run.folder}"
            )
            return stop.exit_status
        print(text.run_end(run.folder, run.history, run.pictures))
    return 0


def cmd_params(args) -> int:
    from mnistlab import models

    config = config_from_args(args)
    model = models.build_from_config(config)
    baseline = models.count_parameters(config.layer_sizes[:1] + config.layer_sizes[-1:])
    print(text.parameters(config, model, models.count_parameters(model), baseline))
    return 0


def cmd_evaluate(args) -> int:
    from mnistlab import runfiles, runs
    from mnistlab.evaluate import evaluate

    saved = runs.load(args.run, runtime_from_args(args))
    tensors, classes = saved.tensors, saved.tensors.classes
    result = evaluate(saved.model, tensors.x_test, tensors.y_test, len(classes))
    if args.json:
        print(json.dumps(runfiles.plain(result.as_dict(classes))))
    else:
        print(text.evaluation(saved.config, result, classes, len(tensors.y_test)))
    return 0


def _dataset(config, runtime):
    from mnistlab import data, devices

    dataset = data.load(config.dataset, runtime.data_dir, **runtime.data_options())
    return dataset, devices.resolve(runtime.device)


def cmd_compare(args) -> int:
    from mnistlab import compare, resident

    config, runtime = config_from_args(args), runtime_from_args(args)
    dataset, device = _dataset(config, runtime)
    tensors = resident.prepare(config, dataset, device)
    print(
        f"{describe(compare.compared(config))}: the same initial weights and batch order for "
        "each impl"
    )

    def progress(impl, row):
        print(f"  {impl}: test acc {100 * row['test_accuracy']:.2f}% ({row['seconds']:.1f} s)")

    print(text.comparison(compare.compare(config, tensors, on_result=progress)))
    return 0


def cmd_bench(args) -> int:
    from mnistlab import bench

    config, runtime = config_from_args(args), runtime_from_args(args)
    repeats = {"repeats": args.repeats} if hasattr(args, "repeats") else {}
    if repeats and args.repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {args.repeats}")
    dataset, device = _dataset(config, runtime)
    report = bench.run(
        config, dataset, device, impls=tuple(args.impls), notebook=not args.no_notebook, **repeats
    )
    print(json.dumps(report) if args.json else text.bench(config, report))
    return 0
