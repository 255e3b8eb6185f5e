"""The data set resident on the device as tensors, normalised once, and its batches.

An epoch is a seeded permutation and batches are slices of it: no DataLoader for data that
fits in 60 MB. The validation split is carved off the training set deterministically.
"""

import dataclasses
from dataclasses import dataclass

import torch

from mnistlab.config import TrainConfig
from mnistlab.data import Dataset, Split
from mnistlab.errors import ConfigError, Setting


@dataclass(frozen=True)
class Tensors:
    """A dataset resident on the device, normalised once: x (N, 784) float, y (N,) int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor | None  # None in a search: the test set is not touched
    y_test: torch.Tensor | None
    x_val: torch.Tensor | None
    y_val: torch.Tensor | None
    normalization: tuple[float, float]  # mean, std applied to pixels in [0, 1]
    classes: tuple[str, ...]


def prepare(
    config: TrainConfig,
    dataset: Dataset,
    device: torch.device,
    normalization: tuple[float, float] | None = None,
    test: bool = True,
) -> Tensors:
    """The data set on the device, normalised by the training pixels' mean and std (or by a
    saved run's `normalization`), with the validation split carved off when asked. With
    `test` False the test split is never read (a search chooses on validation alone)."""
    train_split, val_split = dataset.train, None
    if config.val_split > 0:
        train_split, val_split = split_validation(train_split, config.val_split)
        if len(train_split) == 0 or len(val_split) == 0:
            raise ConfigError(
                (
                    Setting("val_split"),
                    f" {config.val_split} leaves {len(train_split)} training and "
                    f"{len(val_split)} validation images of {len(dataset.train)}; choose a "
                    "fraction that keeps both",
                ),
            )
    if normalization is None:
        standard = config.normalize == "standard"
        normalization = pixel_statistics(train_split) if standard else (0.5, 0.5)
    mean, std = normalization

    def inputs(split):
        return to_inputs(split.images, mean, std, device)

    return Tensors(
        inputs(train_split),
        train_split.labels.to(device),
        inputs(dataset.test) if test else None,
        dataset.test.labels.to(device) if test else None,
        inputs(val_split) if val_split else None,
        val_split.labels.to(device) if val_split else None,
        (mean, std),
        dataset.classes,
    )


def dry_run(tensors: Tensors, batch_size: int) -> Tensors:
    """A slice for a quick end-to-end check: two batches of training, 1,000 test images."""
    keep = 2 * batch_size
    return dataclasses.replace(
        tensors,
        x_train=tensors.x_train[:keep],
        y_train=tensors.y_train[:keep],
        x_test=None if tensors.x_test is None else tensors.x_test[:1000],
        y_test=None if tensors.y_test is None else tensors.y_test[:1000],
        x_val=None if tensors.x_val is None else tensors.x_val[:1000],
        y_val=None if tensors.y_val is None else tensors.y_val[:1000],
    )


def split_validation(train: Split, fraction: float, seed: int = 0) -> tuple[Split, Split]:
    """Carve a validation set off the training set: the same fraction and seed, the same split."""
    count = round(len(train) * fraction)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    held, kept = order[:count], order[count:]
    return (
        Split(train.images[kept], train.labels[kept]),
        Split(train.images[held], train.labels[held]),
    )


def pixel_statistics(split: Split) -> tuple[float, float]:
    """Mean and std of the training pixels in [0, 1]; applied to every split alike.

    Computed from the 256-bin histogram of the uint8 pixels: exact, and far cheaper than
    converting 47 million pixels to float64.
    """
    counts = torch.bincount(split.images.flatten(), minlength=256).to(torch.float64)
    values = torch.arange(256, dtype=torch.float64) / 255
    total = counts.sum()
    mean = (counts * values).sum() / total
    variance = (counts * (values - mean) ** 2).sum() / (total - 1)
    return mean.item(), variance.sqrt().item()


def to_inputs(
    pixels: torch.Tensor, mean: float, std: float, device="cpu", dtype=torch.float32
) -> torch.Tensor:
    """Pixels 0-255 (N, 28, 28), of any dtype -> the normalised (N, 784) inputs a model takes,
    on the device: scaled to [0, 1], then standardised by the run's mean and std. The one
    place this is written: training, prediction and an exported model's first layer call it.
    """
    # A copy (the conversion makes one anyway), so the in-place steps never touch `pixels`.
    x = pixels.to(device=device, dtype=dtype, copy=True).reshape(pixels.shape[0], -1)
    return x.div_(255).sub_(mean).div_(std)


def batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator | None = None,
    skip: int = 0,
):
    """Yield (x, y) batches: a shuffled epoch when a generator is given, in order otherwise,
    leaving out the first `skip` batches (a resumed epoch).

    Batches are gathered into two reused buffers instead of fresh tensors each step; a batch
    is only valid until the next one is drawn, which is all a training step needs.
    """
    count = len(y)
    if generator is None:
        for start in range(skip * batch_size, count, batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]
        return
    order = torch.randperm(count, generator=generator).to(x.device)
    size = min(batch_size, count)
    x_buffer = x.new_empty((size, *x.shape[1:]))
    y_buffer = y.new_empty((size,))
    # The whole permutation is drawn even when resuming, so the batches after `skip` are
    # the ones an uninterrupted epoch would have had.
    for start in range(skip * batch_size, count, batch_size):
        index = order[start : start + batch_size]
        size = len(index)
        torch.index_select(x, 0, index, out=x_buffer[:size])
        torch.index_select(y, 0, index, out=y_buffer[:size])
        yield x_buffer[:size], y_buffer[:size]
