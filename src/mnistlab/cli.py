"""The command line: parse -> config and runtime -> one library call -> print.

The only module that prints, draws progress bars, handles signals or sets torch's thread
count. Flags are made from the fields of TrainConfig (the experiment) and Runtime (the
machine), so each default is written once (in config.py). Training flags not given stay unset
and fall back to, in order: a --config TOML file, a --recipe, then TrainConfig's defaults.
"""

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import signal
import sys
import tempfile
from difflib import get_close_matches
from pathlib import Path

from mnistlab import __version__
from mnistlab.config import (
    IMPLEMENTATIONS,
    RECIPES,
    Runtime,
    TrainConfig,
    describe,
    from_dict,
    model_name,
    read_settings,
    recipe,
    split,
)
from mnistlab.errors import ConfigError, MnistlabError, RunError


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit 2), with a guess at what was meant."""

    def error(self, message):
        if message.startswith("unrecognized arguments:"):
            known = [o for action in self._actions for o in action.option_strings]
            for word in message.split(":", 1)[1].split():
                close = get_close_matches(word.split("=")[0], known, n=1)
                message += f" (did you mean {close[0]}?)" if close else ""
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def add_setting_flags(parser, kind=TrainConfig, skip: tuple[str, ...] = ()) -> None:
    """A flag for every field of `kind`, with its type, choices and help from the field."""
    group = parser.add_argument_group(
        "training settings" if kind is TrainConfig else "where it runs"
    )
    for item in dataclasses.fields(kind):
        if item.name in skip or item.name == "progress":
            continue
        default, choices = item.default, item.metadata.get("choices")
        options = dict(dest=item.name, default=argparse.SUPPRESS, choices=choices)
        options["help"] = f"{item.metadata['help']} (default: {_show(default)})"
        if isinstance(default, bool):
            options.update(action=argparse.BooleanOptionalAction, choices=None)
        elif item.name == "mirrors":
            options.update(action="append", metavar="URL", help=item.metadata["help"])
            group.add_argument("--mirror", **options)
            continue
        elif item.name == "hidden":
            options.update(nargs="*", type=int, metavar="WIDTH")
        elif isinstance(default, tuple):
            options.update(nargs=len(default), type=type(default[0]), metavar="VALUE")
        elif default is not None:
            options["type"] = type(default)
        group.add_argument("--" + item.name.replace("_", "-"), **options)


def _show(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def given(args, kind=TrainConfig) -> dict:
    names = {item.name for item in dataclasses.fields(kind)}
    return {name: value for name, value in vars(args).items() if name in names}


def config_from_args(args, base: TrainConfig | None = None) -> TrainConfig:
    """recipe -> TOML file -> flags, each overriding the one before."""
    config = base or recipe(getattr(args, "recipe", None) or "default")
    if getattr(args, "config", None):
        config = from_dict(split(read_settings(args.config))[0], config)
    return from_dict(given(args), config)


def runtime_from_args(args) -> Runtime:
    """Flags, over the machine settings of a --config file, over Runtime's defaults."""
    from_file = split(read_settings(args.config))[1] if getattr(args, "config", None) else {}
    values = {**from_file, **given(args, Runtime)}
    values["progress"] = sys.stderr.isatty() and not getattr(args, "quiet", False)
    runtime = Runtime(**values)
    if runtime.threads:
        import torch

        torch.set_num_threads(runtime.threads)  # the CLI alone sets it: the process is ours
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

        out = _picture_path(args.out)
        dataset = data.load(args.dataset, runtime.data_dir, **options)
        split_ = dataset.train if args.split == "train" else dataset.test
        path = plots.samples(split_, dataset.classes, out, per_class=args.rows, seed=args.seed)
        print(f"wrote {path}")
        return 0
    dataset = data.load(args.dataset, runtime.data_dir, **options)
    print(
        f"{dataset.name}: {len(dataset.train):,} training and {len(dataset.test):,} test "
        f"images of {tuple(dataset.train.images.shape[1:])}, {len(dataset.classes)} classes"
    )
    spec = data.get_spec(args.dataset)
    for key, path in dataset.files.items():
        print(f"  {spec.files[key].name:28} sha256 OK  {path}")
    width = max(len("class"), *(len(name) for name in dataset.classes))
    print(f"  {'class':{width}}  {'train':>6}  {'test':>6}")
    counts = zip(data.class_counts(dataset.train), data.class_counts(dataset.test), strict=True)
    for name, (train_count, test_count) in zip(dataset.classes, counts, strict=True):
        print(f"  {name:{width}}  {train_count:6}  {test_count:6}")
    return 0


