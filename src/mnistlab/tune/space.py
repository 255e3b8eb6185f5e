"""A search space: NAME=KIND:ARGS for any training setting, and the trial's config from it.

lr=log:1e-4:3e-2   dropout=float:0:0.5   epochs=int:2:20   hidden=choice:256,512,1024x1024
"""

import dataclasses
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from mnistlab.config import TrainConfig, parse_value, show
from mnistlab.errors import ConfigError, Setting

KINDS = ("log", "float", "int", "choice")


@dataclass(frozen=True)
class Dimension:
    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()

    def grid(self) -> list:
        """Every value of a choice or int dimension, as Optuna stores it."""
        if self.kind == "choice":
            return [encode(choice) for choice in self.choices]
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1))
        raise ConfigError(
            (Setting("space"), f" {self.name}: a grid needs choice or int dimensions")
        )

    def size(self) -> int:
        """Points in a grid of this dimension (counted, not listed)."""
        if self.kind == "choice":
            return len(self.choices)
        if self.kind == "int":
            return int(self.high) - int(self.low) + 1
        raise ConfigError(
            (Setting("space"), f" {self.name}: a grid needs choice or int dimensions")
        )

    def holds(self, value) -> bool:
        if self.kind == "choice":
            return encode(value) in self.grid()
        return self.low <= value <= self.high


def encode(value):
    """Optuna's choices are primitives: a tuple (hidden=1024x1024) is kept as its text."""
    return "x".join(map(str, value)) if isinstance(value, tuple) else value


def parse_space(specs: list[str]) -> dict[str, Dimension]:
    """["lr=log:1e-4:3e-2", "hidden=choice:256,1024x1024"] -> {name: Dimension}."""
    fields = {item.name for item in dataclasses.fields(TrainConfig)}
    space = {}
    for spec in specs:
        name, _, rest = spec.partition("=")
        name = name.strip().replace("-", "_")
        kind, _, args = rest.partition(":")
        if name not in fields or kind not in KINDS or not args:
            raise ConfigError(
                (
                    Setting("space"),
                    f" {spec!r}: write NAME=KIND:ARGS with NAME a training setting and KIND "
                    f"one of {', '.join(KINDS)} (lr=log:1e-4:3e-2, hidden=choice:256,512)",
                ),
            )
        try:
            space[name] = _dimension(name, kind, args)
        except ConfigError as error:  # named by the space, not by the setting's own flag
            raise ConfigError((Setting("space"), f" {spec!r}: {error}")) from None
    return space


def _dimension(name: str, kind: str, args: str) -> Dimension:
    """One dimension, its values read as the setting's type (their ranges: `check`)."""
    import math

    if kind == "choice":
        return Dimension(
            name, kind, choices=tuple(map(partial(parse_value, name), args.split(",")))
        )
    try:
        low, high = (float(value) for value in args.split(":"))
    except ValueError:
        raise ConfigError(f"{kind} takes LOW:HIGH") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ConfigError("LOW and HIGH must be finite numbers")
    if not low < high or (kind == "log" and low <= 0):
        raise ConfigError("needs LOW < HIGH (and LOW > 0 for log)")
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise ConfigError("int takes whole numbers")
    return Dimension(name, kind, low, high)


def check(space: dict[str, Dimension], base: TrainConfig) -> None:
    """Every value a dimension can give (its choices, both ends of a range) makes a valid
    config from `base`: a ConfigError naming the space before anything is made."""
    for name, dimension in space.items():
        if dimension.kind == "choice":
            values = dimension.choices
        else:
            kind = int if dimension.kind == "int" else float
            values = (kind(dimension.low), kind(dimension.high))
        for value in values:
            try:
                dataclasses.replace(base, **{name: value})
            except ConfigError as error:
                raise ConfigError((Setting("space"), f" {name}={show(value)}: {error}")) from None


def read_space(path: str | Path) -> list[str]:
    """A TOML file's [space] table (name = "kind:args") as space specs."""
    import tomllib

    try:
        with open(path, "rb") as handle:
            table = tomllib.load(handle).get("space", {})
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read the space in {path}: {error}") from None
    if not isinstance(table, dict):
        raise ConfigError(f'{path}: [space] must be a table of name = "kind:args"')
    return [f"{name}={value}" for name, value in table.items()]


def suggest(trial, space: dict[str, Dimension], base: TrainConfig) -> TrainConfig:
    """The trial's config: the base with each dimension sampled."""
    values = {}
    for name, dimension in space.items():
        if dimension.kind == "log":
            values[name] = trial.suggest_float(name, dimension.low, dimension.high, log=True)
        elif dimension.kind == "float":
            values[name] = trial.suggest_float(name, dimension.low, dimension.high)
        elif dimension.kind == "int":
            values[name] = trial.suggest_int(name, int(dimension.low), int(dimension.high))
        else:
            chosen = trial.suggest_categorical(name, dimension.grid())
            values[name] = parse_value(name, str(chosen))
    return dataclasses.replace(base, **values)


def baseline_point(space: dict[str, Dimension], base: TrainConfig) -> dict:
    """The base settings as a point of the space, so a search shows how its starting point
    scores on the same validation split; a base value outside the space is an error."""
    point = {}
    for name, dimension in space.items():
        value = getattr(base, name)
        if not dimension.holds(value):
            raise ConfigError(
                (
                    Setting("baseline"),
                    f": the base's {name} {show(value)} lies outside the space's {name}; "
                    "set it inside or widen the space",
                ),
            )
        point[name] = encode(value)
    return point
