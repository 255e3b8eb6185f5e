"""The command line: parse -> config and runtime -> one library call -> print.

The only module that prints, draws progress bars, handles signals or sets torch's thread
count. The flags are built in flags.py; the tables printed are written in text.py.
"""

import contextlib
import dataclasses
import gc
import json
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

from mnistlab import text
from mnistlab.config import Runtime, describe
from mnistlab.errors import ConfigError, MnistlabError, RunError
from mnistlab.files import atomic_write
from mnistlab.flags import build_parser, config_from_args, given


def runtime_from_args(args) -> Runtime:
    """The machine settings, and torch's thread count set from them: the process is ours."""
    from mnistlab import flags

    runtime = flags.runtime_from_args(args)
    if runtime.threads:
        import torch

        torch.set_num_threads(runtime.threads)
    return runtime


# --- data ------------------------------------------------------------------------------------


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


# --- train -----------------------------------------------------------------------------------


@contextlib.contextmanager
def stopping_on_signals(stop):
    """SIGINT and SIGTERM set `stop` (a checkpoint follows after the step); a second aborts."""

    def handle(signum, frame):
        if stop:
            raise KeyboardInterrupt
        stop.set(signal.Signals(signum).name)
        print("\nstopping after this step (Ctrl-C again to abort)...", file=sys.stderr)

    previous = {number: signal.signal(number, handle) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _open_run(args):
    """The Run a train command works on: resumed, a dry run's temporary one, or a new one."""
    from mnistlab.runs import Run

    if args.resume:
        if args.dry_run:  # never touches the run: its settings, in a fresh temporary folder
            with Run.open(args.resume, given(args)) as resumed:
                config = dataclasses.replace(resumed.config, epochs=1)
            return Run.create(tempfile.mkdtemp(prefix="mnistlab-dry-run-"), config)
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
    if args.resume and not runtime.data_dir:  # where the run found its data before
        from mnistlab import checkpoint, runs

        found = runs.data_dir_of(checkpoint.resolve(args.resume).parent)
        runtime = dataclasses.replace(runtime, data_dir=found)
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
        if run.pictures:
            print(f"wrote {', '.join(path.name for path in run.pictures)} in {run.folder}")
        final, seconds = run.history[-1], sum(record["seconds"] for record in run.history)
        print(
            f"test accuracy {100 * final['test_accuracy']:.2f}% after "
            f"{text.plural(final['epoch'], 'epoch')} ({seconds:.1f} s of training); "
            f"run saved in {run.folder}"
        )
    return 0


class Progress:
    """A run's terminal output: a progress bar within an epoch (on a terminal), a line after."""

    def __init__(self, runtime: Runtime, config):
        self.config, self.bar = config, None
        # The bar shows the objective being minimised; the epoch line, the plain cross-entropy.
        self.loss_name = "smoothed loss" if config.label_smoothing else "loss"
        if runtime.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=1, unit="sample", unit_scale=True, leave=False)

    def on_batch(self, done, total, loss):
        if self.bar is None:
            return
        samples = total * self.config.batch_size
        if done == 1 or self.bar.total != samples:
            self.bar.reset(total=samples)
        self.bar.update(done * self.config.batch_size - self.bar.n)
        if done % 20 == 0:  # reading the loss waits for the device: not every step
            self.bar.set_postfix({self.loss_name: f"{loss.item():.4f}"}, refresh=False)

    def on_epoch(self, record):
        if self.bar is not None:
            self.bar.clear()
        print(text.epoch_line(record, self.config.epochs), flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# --- params, evaluate, compare, bench --------------------------------------------------------


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


# --- sweeps, pictures and reports ------------------------------------------------------------


def cmd_sweep(args) -> int:
    from mnistlab import plots, sweep
    from mnistlab.runs import StopFlag

    base, runtime = config_from_args(args), runtime_from_args(args)
    # With neither a preset nor a grid, the sweep is the one config over the seeds.
    variants = sweep.PRESETS[args.preset](base) if args.preset else [{}]
    if args.grid:
        grid = sweep.parse_grid(args.grid)
        variants = [{**variant, **extra} for variant in variants for extra in grid]
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

    with stopping_on_signals(StopFlag()) as stop:
        records = sweep.run(configs, out, runtime, on_record=on_record, should_stop=stop)
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


def cmd_check(args) -> int:
    from mnistlab import data, diagnose
    from mnistlab.runs import plain

    model = diagnose.load_target(args.target)
    runtime = runtime_from_args(args)
    dataset = data.load(
        args.dataset, runtime.data_dir, mirrors=runtime.mirrors, progress=runtime.progress
    )
    report = diagnose.check(model, *diagnose.batch(dataset))
    print(json.dumps(plain(report.as_dict())) if args.json else text.check_report(report))
    return 0 if report.passed else 1


def cmd_tune(args) -> int:
    try:
        from mnistlab import tune
    except ImportError as error:
        raise ConfigError(f"tune needs {error.name}: pip install 'mnistlab[tune]'") from None
    out = Path(args.out or Path("studies") / args.study)
    engine = tune.Engine(
        args.storage or tune.default_storage(out),
        args.study,
        args.sampler,
        args.pruner,
        heartbeat=args.heartbeat,
    )
    if args.summary:
        print(text.study(tune.summary(engine)))
        return 0
    specs = (tune.read_space(args.space_file) if args.space_file else []) + args.space
    space = tune.parse_space(specs)
    if not space:
        raise ConfigError("--space: give at least one dimension, e.g. --space lr=log:1e-4:3e-2")
    base = tune.search_config(config_from_args(args))
    out.mkdir(parents=True, exist_ok=True)
    if args.workers > 1:
        _tune_workers(args, out)
    else:
        runtime = runtime_from_args(args)

        def on_trial(study, trial):
            value = "" if trial.value is None else f" val acc {100 * trial.value:.2f}%"
            print(
                f"trial {trial.number}: {trial.state.name.lower()}{value} {trial.params}",
                flush=True,
            )

        tune.optimize(
            engine,
            space,
            base,
            out,
            runtime,
            trials=args.trials,
            timeout=args.timeout,
            on_trial=on_trial,
        )
    if args.worker:
        return 0
    tune.measure_best(engine, runtime_from_args(args))
    best = out / "best.toml"
    atomic_write(best, tune.best_config_toml(engine))
    print(text.study(tune.summary(engine)))
    print(f"the best trial's settings in {best}: mnistlab train --config {best} reproduces it")
    return 0


def _tune_workers(args, out: Path) -> None:
    """N worker processes on this machine, the cores divided among them; each joins the study
    as any other machine would."""
    import subprocess

    threads = max(1, (os.cpu_count() or 1) // args.workers)
    argv = [word for word in args.argv if word not in ("--summary",)]
    position = argv.index("--workers")
    argv = argv[:position] + argv[position + 2 :]
    command = [sys.executable, "-P", "-m", "mnistlab", *argv, "--worker", "--out", str(out)]
    command += ["--threads", str(threads)]
    workers = [subprocess.Popen(command) for _ in range(args.workers)]
    codes = [worker.wait() for worker in workers]
    if any(codes):
        raise RunError(f"{sum(map(bool, codes))} of {args.workers} workers failed (exit {codes})")


def cmd_predict(args) -> int:
    from mnistlab import preprocess
    from mnistlab.predict import Predictor

    predictor = Predictor.load(args.run)
    files = preprocess.image_files([path for path in args.images if path != "-"])
    sources = [(str(path), path) for path in files]
    if "-" in args.images:
        sources.append(("-", sys.stdin.buffer.read()))
    if not sources:
        raise ConfigError(f"no images in {' '.join(args.images)}")
    predictions = [(name, predictor.predict([source])[0]) for name, source in sources]
    if args.show_input:
        from mnistlab import plots

        path = plots.inputs_seen([source for _, source in sources], predictions, args.show_input)
        print(f"wrote {path}", file=sys.stderr)
    for name, prediction in predictions:
        if args.json:
            print(json.dumps({"file": name, **prediction.as_dict()}))
        else:
            top = ", ".join(f"{label} {100 * p:.1f}%" for label, p in prediction.top(3))
            print(f"{name}: {prediction.name}  (top 3: {top})")
    return 0


def cmd_export(args) -> int:
    from mnistlab import export

    try:
        path = export.export(args.run, args.format, args.out)
    except ImportError as error:
        raise ConfigError(
            f"export --format {args.format} needs {error.name}: pip install 'mnistlab[export]'"
        ) from None
    print(
        f"wrote {path}"
        + (f" and {path.with_suffix('.json')}" if args.format == "safetensors" else "")
    )
    return 0


def cmd_serve(args) -> int:
    try:
        import uvicorn

        from mnistlab.serve import app_for_run
    except ImportError as error:
        raise ConfigError(f"serve needs {error.name}: pip install 'mnistlab[serve]'") from None
    runtime = runtime_from_args(args)
    app = app_for_run(args.run, runtime.device if runtime.device != "auto" else "cpu")
    print(f"serving {args.run} at http://{args.host}:{args.port}/ (Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_report(args) -> int:
    from mnistlab import report, runs

    folders = [Path(folder) for folder in args.folder]
    for folder in folders:
        if not (report.is_sweep(folder) and len(folders) == 1) and not runs.is_run(folder):
            kind = "a run folder" if len(folders) > 1 else "a run folder or a sweep folder"
            raise RunError(f"{folder} is not {kind} (config.json, results.jsonl)")
    print(f"wrote {report.write(folders, args.out)}")
    return 0


# --- entry point -----------------------------------------------------------------------------


def _message(error: MnistlabError) -> str:
    """The library names a field (`lr must be ...`); the command line names its flag."""
    message = str(error)
    field = getattr(error, "field", None)
    if field and message.startswith(field):
        flag = "--" + ("mirror" if field == "mirrors" else field.replace("_", "-"))
        message = flag + message[len(field) :]
    return message


def main(argv: list[str] | None = None) -> int:
    # The library warns through logging (a rebuilt cache, a skipped result line): show it.
    logging.basicConfig(format="mnistlab: warning: %(message)s", level=logging.WARNING)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # --help, or a usage error already reported in one line
        return exit.code
    args.argv = list(sys.argv[1:] if argv is None else argv)
    handlers = {
        "data": cmd_data,
        "train": cmd_train,
        "params": cmd_params,
        "evaluate": cmd_evaluate,
        "compare": cmd_compare,
        "bench": cmd_bench,
        "sweep": cmd_sweep,
        "plot": cmd_plot,
        "report": cmd_report,
        "check": cmd_check,
        "tune": cmd_tune,
        "predict": cmd_predict,
        "export": cmd_export,
        "serve": cmd_serve,
    }
    try:
        return handlers[args.command](args)
    except MnistlabError as error:
        print(f"mnistlab: error: {_message(error)}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("mnistlab: aborted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`mnistlab ... | head`): stop quietly
        # Python flushes stdout again at exit; point it at devnull so that does not fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by a closed pipe


def run() -> None:
    """The `mnistlab` command: main(), then exit."""
    status = main()
    # The process ends here. Python's last garbage collections would walk every object that
    # torch and matplotlib made (about 0.5 s on a 2-core machine) only to free memory the OS
    # reclaims anyway; frozen objects are skipped. Every file was closed before this point.
    gc.freeze()
    sys.exit(status)
