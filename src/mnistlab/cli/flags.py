"""The command line's flags: argparse parsers built from the settings dataclasses.

Flags are made from the fields of TrainConfig (the experiment) and Runtime (the machine), so
each default, choice and help text is written once (in config.py). Training flags not given
stay unset and fall back to, in order: a --config TOML file, a --recipe, then TrainConfig's
defaults. Each subcommand's name is `args.command`; mnistlab.cli runs it.
"""

import argparse
import dataclasses
import sys
from difflib import get_close_matches

from mnistlab import __version__
from mnistlab.config import (
    EXPORT_FORMATS,
    IMPLEMENTATIONS,
    RECIPES,
    Runtime,
    TrainConfig,
    from_dict,
    read_settings,
    recipe,
    split,
)
from mnistlab.errors import ConfigError


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit 2), with a guess at what was meant,
    pointing at the subcommand's own help."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def parse_args(self, args=None, namespace=None):
        args, extras = self.parse_known_args(args, namespace)
        if extras:  # reported by the subcommand that was given them, with its options
            parser = self._subcommand(args)
            known = [option for action in parser._actions for option in action.option_strings]
            message = f"unrecognized arguments: {' '.join(extras)}"
            flags = [word.split("=")[0] for word in extras if word.startswith("-")]
            guesses = [g for f in flags for g in get_close_matches(f, known, n=1, cutoff=0.75)]
            if guesses:
                message += f" (did you mean {', '.join(guesses)}?)"
            parser.error(message)
        return args

    def _subcommand(self, args) -> "Parser":
        parser = self
        for dest in ("command", "action"):
            choices = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
            if not choices or getattr(args, dest, None) not in choices[0].choices:
                break
            parser = choices[0].choices[getattr(args, dest)]
        return parser


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
        config = _from_file(args.config, lambda values: from_dict(split(values)[0], config))
    return from_dict(given(args), config)


def _from_file(path, build):
    """What `build` makes of a TOML file's settings; its errors name the file and its key
    (not a flag)."""
    try:
        return build(read_settings(path))
    except ConfigError as error:
        message = str(error)
        raise ConfigError(
            message if message.startswith(("config file", "cannot read")) else f"{path}: {message}"
        ) from None


def runtime_from_args(args) -> Runtime:
    """Flags, over the machine settings of a --config file, over Runtime's defaults."""
    base = Runtime()
    if getattr(args, "config", None):
        base = _from_file(args.config, lambda values: Runtime(**split(values)[1]))
    progress = sys.stderr.isatty() and not getattr(args, "quiet", False)
    return dataclasses.replace(base, **given(args, Runtime), progress=progress)


def _command(commands, name: str, text: str) -> "Parser":
    """A subcommand whose one-line description shows in its own --help and in the list."""
    return commands.add_parser(name, help=text, description=text)


