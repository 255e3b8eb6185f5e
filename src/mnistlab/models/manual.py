"""The models with a backward pass derived by hand: no autograd anywhere.

The forward mirrors scratch.py line for line and keeps what the backward needs; `backward`
walks the layers in reverse with the chain rule written out. Gradients land in each
parameter's `.grad`, as autograd would leave them, so the same optimizers apply.
"""

import math

import torch

from mnistlab.datasets import CLASSES, INPUTS
from mnistlab.models.common import TensorModel, dropout_mask, gelu, normal_cdf

SQRT_2PI = math.sqrt(2 * math.pi)


def _gelu_grad(z, a, grad):
    return grad * (normal_cdf(z) + z * torch.exp(-0.5 * z * z) / SQRT_2PI)  # Φ(z) + z·φ(z)


# name -> (forward f(z), backward dL/dz from (z, a = f(z), dL/da)). ReLU's derivative is 1
# where the unit is active and 0 elsewhere: the sign of its output a >= 0. That float mask,
# applied in place (`grad` is always a tensor the backward made itself), takes a third of
# the time of `grad * (z > 0)`, whose boolean mask costs a conversion pass.
ACTIVATIONS = {
    "relu": (torch.relu, lambda z, a, grad: grad.mul_(a.sign())),
    "gelu": (gelu, _gelu_grad),
    "tanh": (torch.tanh, lambda z, a, grad: grad * (1 - a * a)),
    "sigmoid": (torch.sigmoid, lambda z, a, grad: grad * a * (1 - a)),
    "none": (lambda z: z, lambda z, a, grad: grad),
}


class MLP(TensorModel):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activation = ACTIVATIONS[self.activation][0]
        self._saved = []  # per hidden layer: (input, pre-activation, activation, dropout mask)
        for index in range(self.depth):  # (B, D) -> (B, H)
            weight, bias = self.layer(f"hidden.{index}")
            z = x @ weight.T + bias
            a = activation(z)
            mask = None
            if self.training and self.dropout > 0:
                mask = dropout_mask(a, self.dropout, self.dropout_generator)
            if self.training:
                self._saved.append((x, z, a, mask))
            x = a if mask is None else a * mask
        self._last_input = x if self.training else None
        weight, bias = self.layer("output")
        return x @ weight.T + bias  # (B, C) logits

    def backward(self, grad_logits: torch.Tensor) -> None:
        """Accumulate d(loss)/d(parameter) into each parameter's .grad, given dL/dlogits."""
        activation_grad = ACTIVATIONS[self.activation][1]
        weight, _ = self.layer("output")
        self._accumulate("output", grad_logits.T @ self._last_input, grad_logits.sum(0))
        grad = grad_logits @ weight  # (B, C) -> (B, H)
        for index in reversed(range(self.depth)):
            x, z, a, mask = self._saved[index]
            if mask is not None:
                grad = grad * mask
            grad = activation_grad(z, a, grad)  # dL/dz
            name = f"hidden.{index}"
            self._accumulate(name, grad.T @ x, grad.sum(0))
            if index > 0:  # the input images need no gradient
                grad = grad @ self.layer(name)[0]
        self._saved, self._last_input = [], None

    def _accumulate(self, name, grad_weight, grad_bias):
        for parameter, grad in zip(self.layer(name), (grad_weight, grad_bias), strict=True):
            grad = grad.to(parameter.dtype)  # under bf16 autocast, as autograd accumulates
            parameter.grad = grad if parameter.grad is None else parameter.grad + grad


class LogisticRegression(MLP):
    def __init__(self, sizes=(INPUTS, CLASSES), generator=None, dtype=torch.float32, **_):
        super().__init__(sizes, "none", 0.0, generator, dtype)


class CrossEntropy:
    """Mean softmax cross-entropy on logits whose `.backward()` runs the model's backward.

    The target is (1-ε)·one_hot + ε/C (label smoothing ε; ε = 0 is the plain loss).
    """

    def __init__(self, model: MLP, logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0):
        log_probs = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # (B, C)
        true_class = -log_probs.gather(1, y[:, None]).mean()
        self.value = true_class
        if smoothing:
            self.value = (1 - smoothing) * true_class - smoothing * log_probs.mean(1).mean()
        self._model, self._log_probs, self._y = model, log_probs, y
        self._smoothing = smoothing

    def backward(self) -> None:
        # d(mean CE)/dlogits = (softmax - target) / B
        grad = self._log_probs.exp()
        if self._smoothing:
            grad -= self._smoothing / grad.shape[1]
        rows = torch.arange(len(self._y), device=grad.device)
        grad[rows, self._y] -= 1 - self._smoothing
        self._model.backward(grad / len(self._y))

    def item(self) -> float:
        return self.value.item()

    def detach(self) -> torch.Tensor:
        return self.value
