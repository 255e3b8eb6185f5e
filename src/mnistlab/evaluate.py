"""Evaluation without gradients: returns numbers, prints nothing."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float  # fraction in [0, 1]
    confusion: torch.Tensor  # (C, C) int64: rows are true labels, columns predictions

    @property
    def per_class_accuracy(self) -> list[float]:
        totals = self.confusion.sum(1).clamp(min=1)
        return (self.confusion.diagonal() / totals).tolist()

    def as_dict(self, classes=None) -> dict:
        return {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "per_class_accuracy": self.per_class_accuracy,
            "confusion": self.confusion.tolist(),
            **({"classes": list(classes)} if classes else {}),
        }


@torch.no_grad()
def predict(model, x: torch.Tensor, batch_size: int = 10_000) -> torch.Tensor:
    """Logits for every row of x, in a few large batches (eval mode, no dropout)."""
    was_training = getattr(model, "training", False)
    model.eval()
    logits = torch.cat(
        [model(x[start : start + batch_size]) for start in range(0, len(x), batch_size)]
    ).float()
    model.train(was_training)
    return logits  # (N, C)


def evaluate(
    model, x: torch.Tensor, y: torch.Tensor, classes: int = 10, batch_size: int = 10_000
) -> Evaluation:
    return score(predict(model, x, batch_size), y, classes)


def score(logits: torch.Tensor, y: torch.Tensor, classes: int = 10) -> Evaluation:
    """Loss, accuracy and confusion matrix of logits already computed."""
    loss = F.cross_entropy(logits, y).item()
    predictions = logits.argmax(1)
    confusion = torch.bincount(y * classes + predictions, minlength=classes * classes)
    return Evaluation(
        loss, (predictions == y).float().mean().item(), confusion.reshape(classes, classes).cpu()
    )
