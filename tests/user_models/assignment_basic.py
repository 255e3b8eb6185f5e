# The course notebook's BasicMLP, exactly as written there: W1 and W2 are not leaves.
import torch


class BasicMLP:
    def __init__(self):
        self.W1 = torch.randn(784, 500, requires_grad=True) * 0.01
        self.b1 = torch.zeros(500, requires_grad=True)
        self.W2 = torch.randn(500, 10, requires_grad=True) * 0.01
        self.b2 = torch.zeros(10, requires_grad=True)

    def forward(self, x):
        z1 = x @ self.W1 + self.b1
        a1 = torch.relu(z1)
        z2 = a1 @ self.W2 + self.b2
        return z2  # We return the logits here

    def parameters(self):
        return [self.W1, self.b1, self.W2, self.b2]
