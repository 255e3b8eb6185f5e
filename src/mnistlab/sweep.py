"""Sweeps: config variants x seeds, each an ordinary run (runs.Run) in one process.

Each run lives in `SWEEP/runs/<key>/`, where `key` is a hash of its experiment config (never
of where it ran: a sweep resumed with another data folder or thread count redoes nothing), so
`mnistlab evaluate`, `plot`, `report` and `--resume` take any of them. Every finished run is
also appended as one JSON line to `results.jsonl`; running a sweep again skips what is done and
continues a run that was stopped mid-way from its checkpoint. One process at a time works in a
sweep folder (a lock). The summary groups runs by config less the seed and reports mean ± std
over the seeds, with n.
"""

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import logging
import math
import os
import statistics
from collections.abc import Callable
from pathlib import Path

from mnistlab import models
from mnistlab.config import ACTIVATIONS, Runtime, TrainConfig, coerce, show
from mnistlab.errors import ConfigError, RunError
from mnistlab.files import atomic_write
from mnistlab.runs import Run, lock_folder, plain

log = logging.getLogger(__name__)

RESULTS = "results.jsonl"


def width_for_budget(depth: int, budget: int, inputs: int = 784, classes: int = 10) -> int:
    """The width w for which `depth` hidden layers of w units have about `budget` parameters:
    (depth-1)·w² + (inputs + depth + classes)·w + classes = budget."""
    a, b, c = depth - 1, inputs + depth + classes, classes - budget
    if a == 0:
        return round(-c / b)
    return round((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a))


def _width(_: TrainConfig) -> list[dict]:
    return [{"hidden": (width,)} for width in (16, 32, 64, 128, 256, 512, 1024, 2048)]


def _depth(base: TrainConfig) -> list[dict]:
    budget = 397_510  # the assignment's MLP
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
                f"--grid {spec!r}: write NAME=V1,V2 with NAME a training setting "
                f"other than seed (use --seeds){hint}; settings: "
                + ", ".join(key for key in fields if key != "seed")
            )
        default = fields[name].default
        axes.append([(name, _convert(name, value, default)) for value in values.split(",")])
    return [dict(choice) for choice in itertools.product(*axes)]


BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _convert(name: str, value: str, default):
    text = value.strip()
    try:
        if isinstance(default, tuple):
            kind = int if name == "hidden" else float
            return tuple(kind(item) for item in text.split("x"))
        if isinstance(default, bool):
            if text.lower() not in BOOLEANS:
                raise ValueError
            return BOOLEANS[text.lower()]
        if isinstance(default, int | float):
            return coerce(name, type(default), type(default)(text))
        return text
    except ValueError:
        kind = "true or false" if isinstance(default, bool) else type(default).__name__
        raise ConfigError(f"--grid {name}: cannot read {value!r} as {kind}", name) from None


