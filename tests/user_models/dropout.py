"""A right model with dropout: its checks draw random masks, so two runs agree only if seeded."""

import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 500)
        self.drop = nn.Dropout(0.2)
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.fc1(x))))
