"""One plain train() for every model and implementation.

Each step is zero grad -> forward -> loss -> backward -> step -> record. Randomness comes from
generators seeded by (seed, epoch, stream), passed in explicitly, so a run stopped between two
steps resumes to exactly the weights an uninterrupted run reaches, and training never touches
torch's global generator or thread count. The run folder around it lives in runs.py.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from mnistlab import augment, devices, models, optim, resident
from mnistlab.config import TrainConfig
from mnistlab.errors import Setting, TrainingDiverged
from mnistlab.evaluate import evaluate, predict, score
from mnistlab.resident import Tensors


def _seed(config: TrainConfig, epoch: int, stream: int) -> int:
    # Distinct, reproducible seeds per (run seed, epoch, stream).
    return (config.seed * 1_000_003 + epoch * 101 + stream) % (2**63)


# The random streams of an epoch, each its own generator; none of them is torch's global one.
ORDER, DROPOUT, AUGMENT = 0, 1, 2


def build(config: TrainConfig, device: torch.device):
    """The model and optimizer a config describes, with seeded initial weights."""
    generator = torch.Generator().manual_seed(config.seed)
    model = models.build_from_config(config, generator).to(device)
    optimizer = optim.build(config, model)
    return model, optimizer


@dataclass
class Position:
    """Where training stands: epochs completed, and batches completed of the next one.

    For an interrupted epoch, `rng` holds the dropout and augmentation generators' states, and
    `partial` the sums the epoch's train loss and accuracy need (so that a resumed epoch
    reports the whole epoch, not only the part after the resume).
    """

    epoch: int = 0
    batch: int = 0
    rng: dict = field(default_factory=dict)
    partial: dict = field(default_factory=dict)  # loss_sum, correct, seen, seconds


@dataclass
class TrainResult:
    model: object
    optimizer: object
    history: list[dict]
    position: Position
    interrupted: bool
    normalization: tuple[float, float]
    test_logits: torch.Tensor | None = None  # of the last evaluation, for the pictures


def _generators(config: TrainConfig, epoch: int, device: torch.device) -> dict:
    streams = {"dropout": DROPOUT}
    if config.augment != "none":
        streams["augment"] = AUGMENT
    return {
        name: torch.Generator(device).manual_seed(_seed(config, epoch, stream))
        for name, stream in streams.items()
    }


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
    pacer=None,
) -> TrainResult:
    """Train `config`'s model on `tensors`; return the model, its history and where it stopped.

    `model`, `optimizer`, `position` and `history` continue an earlier run.
    `on_batch(done, total, loss)` follows progress within an epoch (`loss` is the step's
    objective, label smoothing included; reading it waits for the device),
    `on_epoch(record, position)` sees each epoch's metrics, and `should_stop()` is asked
    between steps (Ctrl-C in the CLI). Every random draw comes from generators seeded by
    (seed, epoch, stream): torch's global generator and thread count are left as they were.
    With `pacer` (mnistlab.cores.Pacer) the thread count is chosen again at each epoch's
    start, for the load on the machine now; each epoch records the count it used (`threads`),
    and an epoch resumed midway finishes with the count it began with. Each epoch records the
    precision it trained in too (`precision`: what auto chose on this device).
    """
    device = tensors.x_train.device
    if model is None:
        model, optimizer = build(config, device)
    position = position or Position()
    history = list(history or [])
    steps_per_epoch = math.ceil(len(tensors.y_train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    precision = devices.precision(config.precision, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    background = (0 - tensors.normalization[0]) / tensors.normalization[1]

    test_logits = None
    threads, first = torch.get_num_threads(), position.epoch
    try:
        for epoch in range(first, config.epochs):
            order = torch.Generator().manual_seed(_seed(config, epoch, ORDER))
            generators = _generators(config, epoch, device)
            skip = position.batch if epoch == position.epoch else 0
            earlier = position.partial if skip else {}
            if pacer is not None:
                if earlier.get("threads"):
                    torch.set_num_threads(earlier["threads"])
                elif epoch > first:
                    torch.set_num_threads(pacer(torch.get_num_threads()))
            if skip:  # resume mid-epoch exactly where the generators stood
                for name, state in position.rng.items():
                    if name in generators:
                        generators[name].set_state(state)
            model.dropout_generator = generators["dropout"]
            model.train()
            # Kept on the device, read once an epoch: each step's objective (for the
            # divergence check and `on_batch`), and each batch's logits and labels, from which
            # the epoch's plain cross-entropy and accuracy come at its end in three passes
            # instead of five small operations a step (about 2% of an epoch on a 2-core CPU).
            losses = torch.zeros(steps_per_epoch, device=device)
            epoch_logits = torch.empty(len(tensors.y_train), len(tensors.classes), device=device)
            epoch_labels = torch.empty_like(tensors.y_train)
            seen, start = 0, time.perf_counter()
            for index, (x, y) in enumerate(
                resident.batches(tensors.x_train, tensors.y_train, config.batch_size, order, skip),
                start=skip,
            ):
                if "augment" in generators:
                    x = augment.apply(x, config.augment, generators["augment"], background)
                step = epoch * steps_per_epoch + index
                optim.set_learning_rate(
                    optimizer,
                    optim.learning_rate(
                        step, total_steps, config.lr, config.schedule, config.warmup
                    ),
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
                    _check_finite(losses[skip : index + 1], epoch, steps_per_epoch, skip, config)
                if on_batch is not None:
                    on_batch(index + 1, steps_per_epoch, losses[index])
                if pacer is not None and index == steps_per_epoch // 2:
                    pacer.mark()
                if should_stop is not None and should_stop() and index + 1 < steps_per_epoch:
                    sums = _sums(epoch_logits[:seen], epoch_labels[:seen], earlier)
                    sums["seconds"] += time.perf_counter() - start
                    states = {name: gen.get_state() for name, gen in generators.items()}
                    position = Position(epoch, index + 1, states, sums)
                    normalization = tensors.normalization
                    return TrainResult(
                        model, optimizer, history, position, True, normalization, test_logits
                    )
            elapsed = time.perf_counter() - start
            sums = _sums(epoch_logits[:seen], epoch_labels[:seen], earlier)
            seconds = elapsed + sums["seconds"]
            # The plain cross-entropy, even when training minimises a smoothed one, so that
            # train and test losses compare; over the whole epoch, across a resume.
            record = {
                "epoch": epoch + 1,
                "train_loss": sums["loss_sum"] / max(sums["seen"], 1),
                "train_accuracy": sums["correct"] / max(sums["seen"], 1),
                "samples": sums["seen"],
                "seconds": seconds,
                "samples_per_second": sums["seen"] / seconds if seconds > 0 else 0.0,
                "lr": optimizer.param_groups[0]["lr"],
                "threads": torch.get_num_threads(),
                "precision": precision,
            }
            if tensors.x_test is not None:
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
    finally:
        model.dropout_generator = None  # the model leaves train() holding none of its state
        torch.set_num_threads(threads)
    return TrainResult(
        model, optimizer, history, position, False, tensors.normalization, test_logits
    )


def _sums(logits: torch.Tensor, labels: torch.Tensor, earlier: dict) -> dict:
    """The epoch's summed plain cross-entropy, correct count and sample count so far."""
    return {
        "loss_sum": earlier.get("loss_sum", 0.0)
        + F.cross_entropy(logits.float(), labels, reduction="sum").item(),
        "correct": earlier.get("correct", 0) + (logits.argmax(1) == labels).sum().item(),
        "seen": earlier.get("seen", 0) + len(labels),
        "seconds": earlier.get("seconds", 0.0),
        "threads": earlier.get("threads") or torch.get_num_threads(),
    }


def _check_finite(losses: torch.Tensor, epoch: int, steps_per_epoch: int, skip: int, config):
    finite = torch.isfinite(losses)
    if not bool(finite.all()):
        index = skip + int((~finite).nonzero()[0])
        value = losses[index - skip].item()
        raise TrainingDiverged(
            (
                f"the loss became {value} at step {epoch * steps_per_epoch + index + 1}"
                f" (epoch {epoch + 1}, batch {index + 1}); try a lower learning rate than ",
                Setting("lr"),
                f" {config.lr}",
            )
        )
