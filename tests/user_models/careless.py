"""Models with the mistakes students make that used to crash `mnistlab check` itself."""

import threading
import time

import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 500)
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class Detached(MLP):
    def forward(self, x):
        return super().forward(x).detach()


class NoGrad(MLP):
    def forward(self, x):
        with torch.no_grad():
            return super().forward(x)


class Half(MLP):
    def __init__(self):
        super().__init__()
        self.half()


class NonLeafAttribute(MLP):
    def __init__(self):
        super().__init__()
        self.scale = torch.ones(1, requires_grad=True) * 2  # not a leaf: cannot be deep-copied

    def forward(self, x):
        return super().forward(x) * self.scale


class Unpicklable(MLP):
    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()


class ParametersRaise(MLP):
    def parameters(self, recurse=True):
        raise RuntimeError("forgot to return them")

    def named_parameters(self, *args, **kwargs):
        raise RuntimeError("forgot to return them")


class ParametersAreFloats:
    def __init__(self):
        self.W = torch.randn(784, 10, requires_grad=True)

    def forward(self, x):
        return x @ self.W

    def parameters(self):
        return [0.5, 1.5]


class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * x

    @staticmethod
    def backward(ctx, grad):
        raise ValueError("backward not written yet")


class BackwardRaises(MLP):
    def forward(self, x):
        return Square.apply(super().forward(x))


class SecondCallFails(MLP):
    calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("only works once")
        return super().forward(x)


class Sleeps(MLP):
    def forward(self, x):
        time.sleep(3600)