def _picture_path(out: str) -> Path:
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
            done = run.epochs_done
            raise RunError(
                f"{run.folder} already finished {done} epoch{'s' if done != 1 else ''}; "
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
            print(_epoch_line(record, run.config.epochs))
        bar = _progress_bar(runtime)
        with stopping_on_signals(StopFlag()) as stop:
            try:
                result = run.fit(
                    runtime,
                    dry_run=args.dry_run,
                    pictures=not args.no_plots,
                    on_batch=_bar_updater(bar, run.config, loss_name=_loss_name(run.config)),
                    on_epoch=lambda record: _print_epoch(bar, record, run.config.epochs),
                    should_stop=stop,
                )
            finally:
                if bar is not None:
                    bar.close()
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
            f"test accuracy {100 * final['test_accuracy']:.2f}% after {final['epoch']} "
            f"epoch{'s' if final['epoch'] != 1 else ''} ({seconds:.1f} s of training); "
            f"run saved in {run.folder}"
        )
    return 0


def _epoch_line(record: dict, epochs: int) -> str:
    def percent(value):
        return "n/a" if value is None else f"{100 * value:.2f}%"

    line = (
        f"epoch {record['epoch']}/{epochs}  train loss {record['train_loss']:.4f}  "
        f"test loss {record['test_loss']:.4f}  test acc {percent(record['test_accuracy'])}"
    )
    if "val_accuracy" in record:
        line += f"  val acc {percent(record['val_accuracy'])}"
    return line + f"  {record['seconds']:.1f} s  ({record['samples_per_second']:,.0f} samples/s)"


def _print_epoch(bar, record, epochs) -> None:
    if bar is not None:
        bar.clear()
    print(_epoch_line(record, epochs), flush=True)


def _loss_name(config) -> str:
    # The bar shows the objective being minimised; the epoch line, the plain cross-entropy.
    return "smoothed loss" if config.label_smoothing else "loss"


def _progress_bar(runtime: Runtime):
    if not runtime.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=1, unit="sample", unit_scale=True, leave=False, dynamic_ncols=True)


def _bar_updater(bar, config, loss_name):
    def on_batch(done, total, loss):
        if bar is None:
            return
        if done == 1 or bar.total != total * config.batch_size:
            bar.reset(total=total * config.batch_size)
        bar.update(done * config.batch_size - bar.n)
        if done % 20 == 0:  # reading the loss waits for the device: not every step
            bar.set_postfix({loss_name: f"{loss.item():.4f}"}, refresh=False)

    return on_batch


# --- params, evaluate, compare, bench --------------------------------------------------------


def cmd_params(args) -> int:
    from mnistlab import models

    config = config_from_args(args)
    model = models.build_from_config(config)
    rows = [(n, "x".join(map(str, v.shape)), v.numel()) for n, v in model.named_parameters()]
    total = models.count_parameters(model)
    baseline = models.count_parameters(config.layer_sizes[:1] + config.layer_sizes[-1:])
    width = max(len(name) for name, _, _ in rows)
    print(f"trainable parameters of the {model_name(config)}")
    print(f"  {'parameter':{width}}  {'shape':>9}  {'count':>11}")
    for name, shape, count in rows:
        print(f"  {name:{width}}  {shape:>9}  {count:11,}")
    print(f"  {'total':{width}}  {'':9}  {total:11,}")
    print(
        f"logistic regression (784-10): {baseline:,} parameters; "
        f"this model has {total / baseline:.1f}x as many"
    )
    return 0


def cmd_evaluate(args) -> int:
    from mnistlab import data, runs
    from mnistlab import train as training
    from mnistlab.evaluate import evaluate

    runtime = runtime_from_args(args)
    device = training.resolve_device(runtime.device)
    saved, config, model = runs.load_model(args.run, device)
    folder = Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent
    data_dir = runtime.data_dir or runs.data_dir_of(folder)
    dataset = data.load(
        config.dataset, data_dir, mirrors=runtime.mirrors, progress=runtime.progress
    )
    mean, std = saved["normalization"]
    x = data.to_inputs(dataset.test.images, mean, std, device)
    result = evaluate(model, x, dataset.test.labels.to(device), len(dataset.classes))
    if args.json:
        print(json.dumps(runs.plain(result.as_dict(dataset.classes))))
        return 0
    print(f"{describe(config)}\ntest loss {result.loss:.4f}  ", end="")
    print(f"test accuracy {100 * result.accuracy:.2f}% on {len(x):,} images")
    width = max(len("class"), *(len(name) for name in dataset.classes))
    print(f"{'class':{width}}  accuracy")
    for name, accuracy in zip(dataset.classes, result.per_class_accuracy, strict=True):
        print(f"{name:{width}}  {100 * accuracy:7.2f}%")
    print("confusion matrix (rows: true class, columns: predicted)")
    print("      " + "".join(f"{index:>6}" for index in range(len(dataset.classes))))
    for index, row in enumerate(result.confusion.tolist()):
        print(f"{index:>6}" + "".join(f"{count:>6}" for count in row))
    return 0


