"""Checkpoints are plain data: tensors and primitives, a format version, written atomically,
read back with `weights_only=True` so that loading one can never run code.

Format 2 holds the experiment config only (format 1 also held the device, threads and data
folder, which are dropped on load), the dropout and augmentation generators' states of an
interrupted epoch, and the sums of that epoch's train loss and accuracy so far.
"""

import dataclasses
import io
import math
from pathlib import Path

import torch

from mnistlab.config import TrainConfig
from mnistlab.errors import CheckpointError, ConfigError
from mnistlab.files import atomic_write, is_no_space
from mnistlab.runfiles import CHECKPOINT
from mnistlab.settings import from_saved

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


def save(
    path: str | Path,
    *,
    config: TrainConfig,
    model,
    optimizer,
    position,
    history: list[dict],
    normalization: tuple[float, float],
) -> Path:
    """Write the checkpoint beside `path` and rename it into place; the previous one stays
    whole until the new one is complete."""
    path = Path(path)
    payload = {
        "format_version": FORMAT_VERSION,
        "config": dataclasses.asdict(config),
        "model": {name: value.detach().cpu() for name, value in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "epoch": position.epoch,  # epochs completed
        "batch": position.batch,  # batches completed within the next epoch (an interrupted run)
        "rng": position.rng,
        "partial": position.partial,
        "history": history,
        "normalization": list(normalization),
    }
    # Serialised in memory first: torch.save writing straight to a full disk fails with its own
    # RuntimeError ("unexpected pos"); a plain write fails with the OSError that says why.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    had = Path(path).is_file()
    try:
        atomic_write(path, buffer.getbuffer())
    except OSError as error:
        what = "no space left on device" if is_no_space(error) else error.strerror
        kept = "the previous checkpoint is intact" if had else "no checkpoint was written"
        raise CheckpointError(f"{what} while saving {path}; {kept}") from None
    return path


def resolve(path: str | Path) -> Path:
    """A run folder or a checkpoint file -> the checkpoint file."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}: give a run folder made by "
            "'mnistlab train --out DIR' or a checkpoint.pt file"
        )
    return path


def load(path: str | Path) -> dict:
    """Read and check a checkpoint; its "config" comes back as a TrainConfig."""
    path = resolve(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
        raise CheckpointError(
            f"{path}: not a readable mnistlab checkpoint "
            f"({type(error).__name__}); was it written by mnistlab?"
        ) from None
    version = payload.get("format_version") if isinstance(payload, dict) else None
    # Compared as a plain int: a tensor planted there would make `in` ambiguous (a traceback).
    if type(version) is not int or version not in READABLE_VERSIONS:
        shown = (
            version if type(version) in (int, str, float, type(None)) else type(version).__name__
        )
        raise CheckpointError(
            f"{path}: checkpoint format {shown!r} is not a supported format "
            f"({', '.join(map(str, READABLE_VERSIONS))})"
        )
    _check(path, payload)
    try:
        payload["config"] = from_saved(payload["config"])
    except ConfigError as error:
        raise CheckpointError(f"not a mnistlab checkpoint: {path}: its config: {error}") from None
    payload.setdefault("partial", {})
    # A format-1 interruption saved torch's global generator, which training no longer uses.
    payload["rng"] = {
        k: v for k, v in payload.get("rng", {}).items() if k in ("dropout", "augment")
    }
    return payload


def _check(path: Path, payload: dict) -> None:
    """What weights_only lets through but mnistlab cannot use: say so in one line."""

    def fail(what: str):
        raise CheckpointError(f"not a mnistlab checkpoint: {path}: {what}")

    for key, kind in (
        ("config", dict),
        ("model", dict),
        ("optimizer", dict),
        ("epoch", int),
        ("batch", int),
        ("history", list),
        ("normalization", list),
    ):
        if not isinstance(payload.get(key), kind):
            fail(f"{key!r} is missing or not a {kind.__name__}")
    if not all(isinstance(value, torch.Tensor) for value in payload["model"].values()):
        fail("'model' holds something other than tensors")
    if not all(
        value.layout == torch.strided and value.device.type == "cpu" and value.is_floating_point()
        for value in payload["model"].values()
    ):  # (sparse or meta tensors, which no training writes, fail every later step)
        fail("'model' holds tensors that are not dense floating-point arrays")
    if not all(bool(value.isfinite().all()) for value in payload["model"].values()):
        fail("'model' holds weights that are not finite numbers (NaN or infinite)")
    normalization = payload["normalization"]
    numbers = [type(v) in (float, int) for v in normalization]  # (True is no mean)
    if len(normalization) != 2 or not all(numbers) or not all(map(math.isfinite, normalization)):
        fail("'normalization' must be two numbers (mean, std)")
    if not 1e-3 <= normalization[1] <= 1e3 or abs(normalization[0]) > 1e3:
        # (pixels are scaled to 0-1 first: any mean or std far outside that range makes inputs
        # that overflow, not a model that was trained)
        fail("'normalization' must be a mean within ±1000 and a std between 0.001 and 1000")
    if not all(isinstance(record, dict) for record in payload["history"]):
        fail("'history' must be a list of per-epoch records")
    needed = ("epoch", "train_loss", "seconds", "samples_per_second")
    if not all(isinstance(record.get(key), int | float) for record in payload["history"]
               for key in needed):  # fmt: skip
        fail(f"a 'history' record lacks a number it needs ({', '.join(needed)})")
    rng = payload.get("rng", {})
    if not isinstance(rng, dict):
        fail("'rng' must be a table of generator states")
    for name in ("dropout", "augment"):
        if name in rng:
            try:
                torch.Generator().set_state(rng[name])
            except (RuntimeError, TypeError):
                fail(f"'rng' holds a {name} generator state torch cannot use")
    if payload["epoch"] < 0 or payload["batch"] < 0:
        fail("a negative position")


def load_weights(model, state: dict, source: str = "checkpoint") -> None:
    """Load a state_dict, or say which architecture the checkpoint was for."""
    expected = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    given = {name: tuple(value.shape) for name, value in state.items()}
    if set(expected) != set(given):  # the same shapes may hide other names: say which
        extra, missing = sorted(set(given) - set(expected)), sorted(set(expected) - set(given))
        what = [f"weights the model has not ({', '.join(extra)})"] if extra else []
        what += [f"no {', '.join(missing)}"] if missing else []
        raise CheckpointError(f"{source} holds {' and '.join(what)}: not this model's weights")
    if expected != given:
        raise CheckpointError(
            f"{source} holds another architecture ({describe_shapes(given)}) than the model "
            f"({describe_shapes(expected)})"
        )
    model.load_state_dict(state)


def load_model(path: str | Path, device="cpu") -> tuple[dict, torch.nn.Module]:
    """A checkpoint (run folder or file) and its model, built as its config says with the
    saved weights, on `device`."""
    from mnistlab import models

    saved = load(path)
    # A throwaway generator: the weights are replaced by the saved ones, and torch's global
    # generator is left alone.
    model = models.build_from_config(saved["config"], torch.Generator()).to(device)
    load_weights(model, saved["model"], str(path))
    return saved, model


def weights_digest(state: dict) -> str:
    """A short sha256 of a model's weights (names, dtypes, shapes and values): which model
    answered, whatever folder it was served from."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(state):
        value = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()[:16]


def describe_shapes(shapes: dict) -> str:
    widths = [shape[1] for name, shape in shapes.items() if name.endswith("weight")]
    last = [shape[0] for name, shape in shapes.items() if name == "output.weight"]
    return "-".join(str(width) for width in widths + last)
