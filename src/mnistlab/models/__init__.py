"""Logistic regression and the MLP, each in three implementations that agree.

- `module`: torch.nn (modules.py)
- `scratch`: leaf tensors and autograd (scratch.py)
- `manual`: a hand-derived backward, no autograd (manual.py)
"""

import torch
import torch.nn.functional as F

from mnistlab.models import manual, modules, scratch

IMPLEMENTATIONS = {"module": modules, "scratch": scratch, "manual": manual}


def build(
    model: str = "mlp",
    impl: str = "module",
    sizes=(784, 500, 10),
    activation="relu",
    dropout=0.0,
    generator: torch.Generator | None = None,
    dtype=torch.float32,
):
    """A model by name; the same generator state gives the same weights in every impl."""
    source = IMPLEMENTATIONS[impl]
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


def count_parameters(model) -> int:
    return sum(value.numel() for _, value in model.named_parameters())
