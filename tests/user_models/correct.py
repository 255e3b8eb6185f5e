# The BasicMLP written correctly: each weight made first, then marked to require grad.
import torch


class BasicMLP:
    def __init__(self):
        self.W1 = (torch.randn(784, 500) * 0.01).requires_grad_()
        self.b1 = torch.zeros(500, requires_grad=True)
        self.W2 = (torch.randn(500, 10) * 0.01).requires_grad_()
        self.b2 = torch.zeros(10, requires_grad=True)

    def forward(self, x):
        return torch.relu(x @ self.W1 + self.b1) @ self.W2 + self.b2

    def parameters(self):
        return [self.W1, self.b1, self.W2, self.b2]