def _data_parsers(commands) -> None:
    data_parser = _command(commands, "data", "fetch, check and look at the datasets")
    actions = data_parser.add_subparsers(dest="action", required=True, parser_class=Parser)
    for name, summary in (
        ("fetch", "find or download the files, verified"),
        ("info", "where each file is, hashes, counts per class"),
        ("show", "a grid of sample images with their labels"),
    ):
        sub = actions.add_parser(name, help=summary, description=summary)
        sub.add_argument("--dataset", default="mnist", help="mnist or fashion-mnist")
        add_setting_flags(sub, Runtime, skip=("device", "threads"))
        sub.add_argument("--quiet", action="store_true", help="no progress bars")
    sub.add_argument("--out", help="picture file to write (default: a new temporary folder)")
    sub.add_argument("--split", choices=("train", "test"), default="train")
    sub.add_argument("--rows", type=_positive, default=8, help="images per class")
    sub.add_argument("--seed", type=int, default=0)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _training_parser(commands, name, text, skip=()):
    sub = _command(commands, name, text)
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

    params = _command(commands, "params", "count trainable parameters, layer by layer")
    params.add_argument("--hidden", nargs="*", type=int, default=argparse.SUPPRESS, help="widths")
    params.add_argument("--model", choices=("mlp", "logreg"), default=argparse.SUPPRESS)

    evaluate = _command(commands, "evaluate", "test a saved run or checkpoint")
    evaluate.add_argument("run", help="run folder or checkpoint.pt")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    add_setting_flags(evaluate, Runtime, skip=("threads",))

    _training_parser(
        commands, "compare", "train module, scratch and manual side by side", skip=("impl",)
    )

    bench = _training_parser(
        commands, "bench", "time an epoch against its matmul bound", skip=("impl", "epochs")
    )
    bench.add_argument(
        "--impl", dest="impls", nargs="*", default=list(IMPLEMENTATIONS), choices=IMPLEMENTATIONS
    )
    bench.add_argument("--no-notebook", action="store_true", help="skip the notebook pipeline")
    bench.add_argument("--repeats", type=int, help="repeats, the best kept (default 5)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")

    _sweep_parser(commands)
    plot = _command(commands, "plot", "draw the pictures of a run or a sweep")
    plot.add_argument("folder", help="run folder or sweep folder")
    add_setting_flags(plot, Runtime, skip=("threads",))
    _use_parsers(commands)
    report = _command(
        commands, "report", "one self-contained HTML page of a run or a sweep, or runs side by side"
    )
    report.add_argument("folder", nargs="+", help="run folder or sweep folder, or several runs")
    report.add_argument("--out", help="HTML file (default: FOLDER/report.html)")
    return parser


def _use_parsers(commands) -> None:
    """check, tune, predict, export, serve."""
    check = _command(
        commands, "check", "diagnose a model you wrote: leaves, gradients, logits, scale, agreement"
    )
    check.add_argument("target", metavar="FILE.py:NAME", help="a model class or object in a file")
    check.add_argument("--dataset", default="mnist", help="the batch's data set (default mnist)")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument("--quiet", action="store_true", help="no progress bars")
    add_setting_flags(check, Runtime, skip=("device", "threads"))

    _tune_parser(commands)
    predict = _command(commands, "predict", "read your own images: class and top-3 probabilities")
    predict.add_argument("run", help="run folder or checkpoint.pt")
    predict.add_argument("images", nargs="+", help="image files, folders of them, or - for stdin")
    predict.add_argument("--json", action="store_true", help="one JSON object per image")
    predict.add_argument(
        "--show-input", metavar="FILE.png", help="a picture of each image and the 28x28 input"
    )
    export = _command(commands, "export", "the model for ONNX, TorchScript or safetensors")
    export.add_argument("run", help="run folder or checkpoint.pt")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    export.add_argument("--out", help="file to write (default: RUN/model.EXT)")
    serve = _command(commands, "serve", "a web page to draw digits on, and a JSON API")
    serve.add_argument("run", help="run folder or checkpoint.pt")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    add_setting_flags(serve, Runtime, skip=("data_dir", "mirrors"))


def _tune_parser(commands) -> None:
    from mnistlab.tune import PRUNERS, SAMPLERS

    tune = _training_parser(commands, "tune", "search settings on Optuna, chosen on validation")
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
    tune.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    tune.add_argument(
        "--heartbeat",
        type=int,
        default=30,
        help="seconds between heartbeats; a trial 3 beats silent is failed, retried",
    )
    tune.add_argument("--summary", action="store_true", help="print the study and stop")
    tune.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)


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
    sweep.add_argument(
        "--storage",
        help="share the sweep through an Optuna storage (sqlite:///FILE, postgresql://...): "
        "every process given it takes runs from one queue, each run once",
    )
    sweep.add_argument("--study", help="the sweep's name in the storage (default sweep-OUT)")
    sweep.add_argument("--heartbeat", type=int, default=30, help="seconds between heartbeats")
