"""Logistic regression and the MLP, each in three implementations that agree.

- `module`: torch.nn (modules.py)
- `scratch`: leaf tensors and autograd (scratch.py)
- `manual`: a hand-derived backward, no autograd (manual.py)
"""

import torch
import torch.nn.functional as F

from mnistlab.config import IMPLEMENTATIONS
from mnistlab.datasets import CLASSES, INPUTS
from mnistlab.models import manual, modules, scratch
from mnistlab.models.common import epoch_flops
from mnistlab.shapes import count

__all__ = ["build", "build_from_config", "count_parameters", "cross_entropy", "epoch_flops"]

SOURCES = dict(zip(IMPLEMENTATIONS, (modules, scratch, manual), strict=True))


def build(
    model: str = "mlp",
    impl: str = "module",
    sizes=(INPUTS, 500, CLASSES),
    activation="relu",
    dropout=0.0,
    generator: torch.Generator | None = None,
    dtype=torch.float32,
):
    """A model by name; the same generator state gives the same weights in every impl."""
    source = SOURCES[impl]
    if model == "logreg":
        return source.LogisticRegression((sizes[0], sizes[-1]), generator=generator, dtype=dtype)
    return source.MLP(sizes, activation, dropout, generator, dtype)


def build_from_config(config, generator=None, dtype=torch.float32):
    return build(
        config.model,
        config.impl,
        config.layer_sizes,
        config.activation,
        config.dropout,
        generator,
        dtype,
    )


def cross_entropy(model, logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0):
    """Mean cross-entropy on logits, with `.backward()`: autograd's, or the manual twin's.

    With label smoothing ε the target puts 1-ε on the true class and ε spread evenly over all
    classes, as torch's cross_entropy does.
    """
    if isinstance(model, manual.MLP):
        return manual.CrossEntropy(model, logits, y, label_smoothing)
    return F.cross_entropy(logits, y, label_smoothing=label_smoothing)


def count_parameters(model_or_sizes) -> int:
    """Trainable parameters of a model, or of the MLP with layer widths `sizes`."""
    if isinstance(model_or_sizes, tuple | list):
        return count(model_or_sizes)
    return sum(value.numel() for _, value in model_or_sizes.named_parameters())
