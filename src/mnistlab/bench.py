"""How fast one training epoch runs, against the bound set by its matrix multiplies.

The bound times only the matmuls an epoch must do (forward, the weight gradients, and the
input gradients of every layer but the first), on preallocated tensors of the real shapes.
Against it we time a full epoch of each implementation, and the course notebook's pipeline
rebuilt without torchvision: one PIL image at a time through ToTensor/Normalize arithmetic,
batched by a DataLoader.
"""

import contextlib
import dataclasses
import math
import os
import sys
import time

import numpy as np
import torch
from torch import nn

from mnistlab import data, devices, resident
from mnistlab import train as training
from mnistlab.config import TrainConfig
from mnistlab.models import epoch_flops


def matmul_bound(
    sizes, samples: int, batch_size: int, device, dtype=torch.float32, repeats: int = 3
) -> float:
    """Seconds for one epoch of the matmuls alone (best of `repeats`)."""
    generator = torch.Generator().manual_seed(0)

    def tensor(*shape):
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

    layers = list(zip(sizes[:-1], sizes[1:], strict=True))
    weights = [tensor(fan_out, fan_in) for fan_in, fan_out in layers]
    steps, last = divmod(samples, batch_size)
    batches = [batch_size] * steps + ([last] if last else [])
    inputs = {size: tensor(size, sizes[0]) for size in set(batches)}
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for size in batches:
            x, saved = inputs[size], []
            for weight in weights:
                saved.append(x)
                x = x @ weight.T  # (B, in) @ (in, out)
            grad = x
            for index in reversed(range(len(weights))):
                grad.T @ saved[index]  # weight gradient (out, in)
                if index > 0:
                    grad = grad @ weights[index]  # input gradient (B, in)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


# The parts of a training epoch, by the torch operators that do them ("aten::" left off); an
# operator named nowhere here is counted in "other operators".
PARTS = {
    "matmuls": {"addmm", "mm", "bmm"},
    "batching": {"index_select"},
    "augmentation": {"affine_grid_generator", "grid_sampler_2d", "upsample_bicubic2d", "uniform_"},
    "dropout": {"bernoulli_"},
    "activations": {
        "relu", "relu_", "clamp_min", "clamp_min_", "threshold_backward", "gelu",
        "gelu_backward", "tanh", "tanh_backward", "sigmoid", "sigmoid_backward",
    },
    "loss": {
        "cross_entropy_loss", "_log_softmax", "_log_softmax_backward_data", "nll_loss_forward",
        "nll_loss_backward",
    },
    "sums (bias gradients)": {"sum"},
    "optimizer": {"_fused_adam_", "_fused_adamw_", "_foreach_add_", "_foreach_mul_", "add_",
                  "lerp_", "addcmul_", "addcdiv_", "sqrt"},
    "copies": {"copy_", "_to_copy", "fill_", "zero_", "index_put_"},
    "views and allocations": {
        "t", "transpose", "slice", "select", "as_strided", "expand", "view", "reshape",
        "unsqueeze", "permute", "detach", "alias", "empty", "empty_strided", "empty_like",
        "resize_",
    },
}  # fmt: skip


def where_time_goes(config: TrainConfig, tensors: resident.Tensors) -> dict[str, float]:
    """Seconds of one training epoch by what spends them, measured by torch's profiler: each
    operator's own time, grouped into PARTS by name; the autograd engine's own time; and what
    is left of the epoch's wall time, outside every operator (Python, dispatch, and the
    profiler's own cost). The profiler slows the epoch, so the bound's matmuls are profiled
    too, to set beside the epoch's."""
    from torch.profiler import ProfilerActivity, profile

    profiler = profile(activities=[ProfilerActivity.CPU])

    def stop(done: int, total: int, loss) -> None:
        if done == total:  # the last step: nothing after the epoch's loop is counted
            with _quiet_stderr():
                profiler.stop()

    # The epoch's own steps alone: the model built before, no evaluation after.
    config = dataclasses.replace(config, epochs=1)
    model, optimizer = training.build(config, tensors.x_train.device)
    alone = dataclasses.replace(tensors, x_test=None, y_test=None, x_val=None, y_val=None)
    with _quiet_stderr():
        profiler.start()
    result = training.train(config, alone, model=model, optimizer=optimizer, on_batch=stop)
    parts = dict.fromkeys([*PARTS, "other operators", "autograd engine"], 0.0)
    for event in profiler.key_averages():
        if event.key.startswith("autograd::") or event.key.endswith(("Backward0", "Backward1")):
            part = "autograd engine"  # (a backward node's own time: what its operators are not)
        else:
            name = event.key.removeprefix("aten::")
            part = next((part for part, names in PARTS.items() if name in names), None)
        parts[part or "other operators"] += event.self_cpu_time_total / 1e6
    epoch = result.history[0]["seconds"]
    measured = {part: seconds for part, seconds in parts.items() if seconds > 0}
    # The bound's own matmuls under the profiler too, so that the two compare alike.
    precision = torch.bfloat16 if config.precision == "bf16" else torch.float32
    samples, device = len(tensors.y_train), tensors.x_train.device
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as bound:
        matmul_bound(config.layer_sizes, samples, config.batch_size, device, precision, 1)
    alike = sum(e.self_cpu_time_total for e in bound.key_averages() if e.key == "aten::mm") / 1e6
    return {
        "epoch": epoch,
        **measured,
        "outside operators": epoch - sum(measured.values()),
        "bound's matmuls": alike,
    }


