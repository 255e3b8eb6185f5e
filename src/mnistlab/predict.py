"""A trained run, asked about new images: each prepared as the dataset's own (preprocess.py),
normalised as the run was trained, and classified.

    predictor = Predictor.load("runs/mlp")
    [prediction] = predictor.predict(["my-digit.jpg"])
    prediction.name, prediction.top(3), prediction.confidence, prediction.verdict()

Probabilities are calibrated on held-out digits when the run was trained (calibration.py);
each prediction says when it is unsure and when its image is unlike the training images.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mnistlab import calibration, checkpoint, preprocess
from mnistlab.calibration import Calibration
from mnistlab.config import TrainConfig
from mnistlab.datasets import SIDE
from mnistlab.errors import CheckpointError
from mnistlab.resident import to_inputs


@dataclass(frozen=True)
class Prediction:
    label: int
    name: str
    probabilities: list[float]  # one per class, calibrated (calibration.py)
    input: np.ndarray  # (28, 28) uint8: what the model saw
    classes: list[str]
    unsure: bool = False  # the confidence is under calibration.UNSURE
    unfamiliar: bool = False  # unlike the training images (for digits: probably not one)

    @property
    def confidence(self) -> float:
        return max(self.probabilities)

    def top(self, count: int = 3) -> list[tuple[str, float]]:
        order = np.argsort(self.probabilities)[::-1][:count]
        return [(self.classes[i], self.probabilities[i]) for i in order]

    def verdict(self) -> str:
        """What a person is told: '7', 'not sure: 5 or 8?', or that it looks unlike the
        training images."""
        if self.unfamiliar:
            return f"{self.name}? this does not look like the images the model was trained on"
        if self.unsure:
            first, second = (name for name, _ in self.top(2))
            return f"not sure: {first} or {second}?"
        return self.name

    def as_dict(self) -> dict:
        return {
            "class": self.label,
            "name": self.name,
            "confidence": self.confidence,
            "unsure": self.unsure,
            "unfamiliar": self.unfamiliar,
            "verdict": self.verdict(),
            "probabilities": self.probabilities,
            "top": [{"name": name, "probability": p} for name, p in self.top(3)],
            "input": self.input.tolist(),
        }


def number(predictions: list[Prediction]) -> dict:
    """A reading as the API and `predict --json` answer it: one digit's own fields, or for a
    number its digits left to right, the number, and a verdict that marks each doubtful digit
    with "?" ("42?7")."""
    if len(predictions) == 1:
        return predictions[0].as_dict()
    doubtful = [p.unsure or p.unfamiliar for p in predictions]
    return {
        "number": "".join(p.name for p in predictions),
        "verdict": "".join(p.name + "?" * d for p, d in zip(predictions, doubtful, strict=True)),
        "confidence": float(np.prod([p.confidence for p in predictions])),
        "unsure": any(p.unsure for p in predictions),
        "unfamiliar": any(p.unfamiliar for p in predictions),
        "digits": [p.as_dict() for p in predictions],
    }


class Predictor:
    """A run's model, loaded once, in eval mode; thread-safe for inference."""

    def __init__(
        self,
        config: TrainConfig,
        model,
        normalization,
        classes,
        name: str = "",
        calibrated: Calibration | None = None,
    ):
        self.config, self.model = config, model.eval()
        self.mean, self.std = (float(value) for value in normalization)
        self.classes = list(classes)
        self.name = name
        self.calibration = calibrated or Calibration()

    @classmethod
    def load(cls, run: str | Path, device: str = "cpu") -> "Predictor":
        from mnistlab.datasets import get_spec

        saved, model = checkpoint.load_model(run, device)
        config = saved["config"]
        folder = checkpoint.resolve(run).parent
        classes = get_spec(config.dataset).classes
        predictor = cls(
            config, model, saved["normalization"], classes, folder.name, calibration.read(folder)
        )
        predictor.predict_prepared(np.zeros((1, SIDE, SIDE), np.uint8))  # finite outputs?
        return predictor

    def prepare(self, source) -> np.ndarray:
        return preprocess.prepare(source, self.config.dataset)

    @torch.no_grad()
    def predict_prepared(self, images: np.ndarray) -> list[Prediction]:
        """Predictions for (N, 28, 28) uint8 images already prepared."""
        device = next(iter(self.model.parameters())).device
        x = to_inputs(torch.from_numpy(np.ascontiguousarray(images)), self.mean, self.std, device)
        fitted = self.calibration
        probabilities = torch.softmax(self.model(x).double() / fitted.temperature, 1).cpu()
        if not bool(probabilities.isfinite().all()):  # weights that overflow: no answer to give
            raise CheckpointError(
                f"{self.name or 'the model'}: its outputs are not finite numbers (its weights "
                "are out of the range training gives); train it again"
            )
        predictions = []
        for image, row in zip(images, probabilities, strict=True):
            label, confidence = int(row.argmax()), float(row.max())
            unfamiliar = (
                fitted.unfamiliar_below is not None and confidence < fitted.unfamiliar_below
            ) or (self.config.dataset == "mnist" and calibration.wide(image))
            predictions.append(
                Prediction(
                    label,
                    self.classes[label],
                    row.tolist(),
                    image,
                    self.classes,
                    unsure=bool(confidence < calibration.UNSURE),
                    unfamiliar=bool(unfamiliar),
                )
            )
        return predictions

    def read(self, source) -> list[Prediction]:
        """The digits of one image, left to right: one Prediction for a digit (as `predict`
        gives), several for a number written side by side (mnistlab.segment). The pieces
        the writing is cut into are joined where they read better joined: the reading kept
        is the one whose digits' calibrated probabilities multiply to the most; pieces of
        two columns are joined only where they are not too wide together to be one digit."""
        from mnistlab import segment

        if self.config.dataset != "mnist":
            return self.predict([source])
        # (read once, for both: a file's name is the caller's to give with an error)
        array = preprocess.lightness(source)
        single = self.prepare(array)
        alone = self.predict_prepared(single[None])
        # One digit read surely, as one digit is prepared (marks far from it left out: a
        # shadow's edge, a fold), stands unless the number reads more surely still; and where
        # its ink is one piece narrower than tall, as no two digits side by side are, nothing
        # is looked for beside it (most pictures: a drawing is answered without the search).
        sure = not (alone[0].unsure or alone[0].unfamiliar)
        if sure and segment.alone(single):
            return alone
        found = segment.pieces(array)
        if found is None:
            return alone
        image, columns, origins = found
        spans = [
            range(start, stop)
            for start in range(len(columns))
            for stop in range(start + 1, min(start + 3, len(columns)) + 1)
            if segment.joinable(columns, origins, range(start, stop))
        ]
        fields = np.stack([segment.field(image, columns, span) for span in spans])
        read = dict(zip(map(tuple, spans), self.predict_prepared(fields), strict=True))
        # The best reading of the first k pieces, for each k (a shortest path on log-odds).
        best: list[tuple[float, list[tuple[int, ...]]]] = [(0.0, [])]
        for stop in range(1, len(columns) + 1):
            options = [
                (
                    best[start][0] + np.log(max(read[span].confidence, 1e-12)),
                    best[start][1] + [span],
                )
                for start in range(max(0, stop - 3), stop)
                if (span := tuple(range(start, stop))) in read
            ]
            best.append(max(options, key=lambda option: option[0]))
        chosen = [read[span] for span in best[-1][1]]
        if len(chosen) < 2 or (sure and np.exp(best[-1][0]) <= alone[0].confidence):
            return alone
        return chosen

    def predict(self, sources) -> list[Prediction]:
        """Predictions for images: paths, bytes, PIL images, numpy arrays or tensors."""
        images = np.stack([self.prepare(source) for source in sources])
        return self.predict_prepared(images)
