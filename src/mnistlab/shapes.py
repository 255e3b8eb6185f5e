"""The MLP's parameters by name and shape, from its layer widths: arithmetic alone, so that
what only counts parameters (a run's report) does not import torch.

Every implementation names its parameters `hidden.<i>.weight`, `hidden.<i>.bias`,
`output.weight` and `output.bias`, with nn.Linear's (out, in) weight shape.
"""

import math


def parameter_shapes(sizes: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """(784, 500, 10) -> {'hidden.0.weight': (500, 784), ..., 'output.bias': (10,)}."""
    shapes = {}
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-2], sizes[1:-1], strict=True)):
        shapes[f"hidden.{index}.weight"] = (fan_out, fan_in)
        shapes[f"hidden.{index}.bias"] = (fan_out,)
    shapes["output.weight"] = (sizes[-1], sizes[-2])
    shapes["output.bias"] = (sizes[-1],)
    return shapes


def count(sizes) -> int:
    """Trainable parameters of the MLP (or, with two widths, logistic regression) of `sizes`."""
    return sum(math.prod(shape) for shape in parameter_shapes(tuple(sizes)).values())
