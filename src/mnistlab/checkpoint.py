"""Checkpoints are plain data: tensors and primitives, a format version, written atomically,
read back with `weights_only=True` so that loading one can never run code."""

import dataclasses
import os
from pathlib import Path

import torch

from mnistlab.config import TrainConfig, from_dict
from mnistlab.errors import CheckpointError

FORMAT_VERSION = 1
FILENAME = "checkpoint.pt"


def save(
    path: str | Path,
    *,
    config: TrainConfig,
    model,
    optimizer,
    epoch: int,
    batch: int,
    history: list[dict],
    normalization: tuple[float, float],
    rng: dict,
) -> Path:
    """Write the checkpoint to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": FORMAT_VERSION,
        "config": dataclasses.asdict(config),
        "model": {name: value.detach().cpu() for name, value in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,  # epochs completed
        "batch": batch,  # batches completed within the next epoch (an interrupted run)
        "history": history,
        "normalization": list(normalization),
        "rng": rng,
    }
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def resolve(path: str | Path) -> Path:
    """A run folder or a checkpoint file -> the checkpoint file."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}: give a run folder made by "
            "'mnistlab train --out DIR' or a checkpoint.pt file"
        )
    return path


def load(path: str | Path) -> dict:
    path = resolve(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
        raise CheckpointError(
            f"{path}: not a readable mnistlab checkpoint "
            f"({type(error).__name__}); was it written by mnistlab?"
        ) from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        version = payload.get("format_version") if isinstance(payload, dict) else None
        raise CheckpointError(
            f"{path}: checkpoint format {version!r} is not the supported format {FORMAT_VERSION}"
        )
    # A run saved before label smoothing existed trained without it: resume it as it was.
    payload["config"] = from_dict({"label_smoothing": 0.0, **payload["config"]})
    return payload


def load_weights(model, state: dict, source: str = "checkpoint") -> None:
    """Load a state_dict, or say which architecture the checkpoint was for."""
    expected = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    given = {name: tuple(value.shape) for name, value in state.items()}
    if expected != given:
        raise CheckpointError(
            f"{source} holds another architecture ({_describe(given)}) than the model "
            f"({_describe(expected)}); pass the checkpoint's own --hidden/--model settings"
        )
    model.load_state_dict(state)


def _describe(shapes: dict) -> str:
    widths = [shape[1] for name, shape in shapes.items() if name.endswith("weight")]
    last = [shape[0] for name, shape in shapes.items() if name == "output.weight"]
    return "-".join(str(width) for width in widths + last)
