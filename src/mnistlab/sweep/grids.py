"""What a sweep runs: presets and grids of variants, crossed with seeds, each keyed by its
experiment config."""

import dataclasses
import hashlib
import itertools
import json
import math
from collections.abc import Callable

from mnistlab.config import ACTIVATIONS, TrainConfig, parse_value
from mnistlab.datasets import CLASSES, INPUTS
from mnistlab.errors import ConfigError, Setting


def width_for_budget(depth: int, budget: int, inputs: int = INPUTS, classes: int = CLASSES) -> int:
    """The width w for which `depth` hidden layers of w units have about `budget` parameters:
    (depth-1)·w² + (inputs + depth + classes)·w + classes = budget."""
    a, b, c = depth - 1, inputs + depth + classes, classes - budget
    if a == 0:
        return round(-c / b)
    return round((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a))


def _width(_: TrainConfig) -> list[dict]:
    return [{"hidden": (width,)} for width in (16, 32, 64, 128, 256, 512, 1024, 2048)]


def _depth(base: TrainConfig) -> list[dict]:
    from mnistlab import models

    budget = models.count_parameters(TrainConfig().layer_sizes)  # the assignment's MLP
    fixed_width = [{"hidden": (256,) * depth} for depth in range(1, 5)]
    fixed_budget = [{"hidden": (width_for_budget(depth, budget),) * depth} for depth in range(1, 5)]
    return fixed_width + fixed_budget


def _activation(_: TrainConfig) -> list[dict]:
    # "none" stacks linear layers with nothing between them: it collapses to a linear model,
    # which logistic regression shows next to it.
    return [{"activation": name} for name in ACTIVATIONS] + [{"model": "logreg"}]


def _optimizer(_: TrainConfig) -> list[dict]:
    return (
        [{"optimizer": "sgd", "lr": lr} for lr in (0.01, 0.03, 0.1)]
        + [{"optimizer": "sgd", "momentum": 0.9, "lr": lr} for lr in (0.01, 0.03, 0.1)]
        + [{"optimizer": "adam", "lr": lr} for lr in (0.001, 0.003, 0.01)]
    )


def _batch(base: TrainConfig) -> list[dict]:
    # Square-root learning-rate scaling from the default batch size.
    return [
        {"batch_size": size, "lr": base.lr * math.sqrt(size / base.batch_size)}
        for size in (32, 64, 128, 256, 512, 1024, 2048)
    ]


PRESETS: dict[str, Callable[[TrainConfig], list[dict]]] = {
    "width": _width,
    "depth": _depth,
    "activation": _activation,
    "optimizer": _optimizer,
    "batch": _batch,
}


def variants(base: TrainConfig, preset: str | None = None, grid: list[str] = ()) -> list[dict]:
    """A preset's variants, each crossed with a grid's; with neither, the base alone."""
    chosen = PRESETS[preset](base) if preset else [{}]
    if grid:
        chosen = [{**variant, **extra} for variant in chosen for extra in parse_grid(grid)]
    return chosen


def parse_grid(specs: list[str]) -> list[dict]:
    """["hidden=64,128x128", "lr=0.001,0.01"] -> the cartesian product as override dicts.

    Values are read as the field's type (a tuple field joins its items with 'x'; a bool is
    true/false, yes/no or 1/0) and then pass the same checks as flags and TOML files.
    """
    from difflib import get_close_matches

    fields = {item.name: item for item in dataclasses.fields(TrainConfig)}
    axes = []
    for spec in specs:
        name, _, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        if name not in fields or name == "seed" or not values:
            close = get_close_matches(name, [key for key in fields if key != "seed"], n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(
                (
                    Setting("grid"),
                    f" {spec!r}: write NAME=V1,V2 with NAME a training setting other than "
                    f"seed (seeds are given apart){hint}; settings: "
                    + ", ".join(key for key in fields if key != "seed"),
                ),
            )
        axes.append([(name, _grid_value(name, value)) for value in values.split(",")])
    return [dict(choice) for choice in itertools.product(*axes)]


def _grid_value(name: str, text: str):
    try:
        return parse_value(name, text)
    except ConfigError as error:
        raise ConfigError((Setting("grid"), f" {error}")) from None


def run_key(config: TrainConfig) -> str:
    """The run's identity: a hash of its experiment config, nothing of the machine."""
    text = json.dumps(dataclasses.asdict(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan(base: TrainConfig, variants: list[dict], seeds: list[int]) -> list[TrainConfig]:
    """Every variant at every seed; a seed given twice is run once."""
    return [
        dataclasses.replace(base, **variant, seed=seed)
        for variant in variants
        for seed in dict.fromkeys(seeds)
    ]