def _tensors(config, runtime):
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
    dataset, device = _tensors(config, runtime)
    tensors = training.prepare(config, dataset, device)
    print(f"{describe(config)}: the same initial weights and batch order for each impl")

    def progress(impl, row):
        print(f"  {impl}: test acc {100 * row['test_accuracy']:.2f}% ({row['seconds']:.1f} s)")

    rows = compare.compare(config, tensors, on_result=progress)
    print(
        f"{'impl':8}  {'test acc':>8}  {'train loss':>10}  {'seconds':>7}  "
        f"{'max |param - module param|':>26}  {'(after 1 step)':>14}"
    )
    for row in rows:
        print(
            f"{row['impl']:8}  {100 * row['test_accuracy']:7.2f}%  {row['train_loss']:10.4f}  "
            f"{row['seconds']:7.1f}  {row['difference']:26.2e}  "
            f"{row['first_step_difference']:14.2e}"
        )
    print("seconds: one measurement each; on a busy machine, --threads 1 steadies them")
    return 0


def cmd_bench(args) -> int:
    from mnistlab import bench

    config, runtime = config_from_args(args), runtime_from_args(args)
    if args.repeats is not None and args.repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {args.repeats}")
    dataset, device = _tensors(config, runtime)
    repeats = {} if args.repeats is None else {"repeats": args.repeats}
    report = bench.run(
        config, dataset, device, impls=tuple(args.impls), notebook=not args.no_notebook, **repeats
    )
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"{describe(config)}; {report['device']}, {report['threads']} threads, "
        f"{report['epoch_gflop']:.1f} GFLOP of matmuls per epoch"
    )
    print(f"{'':30}  {'s/epoch':>8}  {'samples/s':>10}  {'GFLOP/s':>8}  {'x bound':>7}  slowest")
    for row in report["rows"]:
        slowest = f"{max(row['times']) / row['seconds'] - 1:+7.0%}" if len(row["times"]) > 1 else ""
        print(
            f"{row['name']:30}  {row['seconds']:8.3f}  {row['samples_per_second']:10,.0f}  "
            f"{row['gflops']:8.1f}  {row['ratio_to_bound']:7.2f}  {slowest:>7}"
        )
    count = len(report["rows"][0]["times"])
    if count > 1:
        print(
            f"best of {count}, taken in turns; slowest: the slowest of the {count} "
            "against the best, how much the machine moved meanwhile"
        )
    rows = {row["name"]: row["seconds"] for row in report["rows"]}
    if "module epoch" in rows and "notebook pipeline (batch 64)" in rows:
        ratio = rows["notebook pipeline (batch 64)"] / rows["module epoch"]
        print(f"module epoch is {ratio:.1f}x faster than the notebook pipeline")
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
        f"sweep of {len(variants)} configuration{'s' if len(variants) != 1 else ''} x {seeds} "
        f"seed{'s' if seeds != 1 else ''} = {len(configs)} runs in {out}"
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
    from mnistlab import checkpoint, plots, report, runs, sweep
    from mnistlab import train as training

    folder = Path(args.folder)
    if report.is_sweep(folder):
        written = plots.sweep_pictures(sweep.summarize(sweep.read_results(folder)), folder)
    else:
        runtime = runtime_from_args(args)
        device = training.resolve_device(runtime.device)
        saved, config, model = runs.load_model(folder, device)
        folder = checkpoint.resolve(folder).parent
        data_dir = runtime.data_dir or runs.data_dir_of(folder)
        dataset = _tensors(config, dataclasses.replace(runtime, data_dir=data_dir))[0]
        tensors = training.prepare(config, dataset, device)
        history = saved["history"] or runs.read_metrics(folder)
        if not history:
            raise RunError(f"{folder}: the run has no finished epoch to plot")
        written = plots.run_pictures(folder, model, tensors, history)
    print("wrote " + ", ".join(str(path) for path in written))
    return 0


def cmd_report(args) -> int:
    from mnistlab import report, runs

    folder = Path(args.folder)
    if not report.is_sweep(folder) and not (folder / runs.CONFIG).is_file():
        raise RunError(
            f"{folder} is neither a run folder (config.json) nor a sweep folder (results.jsonl)"
        )
    print(f"wrote {report.write(folder, args.out)}")
    return 0


# --- entry point -----------------------------------------------------------------------------


