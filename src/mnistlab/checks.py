"""The checks `diagnose.check` runs on a model someone wrote, in order, each writing what it
finds into the report (`report.add`, `report.error`, `report.values`): a check that finds the
model cannot go on (no tensors, no output, no gradient) stops the ones after it. Whatever the
model's own code raises is that check's ERROR (`_guard`); the agreement check lives in
mnistlab.agreement.
"""

import contextlib
import copy
import math

import torch
import torch.nn.functional as F

from mnistlab import models, optim
from mnistlab.agreement import agreement, call
from mnistlab.datasets import CLASSES, INPUTS

LN10 = math.log(10)


@contextlib.contextmanager
def _guard(report, check: str):
    """Whatever the user's code raises during a check is that check's ERROR, with the reason;
    the checks after it still run where they can."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - the user's code: any failure is a finding
        first = (str(error).splitlines() or [""])[0][:300]
        report.error(
            check,
            f"the model raised {type(error).__name__} during this check: {first}",
            "run the model on a batch of (64, 784) images yourself and fix what it raises",
        )


def named_parameters(model) -> list[tuple[str, torch.Tensor]]:
    """The model's parameter tensors with the names a person would know them by."""
    if isinstance(model, torch.nn.Module) or hasattr(model, "named_parameters"):
        return list(model.named_parameters())
    attributes = [(k, v) for k, v in vars(model).items() if isinstance(v, torch.Tensor)]
    if callable(getattr(model, "parameters", None)):
        listed = list(model.parameters())
        names = {id(value): name for name, value in attributes}
        return [(names.get(id(p), f"parameters()[{i}]"), p) for i, p in enumerate(listed)]
    return attributes


def run(report, model, x, y, wanted: set) -> None:
    parameters = None
    with _guard(report, "leaf"):
        parameters = named_parameters(model)
        strays = [name for name, value in parameters if not isinstance(value, torch.Tensor)]
        if strays:
            report.add(
                "leaf",
                False,
                f"parameters() gives {', '.join(strays[:3])}, which are not tensors",
                "return the weight tensors themselves from parameters()",
            )
            return
    if parameters is None:
        return
    if not parameters:
        report.add(
            "leaf",
            False,
            "no parameter tensors found",
            "give the model a parameters() method that returns its weight tensors",
        )
        return
    learnable, logits = [], None
    with _guard(report, "leaf"):
        learnable = _leaves(report, parameters)
    with _guard(report, "output"):
        logits = _output(report, model, x)
    if logits is None:
        return
    if not logits.requires_grad:
        report.add(
            "gradient",
            False,
            "the output carries no gradient: forward detaches it (.detach(), .item(), numpy) or "
            "runs under torch.no_grad()",
            "return the last layer's output as it is, computed with gradients on",
        )
        return
    total = sum(p.numel() for _, p in parameters)
    trainable = sum(p.numel() for name, p in parameters if name in learnable)
    report.values.update(parameters=total, trainable_parameters=trainable)
    of = f" of its {total:,}" if trainable != total else ""
    report.add(
        "count",
        None,
        f"{trainable:,} trainable parameters{of} (the {INPUTS}-500-{CLASSES} MLP has "
        f"{models.count_parameters((INPUTS, 500, CLASSES)):,}, logistic regression "
        f"{models.count_parameters((INPUTS, CLASSES)):,})",
    )
    loss = F.cross_entropy(logits.float(), y)
    with _guard(report, "gradient"):
        _gradients(report, parameters, learnable, loss)
    _initial_loss(report, loss.item())
    if learnable and "gradients" in wanted:
        with _guard(report, "gradients"):
            _finite_differences(report, model, x, y)
    if "overfit" in wanted:
        with _guard(report, "overfit"):
            _overfit(report, model, x, y)
    if "agrees" in wanted:
        with _guard(report, "agrees"):
            agreement(report, model, parameters, x)


