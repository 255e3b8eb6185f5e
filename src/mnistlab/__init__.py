"""mnistlab: multi-layer perceptrons and logistic regression on MNIST, with PyTorch.

Importing the package does nothing but define names: no download, no device choice, no
global setting. Start from `mnistlab.data.load`, `mnistlab.train.train` or the CLI.
"""

__version__ = "0.1.0"
