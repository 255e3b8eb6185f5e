"""A trained run, asked about new images: each prepared as the dataset's own (preprocess.py),
normalised as the run was trained, and classified.

    predictor = Predictor.load("runs/mlp")
    [prediction] = predictor.predict(["my-digit.jpg"])
    prediction.name, prediction.top(3)
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mnistlab import checkpoint, preprocess
from mnistlab.config import TrainConfig
from mnistlab.resident import to_inputs


@dataclass(frozen=True)
class Prediction:
    label: int
    name: str
    probabilities: list[float]  # one per class
    input: np.ndarray  # (28, 28) uint8: what the model saw
    classes: list[str]

    def top(self, count: int = 3) -> list[tuple[str, float]]:
        order = np.argsort(self.probabilities)[::-1][:count]
        return [(self.classes[i], self.probabilities[i]) for i in order]

    def as_dict(self) -> dict:
        return {
            "class": self.label,
            "name": self.name,
            "probabilities": self.probabilities,
            "top": [{"name": name, "probability": p} for name, p in self.top(3)],
            "input": self.input.tolist(),
        }


class Predictor:
    """A run's model, loaded once, in eval mode; thread-safe for inference."""

    def __init__(self, config: TrainConfig, model, normalization, classes, name: str = ""):
        self.config, self.model = config, model.eval()
        self.mean, self.std = (float(value) for value in normalization)
        self.classes = list(classes)
        self.name = name

    @classmethod
    def load(cls, run: str | Path, device: str = "cpu") -> "Predictor":
        from mnistlab.datasets import get_spec

        saved, model = checkpoint.load_model(run, device)
        config = saved["config"]
        folder = checkpoint.resolve(run).parent
        return cls(
            config, model, saved["normalization"], get_spec(config.dataset).classes, folder.name
        )

    def prepare(self, source) -> np.ndarray:
        return preprocess.prepare(source, self.config.dataset)

    @torch.no_grad()
    def predict_prepared(self, images: np.ndarray) -> list[Prediction]:
        """Predictions for (N, 28, 28) uint8 images already prepared."""
        device = next(iter(self.model.parameters())).device
        x = to_inputs(torch.from_numpy(np.ascontiguousarray(images)), self.mean, self.std, device)
        probabilities = torch.softmax(self.model(x).float(), 1).cpu()
        predictions = []
        for image, row in zip(images, probabilities, strict=True):
            label = int(row.argmax())
            predictions.append(
                Prediction(label, self.classes[label], row.tolist(), image, self.classes)
            )
        return predictions

    def predict(self, sources) -> list[Prediction]:
        """Predictions for images: paths, bytes, PIL images, numpy arrays or tensors."""
        images = np.stack([self.prepare(source) for source in sources])
        return self.predict_prepared(images)
