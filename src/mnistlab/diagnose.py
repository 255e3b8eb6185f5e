"""Diagnose a model someone wrote: the mistakes that cost a student an evening, named with
their fix.

`check(model, x, y)` takes an nn.Module, or any object with `forward` (or `__call__`) from
(N, 784) to (N, 10) logits and a list of parameter tensors (a `parameters()` method, or tensor
attributes), and runs, on one real batch:
- every parameter a leaf that requires grad (the course notebook's `torch.randn(...,
  requires_grad=True) * 0.01` is not a leaf and never learns), and every one reached by the
  gradient of the loss;
- the output's shape and dtype, and whether it already looks like probabilities
  (CrossEntropyLoss wants logits);
- the trainable parameter count beside the 784-500-10 MLP's and logistic regression's;
- the initial loss against ln 10, what a fresh classifier of 10 classes starts near;
- a float64 finite-difference check of a few gradient coordinates;
- whether it can overfit one batch of 64 within 200 steps;
- when its parameter shapes are a mnistlab MLP's: the same weights in mnistlab's MLP give the
  same logits.
The checks themselves are in mnistlab.checks. Nothing of the user's model is changed: the
checks that train or convert it use copies, and torch's global random generator is left as it
was. The numbers behind the findings are in `report.values`; `Report.as_dict()` is the
versioned answer (SCHEMA) an autograder reads.
"""

import contextlib
import signal
import threading
from dataclasses import asdict, dataclass, field

import torch

from mnistlab import checks
from mnistlab.config import CHECKS

# The JSON answer's version: a new field keeps it; a field renamed, removed or changed in meaning
# raises it, so that an autograder's tests can say which answer they were written for.
SCHEMA = 1
# `values`, the numbers behind the findings (absent where the check did not get that far):
# parameters, trainable_parameters, initial_loss, gradient_error (worst relative error against
# finite differences), overfit_loss and overfit_steps, agreement_error and agreement_activation.


@dataclass
class Finding:
    check: str  # leaf, gradient, output, logits, count, initial_loss, gradients, overfit, agrees
    passed: bool | None  # None: for information, neither passed nor failed
    message: str
    fix: str = ""
    error: bool = False  # the model's own code raised (or ran out of time) during the check


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    values: dict = field(default_factory=dict)  # the numbers behind the findings, by name

    @property
    def passed(self) -> bool:
        return all(finding.passed is not False for finding in self.findings)

    def failed(self) -> list[str]:
        return [finding.check for finding in self.findings if finding.passed is False]

    def as_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "passed": self.passed,
            "values": dict(self.values),
            "findings": [asdict(f) for f in self.findings],
        }

    def __str__(self) -> str:
        from mnistlab.text import check_report

        return check_report(self)

    def add(self, check, passed, message, fix="", error=False):
        self.findings.append(Finding(check, passed, message, fix, error))

    def error(self, check: str, message: str, fix: str) -> None:
        """The user's code raised (or never finished) during `check`: an ERROR, which fails."""
        self.add(check, False, message, fix, error=True)


class TimeLimit(BaseException):
    """The time limit of an in-process check ran out (a BaseException, so that the guards
    that turn the model's own exceptions into findings let it pass)."""


@contextlib.contextmanager
def _time_limit(seconds: float | None):
    """Raise TimeLimit in this (the main) thread after `seconds`, as an alarm: the only way to
    stop a model's forward that loops, short of a process of its own (usercode)."""
    if seconds is None:
        yield
        return
    if threading.current_thread() is not threading.main_thread():
        raise ValueError("a time limit needs the main thread (signals); check in a process")

    def expired(signum, frame):
        raise TimeLimit

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def made(model, seed: int = 0):
    """The model itself, or, given a class, one made with no arguments with torch's generator
    seeded (and restored after): the same weights in this process as in `check`'s own."""
    if not isinstance(model, type):
        return model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model()


def check(
    model,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    only=None,
    seed: int = 0,
    time_limit: float | None = None,
) -> Report:
    """Run the checks on `model` with the batch x (N, 784) float, y (N,) int64: all of them, or
    those named in `only` (see CHECKS; the slow ones not named are not run). Whatever the
    model's code raises is an ERROR finding of the check it raised in, never an exception;
    past `time_limit` seconds the check stops with a `time` ERROR. Torch's random generator
    is seeded with `seed` for the checks (dropout, a model's own draws) and restored after."""
    wanted = set(CHECKS if only is None else ([only] if isinstance(only, str) else only))
    unknown = sorted(wanted - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown check {', '.join(unknown)}: the checks are {', '.join(CHECKS)}")
    report = Report()
    try:
        with torch.random.fork_rng(devices=[]), _time_limit(time_limit):
            torch.manual_seed(seed)
            checks.run(report, model, x, y, wanted)
    except TimeLimit:
        report.error(
            "time",
            f"the checks did not finish within {time_limit:g} s (a forward that sleeps or "
            "loops for ever?); they were stopped",
            "make forward return; time it on a batch of 64 images",
        )
    report.findings = [f for f in report.findings if f.check in wanted or f.check == "time"]
    return report


def batch_source(dataset: str = "mnist", data_dir=None, cache_dir=None):
    """Where check's batch comes from: for MNIST the sample that ships with mnistlab (no files,
    no network; the same images as the full set's first 1,000), else the data set itself (in
    `data_dir` or the cache)."""
    if dataset == "mnist":
        from mnistlab import sample

        return sample.load()
    from mnistlab import data

    return data.load(dataset, data_dir, cache_dir=cache_dir)


def batch(dataset, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`size` images (N, 784) of the first 1,000 of the training set, scaled to [-1, 1] as the
    course notebook's Normalize((0.5,), (0.5,)) does, and their labels; the same seed, the
    same batch. The first 1,000 are MNIST's sample that ships with mnistlab (mnistlab.sample),
    so the batch is the same whether the full data set is on the machine or not."""
    from mnistlab.resident import to_inputs
    from mnistlab.sample import SIZE

    first = min(len(dataset.train), SIZE)
    order = torch.randperm(first, generator=torch.Generator().manual_seed(seed))
    chosen = order[:size]
    x = to_inputs(dataset.train.images[chosen], 0.5, 0.5)
    return x, dataset.train.labels[chosen]
