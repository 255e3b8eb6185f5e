"""Where computation runs: the device a run, a search or the server uses."""

import torch

from mnistlab.errors import ConfigError, Setting


def resolve(name: str = "auto") -> torch.device:
    """auto picks cuda, then mps, then cpu; an asked-for device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }
    if not available.get(name, False):
        raise ConfigError(
            (
                Setting("device"),
                f" {name}: no such device is available here; use device auto or cpu",
            )
        )
    return torch.device(name)
