import torch
from torch import nn

print("loading my model")  # a student's print: never in check's --json


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 500)
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x):
        print("forward", x.shape)
        return self.fc2(torch.relu(self.fc1(x)))
