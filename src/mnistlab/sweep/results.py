"""A sweep's records (one JSON line per finished run in results.jsonl) and its summary: one
row per configuration, mean ± std over seeds with n, ranked by validation accuracy when the
runs held a split out, and the Pareto frontier of accuracy against cost."""

import csv
import io
import json
import logging
import statistics
from pathlib import Path

from mnistlab.config import show
from mnistlab.errors import RunError
from mnistlab.files import atomic_write

log = logging.getLogger(__name__)


RESULTS = "results.jsonl"


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
    if path.is_symlink():  # planted: never followed
        raise RunError(f"{path} is a link, not a sweep's results file; remove it")
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
        row["pareto_parameters"] = on_frontier(row, rows, "parameters")
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
    writer = csv.DictWriter(
        text, fieldnames=[*COLUMNS, "pareto_flops", "pareto_seconds", "pareto_parameters"]
    )
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(table, text.getvalue())
    return md, table
