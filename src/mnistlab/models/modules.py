"""The models with torch.nn: the assignment's "object-oriented higher-level API"."""

import torch
from torch import nn

from mnistlab.datasets import CLASSES, INPUTS
from mnistlab.models.common import dropout_mask, initial_state

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "none": nn.Identity,
}


class Linear(nn.Linear):
    """nn.Linear without its own initialisation, which would draw from torch's global
    generator only to be overwritten by the shared one (nn.utils.skip_init does the same
    through the meta device, at 0.4 s for its first use)."""

    def reset_parameters(self) -> None:
        pass


class Dropout(nn.Module):
    """nn.Dropout, drawing its mask from `generator` (see common.dropout_mask)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * dropout_mask(x, self.p, self.generator)


class MLP(nn.Module):
    """784 -> hidden... -> 10, an activation and optional dropout after each hidden layer."""

    def __init__(
        self,
        sizes=(INPUTS, 500, CLASSES),
        activation="relu",
        dropout=0.0,
        generator: torch.Generator | None = None,
        dtype=torch.float32,
    ):
        super().__init__()
        self.sizes = tuple(sizes)
        self.hidden = nn.ModuleList(
            Linear(fan_in, fan_out, dtype=dtype)
            for fan_in, fan_out in zip(self.sizes[:-2], self.sizes[1:-1], strict=True)
        )
        self.output = Linear(self.sizes[-2], self.sizes[-1], dtype=dtype)
        # ReLU in place, as the linear layer's output is needed by nothing else: one fewer
        # (batch, width) tensor to allocate and fill each step.
        self.activation = ACTIVATIONS[activation](
            **({"inplace": True} if activation == "relu" else {})
        )
        self.dropout = Dropout(dropout)
        # The shared initialisation, so that a seed means the same weights in every twin.
        self.load_state_dict(initial_state(self.sizes, generator, dtype))

    @property
    def dropout_generator(self) -> torch.Generator | None:
        return self.dropout.generator

    @dropout_generator.setter
    def dropout_generator(self, generator: torch.Generator | None) -> None:
        self.dropout.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:  # (B, D) -> (B, H)
            x = self.dropout(self.activation(layer(x)))
        return self.output(x)  # (B, C) logits


class LogisticRegression(MLP):
    """784 -> 10: no hidden layer, the assignment's baseline."""

    def __init__(self, sizes=(INPUTS, CLASSES), generator=None, dtype=torch.float32, **_):
        super().__init__(sizes, "none", 0.0, generator, dtype)