@contextlib.contextmanager
def _quiet_stderr():
    """The process's standard error closed to C++ for a moment: torch's profiler (kineto)
    prints a line of its own on every start and stop."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_epoch(config: TrainConfig, tensors: resident.Tensors) -> float:
    """Seconds of one training epoch (no evaluation) of `config`'s model, from fresh weights."""
    _sync(tensors.x_train.device)
    result = training.train(dataclasses.replace(config, epochs=1), tensors)
    return result.history[0]["seconds"]


class NotebookDataset(torch.utils.data.Dataset):
    """The notebook's per-item pipeline: a PIL image, ToTensor, Normalize((0.5,), (0.5,)),
    flatten, exactly as torchvision's MNIST with that transform does it, one item at a time."""

    def __init__(self, split: data.Split):
        self.images, self.labels = split.images, split.labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        from PIL import Image

        image = Image.fromarray(self.images[index].numpy(), mode="L")
        x = torch.from_numpy(np.array(image, np.uint8, copy=True)).view(1, 28, 28)
        x = x.to(torch.float32).div(255)  # ToTensor
        x = (x - 0.5) / 0.5  # Normalize((0.5,), (0.5,))
        return x.view(-1), int(self.labels[index])


def notebook_epoch(split: data.Split, sizes, seed: int = 0) -> float:
    """Seconds of one epoch of the notebook's loop: DataLoader at batch 64, SGD at 0.01."""
    from mnistlab.models import modules

    loader = torch.utils.data.DataLoader(
        NotebookDataset(split),
        batch_size=64,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    model = modules.MLP(sizes, generator=torch.Generator().manual_seed(seed))
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    start = time.perf_counter()
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def run(
    config: TrainConfig,
    dataset: data.Dataset,
    device,
    impls=("module", "scratch", "manual"),
    notebook: bool = True,
    repeats: int = 5,
) -> dict:
    """Time the bound, each implementation and (optionally) the notebook pipeline.

    The bound and the epochs are each the best of `repeats`, taken in turns (bound, module,
    scratch, manual, bound, ...) so that a slow spell on a shared machine lands on every row
    alike instead of on one. The notebook's much longer epoch is timed once.
    """
    # auto is timed as fp32, with bf16 beside it where the CPU has it: the two auto chooses
    # between, measured in turns.
    compare = device.type == "cpu" and config.precision in ("auto", "fp32")
    if config.precision == "auto":
        config = dataclasses.replace(config, precision="fp32")
    tensors = resident.prepare(config, dataset, device)
    samples = len(tensors.y_train)
    flops = epoch_flops(config.layer_sizes, samples)
    precision = torch.bfloat16 if config.precision == "bf16" else torch.float32
    training_epoch(config, tensors)  # warm-up: first-call allocations and kernel choices
    times = {"bound (matmuls only)": []} | {f"{impl} epoch": [] for impl in impls}
    for _ in range(repeats):
        bound = matmul_bound(
            config.layer_sizes, samples, config.batch_size, device, precision, repeats=1
        )
        times["bound (matmuls only)"].append(bound)
        for impl in impls:
            seconds = training_epoch(dataclasses.replace(config, impl=impl), tensors)
            times[f"{impl} epoch"].append(seconds)
    bf16 = devices.bf16_native() if compare else None
    if bf16:  # the bf16 bound and epoch, beside fp32's, in turns with each other
        half = dataclasses.replace(config, precision="bf16")
        times |= {"bound bf16 (matmuls only)": [], "module epoch bf16": []}
        training_epoch(half, tensors)
        for _ in range(repeats):
            bound = matmul_bound(
                config.layer_sizes, samples, config.batch_size, device, torch.bfloat16, 1
            )
            times["bound bf16 (matmuls only)"].append(bound)
            times["module epoch bf16"].append(training_epoch(half, tensors))
    if notebook:
        times["notebook pipeline (batch 64)"] = [
            notebook_epoch(dataset.train, config.layer_sizes, config.seed)
        ]
    # Every time is kept, in the order taken, so that a reader sees how much the machine
    # moved; the table's figure is the best.
    rows = [
        {"name": name, "seconds": min(values), "times": values} for name, values in times.items()
    ]
    bound = rows[0]["seconds"]
    for row in rows:
        row.update(
            samples_per_second=samples / row["seconds"],
            gflops=flops / row["seconds"] / 1e9,
            ratio_to_bound=row["seconds"] / bound,
        )
    module = dataclasses.replace(config, impl="module")
    return {
        "config": dataclasses.asdict(config),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "bf16_native": bf16,
        "where_time_goes": where_time_goes(module, tensors),
        # where the CPU has bf16, auto trains in it: that epoch is broken down too
        "where_time_goes_bf16": (
            where_time_goes(dataclasses.replace(module, precision="bf16"), tensors)
            if bf16
            else None
        ),
        "samples": samples,
        "epoch_gflop": flops / 1e9,
        "rows": rows,
    }
