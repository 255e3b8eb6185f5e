"""The models from basic tensor operations: leaf tensors, `@` and `+`, autograd for the
backward. Line for line the twin of modules.py.

The course notebook wrote `torch.randn(784, 500, requires_grad=True) * 0.01`: the product is
not a leaf, so it never receives a .grad and the model cannot learn. Here every parameter is
created first and marked `requires_grad_()` after, which keeps it a leaf.
"""

import torch

from mnistlab.datasets import CLASSES, INPUTS
from mnistlab.models.common import TensorModel, dropout_mask, gelu

ACTIVATIONS = {
    "relu": torch.relu,
    "gelu": gelu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "none": lambda z: z,
}


class MLP(TensorModel):
    def _requires_grad(self, parameters):
        for value in parameters.values():
            value.requires_grad_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activation = ACTIVATIONS[self.activation]
        for index in range(self.depth):  # (B, D) -> (B, H)
            weight, bias = self.layer(f"hidden.{index}")
            x = activation(x @ weight.T + bias)
            if self.training and self.dropout > 0:
                x = x * dropout_mask(x, self.dropout, self.dropout_generator)
        weight, bias = self.layer("output")
        return x @ weight.T + bias  # (B, C) logits


class LogisticRegression(MLP):
    def __init__(self, sizes=(INPUTS, CLASSES), generator=None, dtype=torch.float32, **_):
        super().__init__(sizes, "none", 0.0, generator, dtype)
