"""A run is a folder that describes itself: config.json, metrics.jsonl (one JSON line per
epoch), checkpoint.pt and the run's pictures."""

import dataclasses
import json
import os
from pathlib import Path

from mnistlab.config import TrainConfig

CONFIG = "config.json"
METRICS = "metrics.jsonl"


def write_json(path: Path, value) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never half."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(partial, path)


def write_config(folder: Path, config: TrainConfig) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / CONFIG, dataclasses.asdict(config))


def write_metrics(folder: Path, history: list[dict]) -> None:
    """Rewrite metrics.jsonl from the whole history, so a resumed run never repeats a line."""
    partial = folder / f".{METRICS}.{os.getpid()}.tmp"
    partial.write_text("".join(json.dumps(record) + "\n" for record in history))
    os.replace(partial, folder / METRICS)


def read_metrics(folder: Path) -> list[dict]:
    path = Path(folder) / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
