"""The command line: the only module that prints, draws progress bars or handles signals.

Training flags are made from TrainConfig's fields, so each default is written once (in
config.py). Flags not given stay unset and fall back to, in order: the checkpoint being
resumed, a --config TOML file, a --recipe, then TrainConfig's defaults.
"""

import argparse
import dataclasses
import gc
import json
import os
import signal
import sys
import time
from pathlib import Path

from mnistlab.config import ASSIGNMENT, TrainConfig, from_dict, load_toml
from mnistlab.errors import CheckpointError, ConfigError, MnistlabError

# Named starting points; flags given on the command line override them.
RECIPES = {
    "default": {},
    "assignment": ASSIGNMENT,  # the course notebook's own setting
    # An MLP past 99%: wider, two layers, dropout, elastic distortions of every batch, AdamW.
    "best": dict(
        hidden=(1024, 1024),
        dropout=0.2,
        augment="elastic",
        optimizer="adamw",
        lr=2e-3,
        betas=(0.9, 0.95),
        weight_decay=0.05,
        warmup=0.2,
        label_smoothing=0.0,
        batch_size=256,
        epochs=40,
    ),
}


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit 2) instead of the whole usage."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def add_config_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    group = parser.add_argument_group("training settings (defaults from TrainConfig)")
    for item in dataclasses.fields(TrainConfig):
        if item.name in skip:
            continue
        flag = "--" + item.name.replace("_", "-")
        default = item.default
        options = dict(
            dest=item.name,
            default=argparse.SUPPRESS,
            help=f"{item.metadata['help']} (default: {_show(default)})",
        )
        if isinstance(default, bool):
            options["action"] = argparse.BooleanOptionalAction
        elif item.name == "hidden":
            options.update(nargs="*", type=int, metavar="WIDTH")
        elif isinstance(default, tuple):
            options.update(nargs=len(default), type=type(default[0]), metavar="VALUE")
        elif default is not None:
            options["type"] = type(default)
        group.add_argument(flag, **options)


