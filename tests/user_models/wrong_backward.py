# A ReLU written as an autograd.Function whose backward forgets the mask.
import torch
from torch import nn


class LeakyMistake(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        return z.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        return grad  # should be grad * (z > 0)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 500)
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x):
        return self.fc2(LeakyMistake.apply(self.fc1(x)))
