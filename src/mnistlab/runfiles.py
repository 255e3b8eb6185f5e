"""The files of a run folder: their names, JSON written and read defensively, the folder lock.

A run folder holds config.json (the experiment), machine.json (where it ran), metrics.jsonl
(one JSON line per finished epoch), evaluation.json (the final test evaluation),
checkpoint.pt, and the run's pictures. Any of them may have been edited by hand: readers
leave out what they cannot read, or raise a RunError that names the file.
"""

import json
import math
from pathlib import Path

from filelock import FileLock, Timeout

from mnistlab.config import TrainConfig
from mnistlab.errors import MnistlabError, RunError
from mnistlab.files import LOCK, atomic_write, read_small
from mnistlab.settings import from_saved

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
MACHINE = "machine.json"
METRICS = "metrics.jsonl"
EVALUATION = "evaluation.json"
PICTURES = ("curves.png", "confusion.png", "mistakes.png", "weights.png")
MAX_METRICS = 50_000_000  # bytes of metrics.jsonl read: a line an epoch is ~300 bytes


def plain(value):
    """JSON has no NaN or infinity: a non-finite number is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def write_json(path: Path, value) -> Path:
    return atomic_write(path, json.dumps(plain(value), indent=2, allow_nan=False) + "\n")


def write_metrics(folder: Path, history: list[dict]) -> Path:
    """Rewrite metrics.jsonl from the whole history, so a resumed run never repeats a line."""
    lines = "".join(json.dumps(plain(record), allow_nan=False) + "\n" for record in history)
    return atomic_write(Path(folder) / METRICS, lines)


def _not_a_number(word: str):
    """json.loads takes NaN and Infinity, which mnistlab never writes (write_metrics makes
    them null) and no JSON reader downstream accepts: such a line is not a record."""
    raise ValueError(f"{word} is not a JSON number")


def read_metrics(folder: str | Path) -> list[dict]:
    """The per-epoch records; lines that are not records are left out."""
    path = Path(folder) / METRICS
    if not path.exists():
        return []
    try:
        text = read_small(path, MAX_METRICS).decode(errors="replace")
    except OSError as error:
        raise RunError(f"{path}: cannot be read ({error.strerror})") from None
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line, parse_constant=_not_a_number)
        except ValueError:  # not JSON, NaN or infinity, or a number past the digit limit
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def read_json(path: Path):
    """A run's small JSON file (evaluation.json, study.json, ...), or None when it is missing,
    not a regular file, too large or not JSON."""
    try:
        return json.loads(read_small(path))
    except (OSError, ValueError, RecursionError):
        return None


def read_config(folder: str | Path) -> TrainConfig:
    path = Path(folder) / CONFIG
    try:
        return from_saved(json.loads(read_small(path)))
    except (OSError, ValueError, TypeError) as error:
        raise RunError(f"{path}: not a readable mnistlab run config ({error})") from None


def is_run(folder: str | Path) -> bool:
    """A folder with a checkpoint, or with the config.json of a run (not any config.json)."""
    folder = Path(folder)
    if (folder / CHECKPOINT).is_file():
        return True
    try:
        read_config(folder)
    except MnistlabError:
        return False
    return True


def data_dir_of(folder: str | Path) -> str | None:
    """The data folder a run was trained with (absolute), if it was given one."""
    try:
        value = json.loads(read_small(Path(folder) / MACHINE)).get("data_dir")
    except (OSError, ValueError, AttributeError):
        return None
    # (A NUL byte, which no path holds, would make every later open() raise.)
    return value if isinstance(value, str) and "\0" not in value else None


def lock_folder(folder: Path) -> FileLock:
    """Hold `folder` for this process (a run's or a sweep's), or say who has it."""
    lock = FileLock(str(folder / LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunError(
            f"{folder} is in use by another mnistlab process; wait for it to finish "
            "or choose another folder"
        ) from None
    except OSError as error:
        raise RunError(f"cannot lock the folder {folder}: {error.strerror}") from None
    return lock