def _show(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def given_settings(args: argparse.Namespace) -> dict:
    names = {item.name for item in dataclasses.fields(TrainConfig)}
    return {name: value for name, value in vars(args).items() if name in names}


def config_from_args(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """recipe -> TOML file -> flags, each overriding the one before."""
    config = base or TrainConfig(**RECIPES[getattr(args, "recipe", None) or "default"])
    if getattr(args, "config", None):
        config = load_toml(args.config, config)
    return from_dict(given_settings(args), config)


def progress_wanted(args) -> bool:
    return sys.stderr.isatty() and not getattr(args, "quiet", False)


# --- data ------------------------------------------------------------------------------------


def cmd_data(args) -> int:
    from mnistlab import data

    load_options = dict(mirrors=tuple(args.mirror), progress=progress_wanted(args))
    if args.action == "fetch":
        files = data.locate(args.dataset, args.data_dir, **load_options)
        for key, path in files.items():
            print(f"{key:13} {path}")
        return 0
    dataset = data.load(args.dataset, args.data_dir, **load_options)
    if args.action == "info":
        spec = data.get_spec(args.dataset)
        print(
            f"{dataset.name}: {len(dataset.train):,} training and {len(dataset.test):,} test "
            f"images of {tuple(dataset.train.images.shape[1:])}, {len(dataset.classes)} classes"
        )
        for key, path in dataset.files.items():
            print(f"  {spec.files[key].name:28} sha256 OK  {path}")
        width = max(len("class"), *(len(name) for name in dataset.classes))
        print(f"  {'class':{width}}  {'train':>6}  {'test':>6}")
        train_counts, test_counts = (
            data.class_counts(dataset.train),
            data.class_counts(dataset.test),
        )
        for name, train_count, test_count in zip(
            dataset.classes, train_counts, test_counts, strict=True
        ):
            print(f"  {name:{width}}  {train_count:6}  {test_count:6}")
        return 0
    from mnistlab import plots

    split = dataset.train if args.split == "train" else dataset.test
    path = plots.samples(split, dataset.classes, args.out, per_class=args.rows, seed=args.seed)
    print(f"wrote {path}")
    return 0


# --- train -----------------------------------------------------------------------------------


class StopFlag:
    """The first Ctrl-C asks training to stop after the current step; a second one aborts."""

    def __init__(self):
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this step (Ctrl-C again to abort)...", file=sys.stderr)


def _default_out(config: TrainConfig) -> Path:
    return Path("runs") / f"{config.dataset}-{config.model}-{time.strftime('%Y%m%d-%H%M%S')}"


def _epoch_line(record: dict, epochs: int) -> str:
    line = (
        f"epoch {record['epoch']}/{epochs}  train loss {record['train_loss']:.4f}  "
        f"test loss {record['test_loss']:.4f}  test acc {100 * record['test_accuracy']:.2f}%"
    )
    if "val_accuracy" in record:
        line += f"  val acc {100 * record['val_accuracy']:.2f}%"
    return line + (f"  {record['seconds']:.1f} s  ({record['samples_per_second']:,.0f} samples/s)")


def cmd_train(args) -> int:
    if args.no_plots:
        return _train(args, None)
    from mnistlab.painter import Painter

    # Started before torch is imported, so that the helper's matplotlib import overlaps it.
    with Painter() as painter:
        return _train(args, painter)


def _train(args, painter) -> int:
    from mnistlab import checkpoint, data, runs
    from mnistlab import train as training

    resumed = None
    if args.resume:
        resumed = checkpoint.load(args.resume)
        config = config_from_args(args, resumed["config"])
        out = checkpoint.resolve(args.resume).parent
    else:
        config = config_from_args(args)
        out = Path(args.out) if args.out else _default_out(config)
        if (out / checkpoint.FILENAME).exists():
            raise ConfigError(
                f"{out} already holds a run; continue it with --resume {out} "
                "or choose another --out"
            )
    if args.dry_run:
        config = dataclasses.replace(config, epochs=1)
    device = training.resolve_device(config.device)
    dataset = data.load(
        config.dataset, config.data_dir, mirrors=tuple(args.mirror), progress=progress_wanted(args)
    )
    tensors = training.prepare(config, dataset, device)
    if args.dry_run:  # a quick end-to-end check: two batches of training, a slice of the test
        keep = 2 * config.batch_size
        tensors = dataclasses.replace(
            tensors,
            x_train=tensors.x_train[:keep],
            y_train=tensors.y_train[:keep],
            x_test=tensors.x_test[:1000],
            y_test=tensors.y_test[:1000],
        )
    model, optimizer = training.build(config, device)
    position, history = None, []
    if resumed is not None:
        checkpoint.load_weights(model, resumed["model"], str(args.resume))
        try:
            optimizer.load_state_dict(resumed["optimizer"])
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise CheckpointError(
                f"{args.resume}: optimizer state does not fit --optimizer "
                f"{config.optimizer} ({error})"
            ) from None
        position = training.Position(resumed["epoch"], resumed["batch"], resumed["rng"])
        history = resumed["history"]
        if position.epoch >= config.epochs:
            raise ConfigError(
                f"{out} already finished {position.epoch} epochs; "
                "pass a larger --epochs to train on"
            )

    runs.write_config(out, config)
    print(f"training {describe(config)} on {config.dataset} ({device}); run folder {out}")
    for record in history:
        print(_epoch_line(record, config.epochs))

    def save(position, history):
        checkpoint.save(
            out / checkpoint.FILENAME,
            config=config,
            model=model,
            optimizer=optimizer,
            epoch=position.epoch,
            batch=position.batch,
            history=history,
            normalization=tensors.normalization,
            rng=position.rng,
        )
        runs.write_metrics(out, history)

    bar = _progress_bar(args)
    samples = len(tensors.y_train)
    # The bar shows the objective being minimised; the epoch line, the plain cross-entropy.
    loss_name = "smoothed loss" if config.label_smoothing else "loss"

    def on_batch(done, total, loss):
        if bar is None:
            return
        if done == 1 or bar.total != samples:
            bar.reset(total=samples)
        bar.update(min(done * config.batch_size, samples) - bar.n)
        if done % 20 == 0:  # reading the loss waits for the device: not every step
            bar.set_postfix({loss_name: f"{loss.item():.4f}"}, refresh=False)

    seen = list(history)

    def on_epoch(record, position):
        seen.append(record)
        save(position, seen)  # every finished epoch is on disk before it is reported
        if bar is not None:
            bar.clear()
        print(_epoch_line(record, config.epochs), flush=True)

    stop = StopFlag()
    previous_handler = signal.signal(signal.SIGINT, stop.handle)
    try:
        result = training.train(
            config,
            tensors,
            model=model,
            optimizer=optimizer,
            position=position,
            history=history,
            on_batch=on_batch,
            on_epoch=on_epoch,
            should_stop=stop,
        )
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        if bar is not None:
            bar.close()
    if result.interrupted:
        save(result.position, result.history)  # finished epochs were saved as they ended
        print(
            f"interrupted at epoch {result.position.epoch + 1}, batch {result.position.batch}; "
            f"checkpoint saved. Continue with: mnistlab train --resume {out}"
        )
        return 130
    final = result.history[-1]
    if painter is not None:
        from mnistlab import plots

        picture_data = plots.run_picture_data(
            result.model, tensors, result.history, result.test_logits
        )
        written = painter.draw(picture_data, out)
        print(f"wrote {', '.join(path.name for path in written)} in {out}")
    total_seconds = sum(record["seconds"] for record in result.history)
    print(
        f"test accuracy {100 * final['test_accuracy']:.2f}% after {final['epoch']} epochs "
        f"({total_seconds:.1f} s of training); run saved in {out}"
    )
    return 0


def describe(config: TrainConfig) -> str:
    if config.model == "logreg":
        shape = "logistic regression 784-10"
    else:
        shape = "MLP " + "-".join(map(str, config.layer_sizes)) + f" ({config.activation})"
    smoothing = f", label smoothing {config.label_smoothing:g}" if config.label_smoothing else ""
    return (
        f"{shape}, impl {config.impl}, {config.optimizer} lr {config.lr:g} "
        f"{config.schedule}{smoothing}, batch {config.batch_size}, {config.epochs} epochs"
    )


def _progress_bar(args):
    if not progress_wanted(args):
        return None
    from tqdm import tqdm

    return tqdm(total=1, unit="sample", unit_scale=True, leave=False, dynamic_ncols=True)


# --- params, evaluate, compare ---------------------------------------------------------------


def cmd_params(args) -> int:
    from mnistlab import models

    config = config_from_args(args)
    rows, total = [], 0
    model = models.build_from_config(config)
    for name, value in model.named_parameters():
        rows.append((name, "x".join(map(str, value.shape)), value.numel()))
        total += value.numel()
    baseline = models.count_parameters(models.build("logreg"))
    width = max(len(name) for name, _, _ in rows)
    title = describe(config).split(",")[0]
    print(f"trainable parameters of the {title}")
    print(f"  {'parameter':{width}}  {'shape':>9}  {'count':>11}")
    for name, shape, count in rows:
        print(f"  {name:{width}}  {shape:>9}  {count:11,}")
    print(f"  {'total':{width}}  {'':9}  {total:11,}")
    print(
        f"logistic regression (784-10): {baseline:,} parameters; "
        f"this model has {total / baseline:.1f}x as many"
    )
    return 0


def _saved_model(path, data_dir, device):
    """A run's checkpoint, its config (with --data-dir applied) and its model, weights loaded."""
    from mnistlab import checkpoint, models

    saved = checkpoint.load(path)
    config = saved["config"]
    if data_dir:
        config = dataclasses.replace(config, data_dir=data_dir)
    model = models.build_from_config(config).to(device)
    checkpoint.load_weights(model, saved["model"], str(path))
    return saved, config, model


def cmd_evaluate(args) -> int:
    from mnistlab import data
    from mnistlab import train as training
    from mnistlab.evaluate import evaluate

    device = training.resolve_device(args.device)
    saved, config, model = _saved_model(args.run, args.data_dir, device)
    dataset = data.load(config.dataset, config.data_dir, progress=progress_wanted(args))
    mean, std = saved["normalization"]
    x = data.to_inputs(dataset.test.images, mean, std, device)
    result = evaluate(model, x, dataset.test.labels.to(device), len(dataset.classes))
    if args.json:
        print(json.dumps(result.as_dict(dataset.classes)))
        return 0
    print(
        f"{describe(config)}\ntest loss {result.loss:.4f}  "
        f"test accuracy {100 * result.accuracy:.2f}% on {len(x):,} images"
    )
    width = max(len("class"), *(len(name) for name in dataset.classes))
    print(f"{'class':{width}}  accuracy")
    for name, accuracy in zip(dataset.classes, result.per_class_accuracy, strict=True):
        print(f"{name:{width}}  {100 * accuracy:7.2f}%")
    print("confusion matrix (rows: true class, columns: predicted)")
    print("      " + "".join(f"{index:>6}" for index in range(len(dataset.classes))))
    for index, row in enumerate(result.confusion.tolist()):
        print(f"{index:>6}" + "".join(f"{count:>6}" for count in row))
    return 0


def cmd_compare(args) -> int:
    from mnistlab import data
    from mnistlab import train as training

    config = config_from_args(args)
    device = training.resolve_device(config.device)
    dataset = data.load(config.dataset, config.data_dir, progress=progress_wanted(args))
    tensors = training.prepare(config, dataset, device)
    impls = ("module", "scratch", "manual")
    print(f"{describe(config)}: the same initial weights and batch order for each impl")
    # One step first: there the implementations differ by float32 rounding alone. Over many
    # steps those differences grow (Adam divides by small second moments), so the final
    # weights part while the accuracy stays the same.
    first = {
        impl: training.train(
            dataclasses.replace(config, impl=impl), tensors, should_stop=lambda: True
        ).model.state_dict()
        for impl in impls
    }
    results = {}
    for impl in impls:
        started = time.perf_counter()
        result = training.train(dataclasses.replace(config, impl=impl), tensors)
        seconds = time.perf_counter() - started
        results[impl] = (result, seconds)
        print(
            f"  {impl}: test acc {100 * result.history[-1]['test_accuracy']:.2f}% "
            f"({seconds:.1f} s)",
            flush=True,
        )

    def largest_difference(state, reference):
        return max((state[name] - reference[name]).abs().max().item() for name in state)

    reference = results["module"][0].model.state_dict()
    print(
        f"{'impl':8}  {'test acc':>8}  {'train loss':>10}  {'seconds':>7}  "
        f"{'max |param - module param|':>26}  {'(after 1 step)':>14}"
    )
    for impl, (result, seconds) in results.items():
        final = result.history[-1]
        print(
            f"{impl:8}  {100 * final['test_accuracy']:7.2f}%  {final['train_loss']:10.4f}  "
            f"{seconds:7.1f}  {largest_difference(result.model.state_dict(), reference):26.2e}"
            f"  {largest_difference(first[impl], first['module']):14.2e}"
        )
    return 0


def cmd_bench(args) -> int:
    from mnistlab import bench, data
    from mnistlab import train as training

    config = config_from_args(args)
    if args.repeats is not None and args.repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {args.repeats}")
    device = training.resolve_device(config.device)
    dataset = data.load(config.dataset, config.data_dir, progress=progress_wanted(args))
    report = bench.run(
        config,
        dataset,
        device,
        impls=tuple(args.impls),
        notebook=not args.no_notebook,
        **({} if args.repeats is None else {"repeats": args.repeats}),
    )
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"{describe(config)}; {report['device']}, {report['threads']} threads, "
        f"{report['epoch_gflop']:.1f} GFLOP of matmuls per epoch"
    )
    print(
        f"{'':30}  {'s/epoch':>8}  {'samples/s':>10}  {'GFLOP/s':>8}  {'x bound':>7}  "
        f"{'slowest':>7}"
    )
    for row in report["rows"]:
        slowest = f"{max(row['times']) / row['seconds'] - 1:+7.0%}" if len(row["times"]) > 1 else ""
        print(
            f"{row['name']:30}  {row['seconds']:8.3f}  {row['samples_per_second']:10,.0f}  "
            f"{row['gflops']:8.1f}  {row['ratio_to_bound']:7.2f}  {slowest:>7}"
        )
    repeats = len(report["rows"][0]["times"])
    if repeats > 1:
        print(
            f"best of {repeats}, taken in turns; slowest: the slowest of the {repeats} "
            "against the best, how much the machine moved meanwhile"
        )
    rows = {row["name"]: row["seconds"] for row in report["rows"]}
    if "module epoch" in rows and "notebook pipeline (batch 64)" in rows:
        print(
            f"module epoch is {rows['notebook pipeline (batch 64)'] / rows['module epoch']:.1f}x "
            "faster than the notebook pipeline"
        )
    return 0


# --- sweeps, pictures and reports ------------------------------------------------------------


def cmd_sweep(args) -> int:
    from mnistlab import plots, sweep

    base = config_from_args(args)
    # With neither a preset nor a grid, the sweep is the one config over the seeds.
    variants = sweep.PRESETS[args.preset](base) if args.preset else [{}]
    if args.grid:
        variants = [
            {**variant, **extra} for variant in variants for extra in sweep.parse_grid(args.grid)
        ]
    configs = sweep.plan(base, variants, args.seeds)
    out = Path(args.out or Path("sweeps") / (args.preset or ("grid" if args.grid else "seeds")))
    fields = sweep.varied_fields([{"config": dataclasses.asdict(c)} for c in configs])
    print(
        f"sweep of {len(variants)} configurations x {len(args.seeds)} seeds = "
        f"{len(configs)} runs in {out}"
    )
    count = {"n": 0}

    def on_record(record, skipped):
        count["n"] += 1
        name = sweep.label(record["config"], fields)
        status = "done before" if skipped else f"{record['seconds']:.1f} s"
        print(
            f"[{count['n']}/{len(configs)}] {name} seed={record['config']['seed']}: "
            f"{100 * record['test_accuracy']:.2f}% ({status})",
            flush=True,
        )

    stop = StopFlag()
    previous_handler = signal.signal(signal.SIGINT, stop.handle)
    try:
        records = sweep.run(configs, out, on_record=on_record, should_stop=stop)
    finally:
        signal.signal(signal.SIGINT, previous_handler)
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
        return 130
    print(f"summary in {out / 'summary.md'} and {out / 'summary.csv'}")
    return 0


def cmd_plot(args) -> int:
    from mnistlab import checkpoint, data, plots, report, runs, sweep
    from mnistlab import train as training

    folder = Path(args.folder)
    if report.is_sweep(folder):
        rows = sweep.summarize(sweep.read_results(folder))
        written = plots.sweep_pictures(rows, folder)
    else:
        device = training.resolve_device("auto")
        saved, config, model = _saved_model(folder, args.data_dir, device)
        tensors = training.prepare(config, data.load(config.dataset, config.data_dir), device)
        history = saved["history"] or runs.read_metrics(folder)
        if not history:
            raise CheckpointError(f"{folder}: the run has no finished epoch to plot")
        written = plots.run_pictures(checkpoint.resolve(folder).parent, model, tensors, history)
    print("wrote " + ", ".join(str(path) for path in written))
    return 0


def cmd_report(args) -> int:
    from mnistlab import report, runs

    folder = Path(args.folder)
    if not report.is_sweep(folder) and not (folder / runs.CONFIG).is_file():
        raise ConfigError(
            f"{folder} is neither a run folder (config.json) nor a sweep folder (results.jsonl)"
        )
    print(f"wrote {report.write(folder, args.out)}")
    return 0


# --- entry point -----------------------------------------------------------------------------


def build_parser() -> Parser:
    parser = Parser(prog="mnistlab", description="Train MLPs and logistic regression on MNIST.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def data_flags(sub):
        sub.add_argument("--dataset", default="mnist", help="mnist or fashion-mnist")
        sub.add_argument("--data-dir", help="folder holding the IDX files")
        sub.add_argument(
            "--mirror",
            action="append",
            default=[],
            metavar="URL",
            help="extra mirror tried first (also $MNISTLAB_MIRROR); repeatable",
        )

    data_parser = commands.add_parser("data", help="fetch, check and look at the datasets")
    actions = data_parser.add_subparsers(dest="action", required=True, parser_class=Parser)
    data_flags(actions.add_parser("fetch", help="find or download the files, verified"))
    data_flags(actions.add_parser("info", help="where each file is, hashes, counts per class"))
    show = actions.add_parser("show", help="a grid of sample images with their labels")
    data_flags(show)
    show.add_argument("--out", default="samples.png", help="PNG file to write")
    show.add_argument("--split", choices=("train", "test"), default="train")
    show.add_argument("--rows", type=int, default=8, help="images per class")
    show.add_argument("--seed", type=int, default=0)
    data_parser.set_defaults(handler=cmd_data)

    train = commands.add_parser("train", help="train a model and save the run")
    train.add_argument("--recipe", choices=sorted(RECIPES), help="a named starting config")
    train.add_argument("--config", help="TOML file of training settings")
    train.add_argument("--out", help="run folder (default: runs/DATASET-MODEL-TIME)")
    train.add_argument("--resume", metavar="RUN", help="continue the run in this folder")
    train.add_argument(
        "--mirror",
        action="append",
        default=[],
        metavar="URL",
        help="extra data mirror tried first; repeatable",
    )
    train.add_argument(
        "--dry-run", action="store_true", help="one epoch of two batches: a quick end-to-end check"
    )
    train.add_argument("--no-plots", action="store_true", help="skip the run's pictures")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_flags(train)
    train.set_defaults(handler=cmd_train)

    params = commands.add_parser("params", help="count trainable parameters, layer by layer")
    params.add_argument("--hidden", nargs="*", type=int, default=argparse.SUPPRESS)
    params.add_argument("--model", choices=("mlp", "logreg"), default=argparse.SUPPRESS)
    params.set_defaults(handler=cmd_params)

    evaluate = commands.add_parser("evaluate", help="test a saved run or checkpoint")
    evaluate.add_argument("run", help="run folder or checkpoint.pt")
    evaluate.add_argument("--data-dir", help="folder holding the IDX files")
    evaluate.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(handler=cmd_evaluate)

    compare = commands.add_parser(
        "compare", help="train module, scratch and manual side by side from the same start"
    )
    compare.add_argument("--config", help="TOML file of training settings")
    add_config_flags(compare, skip=("impl",))
    compare.set_defaults(handler=cmd_compare)

    bench = commands.add_parser(
        "bench", help="time an epoch against its matmul bound and the notebook's pipeline"
    )
    bench.add_argument(
        "--impl",
        dest="impls",
        nargs="*",
        default=["module", "scratch", "manual"],
        choices=("module", "scratch", "manual"),
        help="implementations to time",
    )
    bench.add_argument(
        "--no-notebook", action="store_true", help="skip the (slow) notebook pipeline"
    )
    bench.add_argument(
        "--repeats",
        type=int,
        help="time the bound and each epoch this many times and keep the best (default 5)",
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    add_config_flags(bench, skip=("impl", "epochs"))
    bench.set_defaults(handler=cmd_bench)

    sweep = commands.add_parser("sweep", help="train a grid of configurations x seeds")
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
    sweep.add_argument("--recipe", choices=sorted(RECIPES), help="a named starting config")
    sweep.add_argument("--config", help="TOML file of training settings")
    add_config_flags(sweep, skip=("seed",))
    sweep.set_defaults(handler=cmd_sweep)

    plot = commands.add_parser("plot", help="draw the pictures of a run or a sweep")
    plot.add_argument("folder", help="run folder or sweep folder")
    plot.add_argument("--data-dir", help="folder holding the IDX files (runs only)")
    plot.set_defaults(handler=cmd_plot)

    report = commands.add_parser("report", help="one self-contained HTML page of a run/sweep")
    report.add_argument("folder", help="run folder or sweep folder")
    report.add_argument("--out", help="HTML file (default: FOLDER/report.html)")
    report.set_defaults(handler=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # --help, or a usage error already reported in one line
        return exit.code
    try:
        return args.handler(args)
    except (ConfigError, CheckpointError) as error:
        print(f"mnistlab: error: {error}", file=sys.stderr)
        return 2
    except MnistlabError as error:
        print(f"mnistlab: error: {error}", file=sys.stderr)
        return 1
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
