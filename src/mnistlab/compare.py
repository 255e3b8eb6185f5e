"""The three implementations trained side by side from the same weights on the same batches."""

import dataclasses
import time

from mnistlab import train as training
from mnistlab.config import IMPLEMENTATIONS, TrainConfig
from mnistlab.resident import Tensors


def _largest_difference(state: dict, reference: dict) -> float:
    return max((state[name] - reference[name]).abs().max().item() for name in state)


def compared(config: TrainConfig) -> TrainConfig:
    """The settings `compare` trains with: `config`, precision `auto` made fp32."""
    return dataclasses.replace(config, precision="fp32") if config.precision == "auto" else config


def compare(config: TrainConfig, tensors: Tensors, on_result=None) -> list[dict]:
    """One row per implementation: final test accuracy and train loss, seconds, and the
    largest weight difference from `module` at the end and after the first step.

    After one step the implementations differ by float32 rounding alone. Over many steps
    those differences grow (Adam divides by small second moments), so the final weights part
    while the accuracy stays the same. `on_result(impl, row)` sees each row as it is done.

    Precision `auto` compares in fp32 (`compared`): in bf16 the module rounds its layers'
    outputs to bf16 where the scratch model's bias add promotes them to fp32, and that
    difference, not the implementations, would fill the table (~2e-2 after one Adam step
    against ~1e-5). Precision bf16, asked for, still compares in bf16.
    """
    config = compared(config)
    first = {
        impl: training.train(
            dataclasses.replace(config, impl=impl), tensors, should_stop=lambda: True
        ).model.state_dict()
        for impl in IMPLEMENTATIONS
    }
    finals, rows = {}, []
    for impl in IMPLEMENTATIONS:
        started = time.perf_counter()
        result = training.train(dataclasses.replace(config, impl=impl), tensors)
        seconds = time.perf_counter() - started
        finals[impl] = result.model.state_dict()
        row = {
            "impl": impl,
            "test_accuracy": result.history[-1]["test_accuracy"],
            "train_loss": result.history[-1]["train_loss"],
            "seconds": seconds,
            "precision": result.history[-1]["precision"],
        }
        rows.append(row)
        if on_result is not None:
            on_result(impl, row)
    for row in rows:
        row["difference"] = _largest_difference(finals[row["impl"]], finals["module"])
        row["first_step_difference"] = _largest_difference(first[row["impl"]], first["module"])
    return rows