def _data_parsers(commands) -> None:
    data_parser = commands.add_parser("data", help="fetch, check and look at the datasets")
    actions = data_parser.add_subparsers(dest="action", required=True, parser_class=Parser)
    for name, text in (
        ("fetch", "find or download the files, verified"),
        ("info", "where each file is, hashes, counts per class"),
        ("show", "a grid of sample images with their labels"),
    ):
        sub = actions.add_parser(name, help=text, description=text)
        sub.add_argument("--dataset", default="mnist", help="mnist or fashion-mnist")
        add_setting_flags(sub, Runtime, skip=("device", "threads"))
        sub.add_argument("--quiet", action="store_true", help="no progress bars")
    sub.add_argument("--out", default="samples.png", help="picture file to write (.png)")
    sub.add_argument("--split", choices=("train", "test"), default="train")
    sub.add_argument("--rows", type=_positive, default=8, help="images per class")
    sub.add_argument("--seed", type=int, default=0)
    data_parser.set_defaults(handler=cmd_data)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _training_parser(commands, name, text, skip=()):
    sub = commands.add_parser(name, help=text, description=text)
    if "recipe" not in skip:
        sub.add_argument("--recipe", choices=list(RECIPES), help="a named starting config")
    sub.add_argument("--config", help="TOML file of settings (top level or a [train] table)")
    sub.add_argument("--quiet", action="store_true", help="no progress bars")
    add_setting_flags(sub, TrainConfig, skip)
    add_setting_flags(sub, Runtime)
    return sub


def build_parser() -> Parser:
    parser = Parser(prog="mnistlab", description="Train MLPs and logistic regression on MNIST.")
    parser.add_argument("--version", action="version", version=f"mnistlab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    _data_parsers(commands)

    train = _training_parser(commands, "train", "train a model and save the run")
    train.add_argument("--out", help="run folder (default: runs/DATASET-MODEL-TIME)")
    train.add_argument("--resume", metavar="RUN", help="continue the run in this folder")
    train.add_argument(
        "--dry-run",
        action="store_true",
        help="one epoch of two batches in a temporary folder: a quick end-to-end check",
    )
    train.add_argument("--no-plots", action="store_true", help="skip the run's pictures")
    train.set_defaults(handler=cmd_train)

    params = commands.add_parser("params", help="count trainable parameters, layer by layer")
    params.add_argument("--hidden", nargs="*", type=int, default=argparse.SUPPRESS, help="widths")
    params.add_argument("--model", choices=("mlp", "logreg"), default=argparse.SUPPRESS)
    params.set_defaults(handler=cmd_params)

    evaluate = commands.add_parser("evaluate", help="test a saved run or checkpoint")
    evaluate.add_argument("run", help="run folder or checkpoint.pt")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    add_setting_flags(evaluate, Runtime, skip=("threads",))
    evaluate.set_defaults(handler=cmd_evaluate)

    compare = _training_parser(
        commands, "compare", "train module, scratch and manual side by side", skip=("impl",)
    )
    compare.set_defaults(handler=cmd_compare)

    bench = _training_parser(
        commands, "bench", "time an epoch against its matmul bound", skip=("impl", "epochs")
    )
    bench.add_argument(
        "--impl", dest="impls", nargs="*", default=list(IMPLEMENTATIONS), choices=IMPLEMENTATIONS
    )
    bench.add_argument("--no-notebook", action="store_true", help="skip the notebook pipeline")
    bench.add_argument("--repeats", type=int, help="repeats, the best kept (default 5)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(handler=cmd_bench)

    _sweep_parser(commands)
    plot = commands.add_parser("plot", help="draw the pictures of a run or a sweep")
    plot.add_argument("folder", help="run folder or sweep folder")
    add_setting_flags(plot, Runtime, skip=("threads",))
    plot.set_defaults(handler=cmd_plot)

    report = commands.add_parser("report", help="one self-contained HTML page of a run/sweep")
    report.add_argument("folder", help="run folder or sweep folder")
    report.add_argument("--out", help="HTML file (default: FOLDER/report.html)")
    report.set_defaults(handler=cmd_report)
    return parser


def _sweep_parser(commands) -> None:
    sweep = _training_parser(
        commands, "sweep", "train a grid of configurations x seeds", skip=("seed",)
    )
    sweep.add_argument(
        "--preset",
        choices=("width", "depth", "activation", "optimizer", "batch"),
        help="a ready-made grid",
    )
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help="vary a setting (tuples join items with x: hidden=64,128x128); "
        "repeatable, combined as a product",
    )
    sweep.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds for each config")
    sweep.add_argument("--out", help="sweep folder (default: sweeps/PRESET)")
    sweep.add_argument("--no-plots", action="store_true", help="skip the sweep's pictures")
    sweep.set_defaults(handler=cmd_sweep)


def _message(error: MnistlabError) -> str:
    """The library names a field (`lr must be ...`); the command line names its flag."""
    message = str(error)
    field = getattr(error, "field", None)
    if field and message.startswith(field):
        flag = "--" + ("mirror" if field == "mirrors" else field.replace("_", "-"))
        message = flag + message[len(field) :]
    return message


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # --help, or a usage error already reported in one line
        return exit.code
    try:
        return args.handler(args)
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
