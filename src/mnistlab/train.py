"""One plain train() for every model and implementation.

Each step is zero grad -> forward -> loss -> backward -> step -> record. Randomness comes from
generators seeded by (seed, epoch), so a run stopped between two steps resumes to exactly the
weights an uninterrupted run reaches.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from mnistlab import augment, data, models, optim
from mnistlab.config import TrainConfig
from mnistlab.errors import ConfigError, TrainingDiverged
from mnistlab.evaluate import evaluate, predict, score


def resolve_device(name: str = "auto") -> torch.device:
    """auto picks cuda, then mps, then cpu; an asked-for device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available; use --device auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps: no MPS device is available; use --device auto or cpu")
    return torch.device(name)


@dataclass(frozen=True)
class Tensors:
    """A dataset resident on the device, normalised once: x (N, 784) float, y (N,) int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_val: torch.Tensor | None
    y_val: torch.Tensor | None
    normalization: tuple[float, float]  # mean, std of the training pixels in [0, 1]
    classes: tuple[str, ...]


def prepare(config: TrainConfig, dataset: data.Dataset, device: torch.device) -> Tensors:
    train_split, val_split = dataset.train, None
    if config.val_split > 0:
        train_split, val_split = data.split_validation(train_split, config.val_split)
    mean, std = data.normalization(train_split)

    def inputs(split):
        return data.to_inputs(split.images, mean, std, device)

    return Tensors(
        inputs(train_split),
        train_split.labels.to(device),
        inputs(dataset.test),
        dataset.test.labels.to(device),
        inputs(val_split) if val_split else None,
        val_split.labels.to(device) if val_split else None,
        (mean, std),
        dataset.classes,
    )


def _seed(config: TrainConfig, epoch: int, stream: int) -> int:
    # Distinct, reproducible seeds per (run seed, epoch, purpose).
    return (config.seed * 1_000_003 + epoch * 101 + stream) % (2**63)


def build(config: TrainConfig, device: torch.device):
    """The model and optimizer a config describes, with seeded initial weights."""
    generator = torch.Generator().manual_seed(config.seed)
    model = models.build_from_config(config, generator).to(device)
    optimizer = optim.build(config, model)
    return model, optimizer


@dataclass
class Position:
    """Where training stands: epochs completed, and batches completed of the next one."""

    epoch: int = 0
    batch: int = 0
    rng: dict = field(default_factory=dict)  # generator states at an interrupted step


@dataclass
class TrainResult:
    model: object
    optimizer: object
    history: list[dict]
    position: Position
    interrupted: bool
    normalization: tuple[float, float]
    test_logits: torch.Tensor | None = None  # of the last evaluation, for the pictures


def _rng_state(device, augment_generator) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    if augment_generator is not None:
        state["augment"] = augment_generator.get_state()
    return state


def train(
    config: TrainConfig,
    tensors: Tensors,
    *,
    model=None,
    optimizer=None,
    position: Position | None = None,
    history: list[dict] | None = None,
    on_batch: Callable[[int, int, torch.Tensor], None] | None = None,
    on_epoch: Callable[[dict, Position], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train `config`'s model on `tensors`; return the model, its history and where it stopped.

    `model`, `optimizer`, `position` and `history` continue an earlier run.
    `on_batch(done, total, loss)` follows progress within an epoch (`loss` is the step's
    objective, label smoothing included; reading it waits for the device),
    `on_epoch(record, position)` sees each epoch's metrics, and `should_stop()` is asked
    between steps (Ctrl-C in the CLI).
    """
    device = tensors.x_train.device
    if config.threads:
        torch.set_num_threads(config.threads)
    if model is None:
        model, optimizer = build(config, device)
    position = position or Position()
    history = list(history or [])
    steps_per_epoch = math.ceil(len(tensors.y_train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")
    background = (0 - tensors.normalization[0]) / tensors.normalization[1]

    test_logits = None
    for epoch in range(position.epoch, config.epochs):
        order = torch.Generator().manual_seed(_seed(config, epoch, 0))
        augment_generator = None
        if config.augment != "none":
            augment_generator = torch.Generator(device).manual_seed(_seed(config, epoch, 2))
        skip = position.batch if epoch == position.epoch else 0
        if skip and position.rng:  # resume mid-epoch exactly where the generators stood
            torch.set_rng_state(position.rng["cpu"])
            if "cuda" in position.rng:
                torch.cuda.set_rng_state(position.rng["cuda"], device)
            if augment_generator is not None:
                augment_generator.set_state(position.rng["augment"])
        else:
            torch.manual_seed(_seed(config, epoch, 1))  # dropout draws from the global RNG
        model.train()
        # Kept on the device, read once an epoch: each step's objective (for the divergence
        # check and `on_batch`), and each batch's logits and labels, from which the epoch's
        # plain cross-entropy and accuracy come at its end in three passes instead of five
        # small operations a step (about 2% of an epoch on a 2-core CPU).
        losses = torch.zeros(steps_per_epoch, device=device)
        epoch_logits = torch.empty(len(tensors.y_train), len(tensors.classes), device=device)
        epoch_labels = torch.empty_like(tensors.y_train)
        seen, start = 0, time.perf_counter()
        for index, (x, y) in enumerate(
            data.batches(tensors.x_train, tensors.y_train, config.batch_size, order, skip),
            start=skip,
        ):
            if augment_generator is not None:
                x = augment.apply(x, config.augment, augment_generator, background)
            step = epoch * steps_per_epoch + index
            optim.set_learning_rate(
                optimizer,
                optim.learning_rate(step, total_steps, config.lr, config.schedule, config.warmup),
            )
            optimizer.zero_grad()
            with autocast:
                logits = model(x)
                loss = models.cross_entropy(model, logits, y, config.label_smoothing)
                loss.backward()
            optimizer.step()
            losses[index] = loss.detach()
            epoch_logits[seen : seen + len(y)] = logits.detach()
            epoch_labels[seen : seen + len(y)] = y
            seen += len(y)
            if index % 100 == 99 or index == steps_per_epoch - 1:
                _check_finite(losses[: index + 1], epoch, steps_per_epoch, config)
            if on_batch is not None:
                on_batch(index + 1, steps_per_epoch, losses[index])
            if should_stop is not None and should_stop() and index + 1 < steps_per_epoch:
                position = Position(epoch, index + 1, _rng_state(device, augment_generator))
                return TrainResult(
                    model, optimizer, history, position, True, tensors.normalization, test_logits
                )
        seconds = time.perf_counter() - start
        # The plain cross-entropy, even when training minimises a smoothed one, so that train
        # and test losses compare. After a resume, the train figures cover the batches
        # trained since.
        train_logits, train_labels = epoch_logits[:seen], epoch_labels[:seen]
        record = {
            "epoch": epoch + 1,
            "train_loss": F.cross_entropy(train_logits, train_labels).item(),
            "train_accuracy": (train_logits.argmax(1) == train_labels).sum().item() / max(seen, 1),
            "seconds": seconds,
            "samples_per_second": seen / seconds if seconds > 0 else 0.0,
            "lr": optimizer.param_groups[0]["lr"],
        }
        test_logits = predict(model, tensors.x_test)
        result = score(test_logits, tensors.y_test, len(tensors.classes))
        record.update(test_loss=result.loss, test_accuracy=result.accuracy)
        if tensors.x_val is not None:
            val = evaluate(model, tensors.x_val, tensors.y_val, len(tensors.classes))
            record.update(val_loss=val.loss, val_accuracy=val.accuracy)
        history.append(record)
        position = Position(epoch + 1, 0)
        if on_epoch is not None:
            on_epoch(record, position)
        if should_stop is not None and should_stop() and epoch + 1 < config.epochs:
            return TrainResult(
                model, optimizer, history, position, True, tensors.normalization, test_logits
            )
    return TrainResult(
        model, optimizer, history, position, False, tensors.normalization, test_logits
    )


def _check_finite(losses: torch.Tensor, epoch: int, steps_per_epoch: int, config) -> None:
    finite = torch.isfinite(losses)
    if not bool(finite.all()):
        index = int((~finite).nonzero()[0])
        raise TrainingDiverged(
            f"the loss became {losses[index].item()} at step {epoch * steps_per_epoch + index + 1}"
            f" (epoch {epoch + 1}, batch {index + 1}); try a lower learning rate than "
            f"--lr {config.lr}"
        )