def _leaves(report, parameters) -> list[str]:
    learnable = []
    for name, value in parameters:
        if not value.is_leaf:
            report.add(
                "leaf",
                False,
                f"{name} is not a leaf tensor: it was computed from another tensor (as "
                "torch.randn(..., requires_grad=True) * 0.01 is), so it never receives a .grad "
                "and never learns",
                f"create it first, then mark it: {name} = (torch.randn(...) * 0.01)"
                ".requires_grad_()",
            )
        elif not value.requires_grad:
            report.add(
                "leaf",
                False,
                f"{name} does not require grad: the optimizer will never change it (frozen)",
                f"call {name}.requires_grad_() (or leave requires_grad at its default)",
            )
        else:
            learnable.append(name)
    if len(learnable) == len(parameters):
        report.add("leaf", True, f"all {len(parameters)} parameters are leaves that require grad")
    return learnable


def _output(report, model, x):
    try:
        logits = call(model, x)
    except Exception as error:  # noqa: BLE001 - the user's code: any failure is a finding
        report.add(
            "output",
            False,
            f"forward on a ({len(x)}, {INPUTS}) batch raised {error!r}",
            f"forward must take (N, {INPUTS}) float images",
        )
        return None
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (len(x), CLASSES):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        report.add(
            "output",
            False,
            f"the output is {shape}, not ({len(x)}, {CLASSES})",
            f"the last layer must map to {CLASSES} classes, one row per image",
        )
        return None
    if not logits.is_floating_point():
        report.add(
            "output",
            False,
            f"the output is {logits.dtype}, not floating point",
            "return the last layer's scores as floats",
        )
        return None
    report.add("output", True, f"the output is ({len(x)}, {CLASSES}) {logits.dtype}")
    rows = logits.detach().float()
    if bool((rows >= 0).all()) and torch.allclose(rows.sum(1), torch.ones(len(rows)), atol=1e-4):
        report.add(
            "logits",
            False,
            "the outputs are already probabilities (non-negative, each row sums to 1), but "
            "CrossEntropyLoss applies softmax itself: it expects logits",
            "return the scores before the softmax",
        )
    else:
        report.add("logits", True, "the outputs are logits, as CrossEntropyLoss expects")
    return logits


def _gradients(report, parameters, learnable, loss) -> None:
    values = dict(parameters)
    for name in learnable:
        values[name].grad = None
    try:
        loss.backward()
    except RuntimeError as error:
        report.add(
            "gradient",
            False,
            f"backward failed: {error}".splitlines()[0],
            "make the parameters leaves that require grad",
        )
        return
    missing = [n for n in learnable if values[n].grad is None or not values[n].grad.any()]
    for name in missing:
        report.add(
            "gradient",
            False,
            f"{name} receives no gradient: the loss does not depend on it",
            f"use {name} in forward (a layer defined but never applied?)",
        )
    for name in learnable:
        values[name].grad = None  # leave the model as it came
    if learnable and not missing:
        report.add("gradient", True, "every learnable parameter receives a gradient")


def _initial_loss(report, loss: float) -> None:
    report.values["initial_loss"] = loss
    if not math.isfinite(loss) or loss > 2 * LN10:
        report.add(
            "initial_loss",
            False,
            f"the initial loss is {loss:.3g}, far above ln 10 = {LN10:.3f}, where a fresh "
            "10-class model starts: the initial weights are too large",
            "scale the random weights down, e.g. by 1/sqrt(fan_in) (nn.Linear's default) or 0.01",
        )
    else:
        report.add("initial_loss", True, f"the initial loss is {loss:.3f} (ln 10 = {LN10:.3f})")


