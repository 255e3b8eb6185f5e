"""The lab's commands: data, train, params, evaluate, compare, bench, sweep, plot, report."""

import contextlib
import dataclasses
import json
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from mnistlab import text
from mnistlab.cli.console import Progress, runtime_from_args, stopping_on_signals
from mnistlab.cli.flags import config_from_args, given
from mnistlab.config import describe
from mnistlab.errors import ConfigError, RunError


def cmd_data(args) -> int:
    from mnistlab import data

    runtime = runtime_from_args(args)
    options = dict(mirrors=runtime.mirrors, progress=runtime.progress)
    if args.action == "fetch":
        for key, path in data.locate(args.dataset, runtime.data_dir, **options).items():
            print(f"{key:13} {path}")
        return 0
    if args.action == "show":
        from mnistlab import plots

        out = _picture_path(args.out or Path(tempfile.mkdtemp(prefix="mnistlab-")) / "samples.png")
        dataset = data.load(args.dataset, runtime.data_dir, **options)
        split_ = dataset.train if args.split == "train" else dataset.test
        path = plots.samples(split_, dataset.classes, out, per_class=args.rows, seed=args.seed)
        print(f"wrote {path}")
        return 0
    dataset = data.load(args.dataset, runtime.data_dir, **options)
    print(text.data_info(dataset, data.get_spec(args.dataset), data.class_counts))
    return 0


def _picture_path(out: str | Path) -> Path:
    path = Path(out)
    if path.suffix.lower() not in (".png", ".pdf", ".svg", ".jpg", ".jpeg"):
        raise ConfigError(f"out: {out} needs a picture extension: .png, .pdf, .svg or .jpg", "out")
    if not path.parent.is_dir():
        raise ConfigError(f"out: the folder {path.parent} does not exist", "out")
    return path


def _open_run(args):
    """The Run a train command works on: resumed, a dry run's temporary one, or a new one."""
    from mnistlab.runs import MACHINE, Run

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
    from mnistlab.runs import StopFlag

    for flag in ("out", "recipe", "config"):
        if args.resume and getattr(args, flag):
            raise RunError(f"--{flag} cannot be given with --resume: a run keeps its own")
    runtime = runtime_from_args(args)
    with _open_run(args) as run:
        dry = " (a dry run: two batches, in a temporary folder)" if args.dry_run else ""
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
            return 128 + signal.Signals[stop.reason].value if stop.reason else 130
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
    from mnistlab import runs
    from mnistlab.evaluate import evaluate

    saved = runs.load(args.run, runtime_from_args(args))
    tensors, classes = saved.tensors, saved.tensors.classes
    result = evaluate(saved.model, tensors.x_test, tensors.y_test, len(classes))
    if args.json:
        print(json.dumps(runs.plain(result.as_dict(classes))))
    else:
        print(text.evaluation(saved.config, result, classes, len(tensors.y_test)))
    return 0


def _dataset(config, runtime):
    from mnistlab import data
    from mnistlab import train as training

    device = training.resolve_device(runtime.device)
    dataset = data.load(
        config.dataset, runtime.data_dir, mirrors=runtime.mirrors, progress=runtime.progress
    )
    return dataset, device


def cmd_compare(args) -> int:
    from mnistlab import compare
    from mnistlab import train as training

    config, runtime = config_from_args(args), runtime_from_args(args)
    dataset, device = _dataset(config, runtime)
    tensors = training.prepare(config, dataset, device)
    print(f"{describe(config)}: the same initial weights and batch order for each impl")

    def progress(impl, row):
        print(f"  {impl}: test acc {100 * row['test_accuracy']:.2f}% ({row['seconds']:.1f} s)")

    print(text.comparison(compare.compare(config, tensors, on_result=progress)))
    return 0


