# Leaves, but weights drawn from randn without scaling: logits in the hundreds.
import torch


class BasicMLP:
    def __init__(self):
        self.W1 = torch.randn(784, 500, requires_grad=True)
        self.b1 = torch.zeros(500, requires_grad=True)
        self.W2 = torch.randn(500, 10, requires_grad=True)
        self.b2 = torch.zeros(10, requires_grad=True)

    def forward(self, x):
        return torch.relu(x @ self.W1 + self.b1) @ self.W2 + self.b2

    def parameters(self):
        return [self.W1, self.b1, self.W2, self.b2]
