"""The command line's flags: argparse parsers built from the settings dataclasses.

Flags are made from the fields of TrainConfig (the experiment) and Runtime (the machine), so
each default, choice and help text is written once (in config.py). Training flags not given
stay unset and fall back to, in order: a --config TOML file, a --recipe, then TrainConfig's
defaults. Each command module adds its own parsers with these helpers, and sets its handler.
"""

import argparse
import dataclasses
import sys
from difflib import get_close_matches

from mnistlab.config import Runtime, TrainConfig, parse_value
from mnistlab.errors import ConfigError
from mnistlab.settings import RECIPES, from_dict, read_settings, recipe, split
from mnistlab.text import escaped


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit 2), with a guess at what was meant,
    pointing at the subcommand's own help."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {escaped(message)} (see '{self.prog} --help')\n")

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


def flag(field: str) -> str:
    """A setting's flag: --lr for lr, --data-dir for data_dir, --mirror (given once for each
    mirror) for mirrors."""
    return "--" + ("mirror" if field == "mirrors" else field.replace("_", "-"))


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
            group.add_argument(flag(item.name), **options)
            continue
        elif item.name == "hidden":
            options.update(nargs="*", type=_reader(kind, item.name), metavar="WIDTH")
        elif isinstance(default, tuple):
            options.update(nargs=len(default), type=_reader(kind, item.name), metavar="VALUE")
        elif default is not None:
            options["type"] = _reader(kind, item.name)
        group.add_argument(flag(item.name), **options)


def _reader(kind, name: str):
    """argparse's type for a setting: the text read as grids and spaces read it (a tuple's
    items joined by x: --hidden 1024x1024 is --hidden 1024 1024)."""

    def read(text: str):
        try:
            return parse_value(name, text, kind)
        except ConfigError as error:  # argparse names the flag: the reason alone
            raise argparse.ArgumentTypeError(error.reason) from None

    return read


def _show(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def given(args, kind=TrainConfig) -> dict:
    """The settings given as flags; a tuple's flag gives a list of tuples, joined here."""
    names = {item.name for item in dataclasses.fields(kind)}
    values = {name: value for name, value in vars(args).items() if name in names}
    for name, value in values.items():
        if isinstance(value, list) and all(isinstance(item, tuple) for item in value):
            values[name] = tuple(part for item in value for part in item)
    return values


def config_from_args(args, base: TrainConfig | None = None) -> TrainConfig:
    """recipe -> TOML file -> flags, each overriding the one before; the data set known."""
    from mnistlab.datasets import get_spec

    config = base or recipe(getattr(args, "recipe", None) or "default")
    if getattr(args, "config", None):
        config = _from_file(args.config, lambda values: from_dict(split(values)[0], config))
    config = from_dict(given(args), config)
    get_spec(config.dataset)  # a ConfigError naming the known data sets, before any work
    return config


def _from_file(path, build):
    """What `build` makes of a TOML file's settings; its errors name the file and its key
    (not a flag)."""
    try:
        return build(read_settings(path))
    except ConfigError as error:
        if error.file is not None:  # about the file as a whole, which it names
            raise
        raise ConfigError(f"{path}: {error}", file=str(path)) from None


def read_runtime(args) -> Runtime:
    """Flags, over the machine settings of a --config file, over what the environment says
    (main() read it: mnistlab.environment), over Runtime's defaults."""
    from mnistlab import environment

    base = Runtime()
    if getattr(args, "config", None):
        base = _from_file(args.config, lambda values: Runtime(**split(values)[1]))
    progress = sys.stderr.isatty() and not getattr(args, "quiet", False)
    runtime = dataclasses.replace(base, **given(args, Runtime), progress=progress)
    return environment.runtime(runtime, getattr(args, "environment", environment.Environment()))


def command(commands, name: str, text: str) -> "Parser":
    """A subcommand whose one-line description shows in its own --help and in the list."""
    return commands.add_parser(name, help=text, description=text)


def between(low: int, high: int):
    """argparse's type for a whole number in [low, high]."""

    def read(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"cannot read {text!r} as a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return read


def training_parser(commands, name, text, skip=()):
    sub = command(commands, name, text)
    if "recipe" not in skip:
        sub.add_argument("--recipe", choices=list(RECIPES), help="a named starting config")
    sub.add_argument("--config", help="TOML file of settings (top level or a [train] table)")
    sub.add_argument("--quiet", action="store_true", help="no progress bars")
    add_setting_flags(sub, TrainConfig, skip)
    add_setting_flags(sub, Runtime)
    return sub