def cmd_bench(args) -> int:
    from mnistlab import bench

    config, runtime = config_from_args(args), runtime_from_args(args)
    if args.repeats is not None and args.repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {args.repeats}")
    dataset, device = _dataset(config, runtime)
    repeats = {} if args.repeats is None else {"repeats": args.repeats}
    report = bench.run(
        config, dataset, device, impls=tuple(args.impls), notebook=not args.no_notebook, **repeats
    )
    print(json.dumps(report) if args.json else text.bench(config, report))
    return 0


def cmd_sweep(args) -> int:
    from mnistlab import plots, sweep
    from mnistlab.runs import StopFlag

    base, runtime = config_from_args(args), runtime_from_args(args)
    variants = sweep.variants(base, args.preset, args.grid)
    configs = sweep.plan(base, variants, args.seeds)
    out = Path(args.out or Path("sweeps") / (args.preset or ("grid" if args.grid else "seeds")))
    fields = sweep.varied_fields([{"config": dataclasses.asdict(c)} for c in configs])
    seeds = len(dict.fromkeys(args.seeds))
    print(
        f"sweep of {text.plural(len(variants), 'configuration')} x {text.plural(seeds, 'seed')}"
        f" = {text.plural(len(configs), 'run')} in {out}"
    )
    count = iter(range(1, len(configs) + 1))

    def on_record(record, skipped):
        status = "done before" if skipped else f"{record['seconds']:.1f} s"
        print(
            f"[{next(count)}/{len(configs)}] {sweep.label(record['config'], fields)} "
            f"seed={record['config']['seed']}: {100 * record['test_accuracy']:.2f}% ({status})",
            flush=True,
        )

    engine = None
    if args.storage:  # shared: every process with this storage takes runs from one queue
        from mnistlab import tune

        study = args.study or f"sweep-{out.name}"
        engine = tune.Engine(args.storage, study, heartbeat=args.heartbeat)
    with stopping_on_signals(StopFlag()) as stop:
        records = sweep.run(
            configs, out, runtime, on_record=on_record, should_stop=stop, engine=engine
        )
    others = len({r["key"] for r in sweep.read_results(out)} - {sweep.run_key(c) for c in configs})
    if others:
        print(
            f"note: {out} also holds {text.plural(others, 'run')} of other settings; this "
            "summary shows this sweep's only (mnistlab report shows them all)"
        )
    rows = sweep.summarize(records)
    if rows:
        sweep.write_summary(out, rows)
        if not args.no_plots:
            plots.sweep_pictures(rows, out)
        print(sweep.markdown(rows), end="")
    if len(records) < len(configs):
        print(
            f"stopped after {len(records)} of {len(configs)} runs; run the same command "
            "again to finish the sweep"
        )
        return 128 + signal.Signals[stop.reason].value if stop.reason else 130
    print(f"summary in {out / 'summary.md'} and {out / 'summary.csv'}; runs in {out / 'runs'}")
    return 0


def cmd_plot(args) -> int:
    from mnistlab import plots, report, runs, sweep

    folder = Path(args.folder)
    if report.is_sweep(folder):
        written = plots.sweep_pictures(sweep.summarize(sweep.read_results(folder)), folder)
    else:
        saved = runs.load(folder, runtime_from_args(args))
        if not saved.history:
            raise RunError(f"{saved.folder}: the run has no finished epoch to plot")
        written = plots.run_pictures(
            saved.folder, saved.model, saved.tensors, saved.history, title=describe(saved.config)
        )
    print("wrote " + ", ".join(str(path) for path in written))
    return 0


def cmd_report(args) -> int:
    from mnistlab import report, runs

    folders = [Path(folder) for folder in args.folder]
    for folder in folders:
        single = len(folders) == 1 and (report.is_sweep(folder) or report.is_study(folder))
        if not single and not runs.is_run(folder):
            kind = "a run folder" if len(folders) > 1 else "a run folder or a sweep folder"
            raise RunError(f"{folder} is not {kind} (config.json, results.jsonl)")
    print(f"wrote {report.write(folders, args.out)}")
    return 0