def _copy(model, dtype: torch.dtype | None = None):
    """A copy to train or convert, leaving the user's model as it is. A plain object's tensors
    are cloned; a non-leaf one cannot learn in the copy either, unless the copy is converted
    (for the gradient check), where it becomes a leaf of the new dtype."""
    if isinstance(model, torch.nn.Module):
        twin = copy.deepcopy(model)
        return twin.to(dtype) if dtype is not None else twin
    twin = copy.copy(model)
    for key, value in vars(model).items():
        if isinstance(value, torch.Tensor):
            clone = value.detach().clone().to(dtype or value.dtype)
            # A non-leaf stays unable to learn in a plain copy; converted, it is checked too.
            learns = value.requires_grad and (value.is_leaf or dtype is not None)
            setattr(twin, key, clone.requires_grad_(learns))
    return twin


def _finite_differences(report, model, x, y, coordinates: int = 3, eps: float = 1e-6) -> None:
    try:
        twin = _copy(model, torch.float64)
    except Exception:  # noqa: BLE001 - a model that cannot be copied is skipped, and said so
        report.add("gradients", None, "skipped: the model could not be copied to float64")
        return
    parameters = [(n, p) for n, p in named_parameters(twin) if p.requires_grad and p.is_leaf]
    x64 = x.double()

    def loss():
        return F.cross_entropy(call(twin, x64), y)

    for _, value in parameters:
        value.grad = None
    loss().backward()
    generator = torch.Generator().manual_seed(0)
    worst, where = 0.0, ""
    for name, value in parameters:
        if value.grad is None:
            continue
        for index in torch.randint(value.numel(), (coordinates,), generator=generator).tolist():
            flat = value.data.view(-1)
            original = flat[index].item()
            with torch.no_grad():
                flat[index] = original + eps
                above = loss().item()
                flat[index] = original - eps
                below = loss().item()
                flat[index] = original
            numeric = (above - below) / (2 * eps)
            analytic = value.grad.view(-1)[index].item()
            # Relative where the gradient is large, absolute where it is nearly zero (a
            # saturated softmax), so rounding in either is not called a wrong gradient.
            error = abs(numeric - analytic) / max(1e-4, abs(numeric) + abs(analytic))
            if error > worst:
                worst, where = error, f"{name}[{index}]"
    report.values["gradient_error"] = worst
    if worst > 1e-4:
        report.add(
            "gradients",
            False,
            f"the gradient disagrees with finite differences at {where} "
            f"(relative error {worst:.2g})",
            "a hand-written backward or a non-differentiable step is wrong",
        )
    else:
        report.add(
            "gradients",
            True,
            f"gradients agree with float64 finite differences (worst relative error {worst:.1g})",
        )


def _overfit(report, model, x, y, steps: int = 200, target: float = 0.05) -> None:
    """Can it drive the loss on one batch near zero? A model that cannot is broken."""
    if not any(p.requires_grad and p.is_leaf for _, p in named_parameters(model)):
        report.add(
            "overfit",
            False,
            "it cannot learn at all: no parameter is a leaf that "
            "requires grad, so no optimizer step changes anything",
            "fix the parameters named above",
        )
        return
    twin = _copy(model)
    parameters = [p for _, p in named_parameters(twin) if p.requires_grad and p.is_leaf]
    loss = float("inf")
    if parameters:
        optimizer = optim.Adam(parameters, lr=1e-3, fused=False)
        for step in range(steps):
            optimizer.zero_grad()
            value = F.cross_entropy(call(twin, x).float(), y)
            value.backward()
            optimizer.step()
            loss = value.item()
            report.values.update(overfit_loss=loss, overfit_steps=step + 1)
            if loss < target:
                report.add(
                    "overfit",
                    True,
                    f"it overfits one batch of {len(x)}: loss "
                    f"{loss:.3f} after {step + 1} steps of Adam",
                )
                return
    report.add(
        "overfit",
        False,
        f"it cannot overfit one batch of {len(x)}: loss {loss:.3g} after {steps} steps "
        "of Adam at 1e-3",
        "fix the findings above; a model that learns drives one batch's loss to ~0",
    )
