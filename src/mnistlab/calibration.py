"""How sure a model is, in numbers a reader can take at their word.

A trained network's softmax is not a probability anyone measured: the default run, trained
with label smoothing, is underconfident; a long run is overconfident. Temperature scaling
(one number T dividing the logits, fitted by likelihood on held-out digits) makes the top
probability match the accuracy at that confidence, and never changes which class wins.

Then two flags, for a person's image:
- *unsure*: the calibrated confidence is under UNSURE ("not sure: 5 or 8?");
- *unfamiliar*: the input is unlike the training images: its confidence is under the level
  that only UNFAMILIAR_RATE of held-out digits fall below, or (digits) it is much wider than
  tall, as two digits or a word are.
benchmarks/photos.py chose the score by measurement, each score's level set to flag as many
real test digits (3.8%): of 64 non-digits (letters, dots, smileys, scribbles, "42", hashes,
boxes, stars, photographed like the digits), the calibrated top probability flagged 70% for
the best run where the energy (logsumexp) flagged 28% and the top logit 38%; for the default
run the three were close (56%, 48%, 59%). Boxes read as zeros and are never flagged.
"""

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

UNSURE = 0.8
UNFAMILIAR_RATE = 0.02  # the share of held-out digits flagged unfamiliar, by design
WIDE = 1.4  # a mark this many times wider than tall is not one digit
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-2, 1e2  # a saved temperature outside is not used


@dataclass(frozen=True)
class Calibration:
    temperature: float = 1.0
    unfamiliar_below: float | None = None  # None: not fitted (a run from before calibration)
    fitted_on: str = "none"  # "validation" or "test": which held-out images fitted it

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved) -> "Calibration":
        """A saved calibration, or none (T = 1, no level) where it is missing or not sane."""
        try:
            temperature = float(saved["temperature"])
            below = float(saved["unfamiliar_below"])
            fitted_on = str(saved["fitted_on"])
        except (KeyError, TypeError, ValueError, OverflowError):
            return cls()
        # (fit() searches 0.05-20; far outside, dividing the logits by it overflows)
        if not (MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE and 0 <= below <= 1):
            return cls()
        return cls(temperature, below, fitted_on)


def read(folder: str | Path) -> Calibration:
    """A run's calibration (in evaluation.json), or none where it has none or it is damaged."""
    from mnistlab.runfiles import EVALUATION, read_json

    saved = read_json(Path(folder) / EVALUATION)
    return Calibration.from_dict(saved.get("calibration") if isinstance(saved, dict) else None)


def fit(logits: torch.Tensor, labels: torch.Tensor, fitted_on: str) -> Calibration:
    """The temperature that makes held-out confidences honest (least negative log-likelihood,
    searched on a fine log grid: one parameter needs no optimiser), and the confidence below
    which only UNFAMILIAR_RATE of those digits fall."""
    # (float64: a sure model's confidences differ from 1 by less than float32 can tell)
    logits, labels = logits.double().cpu(), labels.cpu()
    grid = torch.exp(torch.linspace(math.log(0.05), math.log(20.0), 241, dtype=torch.float64))
    losses = [torch.nn.functional.cross_entropy(logits / t, labels).item() for t in grid]
    temperature = float(grid[int(np.nanargmin(losses))])
    confidence = torch.softmax(logits / temperature, 1).max(1).values
    below = float(torch.quantile(confidence, UNFAMILIAR_RATE))
    return Calibration(round(temperature, 4), below, fitted_on)


def wide(image: np.ndarray) -> bool:
    """A prepared 28x28 image whose ink is much wider than tall (two digits, a word)."""
    ink = image > 64
    if not ink.any():
        return False
    rows, columns = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    return bool(columns[-1] - columns[0] + 1 >= WIDE * (rows[-1] - rows[0] + 1))