def run_key(config: TrainConfig) -> str:
    """The run's identity: a hash of its experiment config, nothing of the machine."""
    text = json.dumps(dataclasses.asdict(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


NUMBER = (int, float)
REQUIRED = {
    "key": str,
    "config": dict,
    "test_accuracy": NUMBER,
    "seconds": NUMBER,
    "parameters": int,
    "train_flops": int,
}


def read_results(folder: str | Path, problems: list[str] | None = None) -> list[dict]:
    """Finished runs. A line that is not a whole record (a crash mid-write, another version's
    record, a hand edit) is left out, and said in `problems` (and the log) by line number."""
    path = Path(folder) / RESULTS
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        missing = (
            [key for key, kind in REQUIRED.items() if not isinstance(record.get(key), kind)]
            if isinstance(record, dict)
            else ["a JSON object"]
        )
        if missing:
            message = f"{path}:{number}: not a sweep record (needs {', '.join(missing)}); skipped"
            log.warning(message)
            if problems is not None:
                problems.append(message)
            continue
        records.append(record)
    return records


def _append(folder: Path, record: dict) -> None:
    path = folder / RESULTS
    # After a crash mid-write the file may end inside a line: start a fresh one.
    torn = path.is_file() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    with open(path, "a") as handle:
        handle.write(("\n" if torn else "") + json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def plan(base: TrainConfig, variants: list[dict], seeds: list[int]) -> list[TrainConfig]:
    """Every variant at every seed; a seed given twice is run once."""
    return [
        dataclasses.replace(base, **variant, seed=seed)
        for variant in variants
        for seed in dict.fromkeys(seeds)
    ]


def run(
    configs: list[TrainConfig],
    folder: str | Path,
    runtime: Runtime | None = None,
    *,
    on_record: Callable[[dict, bool], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    engine=None,
) -> list[dict]:
    """Train every config not already in `folder`'s results; return the records of all of
    them, in order. `on_record(record, skipped)` sees each one as it is done or found.

    With `engine` (a tune.Engine) the runs are shared through its study instead: every
    process given the same sweep and storage, on any machine, takes runs from one queue, and
    `folder`'s results then hold every machine's records."""
    runtime = runtime or Runtime()
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunError(f"cannot use {folder} as a sweep folder: it is a file")
    folder.mkdir(parents=True, exist_ok=True)
    if engine is not None:
        from mnistlab import tune

        records = tune.sweep(engine, configs, folder, runtime, on_record, should_stop)
        atomic_write(folder / RESULTS, "".join(json.dumps(r) + "\n" for r in records))
        return records
    lock = lock_folder(folder)
    try:
        return _run(configs, folder, runtime, on_record, should_stop)
    finally:
        lock.release()


def _run(configs, folder, runtime, on_record, should_stop) -> list[dict]:
    done = {record["key"]: record for record in read_results(folder)}
    datasets: dict[tuple, object] = {}
    records = []
    for config in configs:
        key = run_key(config)
        if key not in done:
            if should_stop is not None and should_stop():
                break
            record = _train(config, folder / "runs" / key, runtime, datasets, should_stop)
            if record is None:
                break  # an unfinished run is not recorded; the next invocation continues it
            record = {"key": key, **record}
            _append(folder, record)
            done[key] = record
            records.append(record)
            if on_record is not None:
                on_record(record, False)
            continue
        records.append(done[key])
        if on_record is not None:
            on_record(done[key], True)
    return records


def _train(config, run_folder, runtime, datasets, should_stop) -> dict | None:
    """One run of the sweep (continued from its checkpoint if it has one); its record."""
    from mnistlab import checkpoint

    if (run_folder / checkpoint.FILENAME).exists():
        run = Run.open(run_folder)
    else:
        run = Run.create(run_folder, config)
    with run:
        if not run.finished:
            source = (config.dataset, config.val_split)
            if source not in datasets:
                datasets[source] = run.load_tensors(runtime)
            result = run.fit(
                runtime, tensors=datasets[source], pictures=False, should_stop=should_stop
            )
            if result.interrupted:
                return None
        final = run.history[-1]
        record = {
            "config": dataclasses.asdict(config),
            "run": str(Path("runs") / run_folder.name),
            "parameters": models.count_parameters(config.layer_sizes),
            "train_flops": sum(
                models.epoch_flops(config.layer_sizes, epoch["samples"]) for epoch in run.history
            ),
            "seconds": float(sum(epoch["seconds"] for epoch in run.history)),
            "test_accuracy": float(final["test_accuracy"]),
            "test_loss": final["test_loss"],
            "history": run.history,
        }
        if "val_accuracy" in final:
            record["val_accuracy"] = final["val_accuracy"]
    return json.loads(json.dumps(plain(record)))  # the form it has when read back from disk


def varied_fields(records: list[dict]) -> list[str]:
    """Config fields (other than seed) that differ between the records."""
    fields = [name for name in records[0]["config"] if name != "seed"] if records else []
    return [
        name
        for name in fields
        if len({json.dumps(record["config"].get(name)) for record in records}) > 1
    ]


def label(config: dict, fields: list[str]) -> str:
    if config.get("model") == "logreg":  # no hidden layer: its settings mean nothing here
        fields = [name for name in fields if name not in ("hidden", "activation", "dropout")]
    return " ".join(f"{name}={show(config.get(name))}" for name in fields) or "base"


def _spread(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def chosen_by_record(record: dict) -> float:
    """One run's figure of merit: validation accuracy when it held a split out, else test."""
    value = record.get("val_accuracy")
    return value if isinstance(value, int | float) else record["test_accuracy"]


def chosen_by(row: dict) -> float:
    """What a configuration is ranked by: validation accuracy when the sweep held a validation
    split out (choosing by test accuracy would tune to the test set), else test accuracy."""
    return row["val_mean"] if row.get("val_mean") is not None else row["accuracy_mean"]


def summarize(records: list[dict]) -> list[dict]:
    """One row per configuration (seeds pooled): mean ± std (sample std; 0 when n = 1),
    ranked by validation accuracy when every run has one, else by test accuracy."""
    fields = varied_fields(records)
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(label(record["config"], fields), []).append(record)
    rows = []
    for name, group in groups.items():
        validation = [r.get("val_accuracy") for r in group]
        seconds_mean, seconds_std = _spread([record["seconds"] for record in group])
        accuracy_mean, accuracy_std = _spread([record["test_accuracy"] for record in group])
        val_mean, val_std = (None, None)
        if all(isinstance(value, int | float) for value in validation):
            val_mean, val_std = _spread(validation)
        rows.append(
            {
                "config": name,
                "n": len(group),
                "parameters": group[0]["parameters"],
                "train_flops": group[0]["train_flops"],
                "seconds_mean": seconds_mean,
                "seconds_std": seconds_std,
                "accuracy_mean": accuracy_mean,
                "accuracy_std": accuracy_std,
                "val_mean": val_mean,
                "val_std": val_std,
            }
        )
    if any(row["val_mean"] is None for row in rows):  # rank all rows alike
        for row in rows:
            row["val_mean"] = row["val_std"] = None
    rows.sort(key=chosen_by, reverse=True)
    for row in rows:
        row["pareto_flops"] = on_frontier(row, rows, "train_flops")
        row["pareto_seconds"] = on_frontier(row, rows, "seconds_mean")
    return rows


def on_frontier(row: dict, rows: list[dict], cost: str) -> bool:
    """True when no other row is at least as accurate for less cost, or more accurate for the
    same cost: the best accuracy each budget buys."""
    return not any(
        other is not row
        and other[cost] <= row[cost]
        and chosen_by(other) >= chosen_by(row)
        and (other[cost] < row[cost] or chosen_by(other) > chosen_by(row))
        for other in rows
    )


COLUMNS = (
    "config",
    "n",
    "parameters",
    "train_flops",
    "seconds_mean",
    "seconds_std",
    "accuracy_mean",
    "accuracy_std",
    "val_mean",
    "val_std",
)


def markdown(rows: list[dict]) -> str:
    validation = bool(rows) and rows[0].get("val_mean") is not None
    names = ["configuration", "params", "train GFLOP", "seconds"]
    names += ["validation accuracy"] if validation else []
    names += ["test accuracy (mean ± std)", "n"]
    # A Markdown table needs one alignment cell per header cell, or it is not a table.
    lines = ["| " + " | ".join(names) + " |", "| --- |" + " ---: |" * (len(names) - 1)]
    for row in rows:
        mark = " *" if row["pareto_flops"] else ""
        val = f"{100 * row['val_mean']:.2f} ± {100 * row['val_std']:.2f}% | " if validation else ""
        lines.append(
            f"| {row['config']}{mark} | {row['parameters']:,} | {row['train_flops'] / 1e9:,.0f} | "
            f"{row['seconds_mean']:.1f} ± {row['seconds_std']:.1f} | {val}"
            f"{100 * row['accuracy_mean']:.2f} ± {100 * row['accuracy_std']:.2f}% | {row['n']} |"
        )
    lines.append("")
    ranked = "validation accuracy (the test column is for reporting, not choosing)"
    lines.append(
        f"Ranked by {ranked if validation else 'test accuracy'}. \\* on the accuracy-for-FLOPs "
        "Pareto frontier; std is over seeds (0 when n = 1)."
    )
    return "\n".join(lines) + "\n"


def write_summary(folder: str | Path, rows: list[dict]) -> tuple[Path, Path]:
    folder = Path(folder)
    md, table = folder / "summary.md", folder / "summary.csv"
    atomic_write(md, markdown(rows))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=[*COLUMNS, "pareto_flops", "pareto_seconds"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(table, text.getvalue())
    return md, table
