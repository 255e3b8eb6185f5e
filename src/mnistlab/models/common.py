"""What the three implementations share: parameter names, shapes and initial values.

Every implementation names and shapes its parameters as shapes.py says, and draws them here
from one generator in that order. The same seed therefore gives the same weights in all three,
and one state_dict loads into any of them.
"""

import math

import torch

from mnistlab.shapes import parameter_shapes


def initial_state(
    sizes: tuple[int, ...],
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """nn.Linear's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and
    bias alike, drawn from `generator` in parameter order."""
    state = {}
    for name, shape in parameter_shapes(sizes).items():
        fan_in = shape[1] if name.endswith("weight") else state[name[:-4] + "weight"].shape[1]
        bound = 1 / math.sqrt(fan_in)
        state[name] = torch.empty(shape, dtype=dtype).uniform_(-bound, bound, generator=generator)
    return state


DROP_LEVELS = 1 << 16  # a unit is dropped when its 16 random bits fall below p of this


def dropout_mask(like: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Inverted-dropout mask: 0 with probability p, else 1/(1-p), drawn from `generator`.

    train() hands every implementation the same seeded generator (`model.dropout_generator`),
    so they drop the same units by construction and never touch torch's global generator.
    Outside train() the generator is None and the global one is used, as nn.Dropout does.

    Each unit takes 16 random bits, four from each 64-bit draw: the CPU's generator makes one
    number at a time, and bernoulli_'s one draw per unit was a seventh of an epoch of the best
    recipe on a 2-core CPU (3.3 ms for a 256x1024 mask, against 1.0 ms). So p is rounded to a
    multiple of 1/65,536 (0.134 drops 0.1340027 of the units), and the kept ones are scaled
    by the exact inverse of the fraction kept.
    """
    dropped = round(p * DROP_LEVELS)
    count = like.numel()
    high, size = (1 << 63) - 1, ((count + 3) // 4,)
    words = torch.randint(
        -high - 1, high, size, dtype=torch.int64, generator=generator, device=like.device
    )
    bits = words.view(torch.int16)[:count].view(like.shape)  # uniform over -32,768..32,767
    kept = bits >= dropped - DROP_LEVELS // 2
    return kept.to(like.dtype).mul_(DROP_LEVELS / (DROP_LEVELS - dropped))


def gelu(z: torch.Tensor) -> torch.Tensor:
    """GELU in the exact form nn.GELU uses: z·Φ(z)."""
    return z * normal_cdf(z)


def normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(z / math.sqrt(2)))


def epoch_flops(sizes: tuple[int, ...], samples: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of one epoch's matmuls for layer widths `sizes`."""
    layers = list(zip(sizes[:-1], sizes[1:], strict=True))
    forward = sum(2 * samples * fan_in * fan_out for fan_in, fan_out in layers)
    input_grads = sum(2 * samples * fan_in * fan_out for fan_in, fan_out in layers[1:])
    return 2 * forward + input_grads  # forward, weight gradients (same size), input gradients


class TensorModel:
    """Plain tensors posing as an nn.Module where training needs it: named parameters, a
    state_dict that moves between implementations, train/eval modes, and `.to(device)`."""

    def __init__(self, sizes, activation="relu", dropout=0.0, generator=None, dtype=torch.float32):
        self.sizes, self.activation, self.dropout = tuple(sizes), activation, dropout
        self.training = True
        self.dropout_generator: torch.Generator | None = None
        self._parameters = initial_state(self.sizes, generator, dtype)
        self._requires_grad(self._parameters)

    def _requires_grad(self, parameters: dict[str, torch.Tensor]) -> None:
        """Hook for the scratch twin, whose parameters are autograd leaves."""

    @property
    def depth(self) -> int:
        return len(self.sizes) - 2

    def layer(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self._parameters[f"{name}.weight"], self._parameters[f"{name}.bias"]

    def named_parameters(self):
        return iter(self._parameters.items())

    def parameters(self):
        return iter(self._parameters.values())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: value.detach().clone() for name, value in self._parameters.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        expected = {name: tuple(value.shape) for name, value in self._parameters.items()}
        given = {name: tuple(value.shape) for name, value in state.items()}
        if expected != given:
            raise RuntimeError(f"state_dict does not match: expected {expected}, got {given}")
        with torch.no_grad():
            for name, value in state.items():
                self._parameters[name].copy_(value)

    def to(self, device=None, dtype=None):
        moved = {
            name: value.detach().to(device=device, dtype=dtype)
            for name, value in self._parameters.items()
        }
        self._requires_grad(moved)
        self._parameters = moved
        return self

    def train(self, mode: bool = True):
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)
