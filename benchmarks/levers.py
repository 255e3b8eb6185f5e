"""Each speed lever of the training loop, measured in one process on real MNIST.

    python benchmarks/levers.py [--data-dir DIR] [--compile]

Prints seconds per epoch (or per pass) for: batch size, thread count, bf16 autocast, the
optimizer (mnistlab's Adam through torch's single kernel and written out, against
torch.optim's fused and foreach ones), ReLU in place or not, gathering batches into reused
buffers versus fresh tensors, the evaluation batch size, and (with --compile) torch.compile
including its compile time.
"""

import argparse
import dataclasses
import time

import torch
from torch import nn

from mnistlab import bench, data, optim, resident
from mnistlab import train as training
from mnistlab.config import TrainConfig
from mnistlab.evaluate import evaluate


def epoch(config, tensors) -> float:
    return bench.training_epoch(config, tensors)


def best_of(function, repeats=3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


OPTIMIZERS = ("kernel", "written out", "fused", "foreach")


def in_turns(functions: dict, repeats=5) -> None:
    """Print the best of `repeats` for each function, taken in turns so that a slow spell on a
    shared machine lands on all of them alike."""
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            times[name].append(function())
    for name, values in times.items():
        print(f"  {name:26}  {min(values):6.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", help="where the data is (default: found or fetched as mnistlab does)"
    )
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = parser.parse_args()
    dataset = data.load("mnist", args.data_dir)
    config = TrainConfig(epochs=1)
    device = torch.device("cpu")
    tensors = resident.prepare(config, dataset, device)
    epoch(config, tensors)  # warm-up

    print("batch size (module, lr scaled by sqrt): s/epoch, matmul bound, ratio")
    for size in (128, 256, 512, 1024):
        variant = dataclasses.replace(
            config, batch_size=size, lr=config.lr * (size / config.batch_size) ** 0.5
        )
        seconds = epoch(variant, tensors)
        bound = bench.matmul_bound(config.layer_sizes, 60_000, size, device)
        print(f"  {size:5}  {seconds:6.3f}  {bound:6.3f}  {seconds / bound:5.2f}")

    print("threads: s/epoch")
    threads = torch.get_num_threads()
    for count in sorted({1, threads}):
        torch.set_num_threads(count)
        print(f"  {count:5}  {epoch(config, tensors):6.3f}")
    torch.set_num_threads(threads)

    print("precision: s/epoch")
    for precision in ("fp32", "bf16"):
        seconds = epoch(dataclasses.replace(config, precision=precision), tensors)
        print(f"  {precision:5}  {seconds:6.3f}")

    print("optimizer (Adam, module): s/epoch, best of 5 taken in turns")

    def with_optimizer(kind):
        model, _ = training.build(config, device)
        parameters = [value for _, value in model.named_parameters()]
        if kind in ("kernel", "written out"):
            optimizer = optim.build(config, model, fused=kind == "kernel")
        else:
            optimizer = torch.optim.Adam(
                parameters, lr=config.lr, betas=config.betas, **{kind: True}
            )
        return training.train(config, tensors, model=model, optimizer=optimizer).history[0][
            "seconds"
        ]

    in_turns({kind: lambda kind=kind: with_optimizer(kind) for kind in OPTIMIZERS})

    print("ReLU (module): s/epoch, best of 5 taken in turns")

    def with_relu(kind):
        model, optimizer = training.build(config, device)
        if kind == "not in place":
            model.activation = nn.ReLU()
        return training.train(config, tensors, model=model, optimizer=optimizer).history[0][
            "seconds"
        ]

    in_turns({kind: lambda kind=kind: with_relu(kind) for kind in ("in place", "not in place")})

    print("gathering one epoch of batches (no training): s")
    order = torch.randperm(60_000)

    def fresh():
        for start in range(0, 60_000, config.batch_size):
            index = order[start : start + config.batch_size]
            tensors.x_train[index], tensors.y_train[index]

    def reused():
        for _ in resident.batches(
            tensors.x_train, tensors.y_train, config.batch_size, torch.Generator().manual_seed(0)
        ):
            pass

    print(f"  fresh tensors  {best_of(fresh):6.3f}")
    print(f"  reused buffers {best_of(reused):6.3f}")

    print("evaluating the 10,000 test images: s")
    model, _ = training.build(config, device)
    for size in (100, 1_000, 10_000):
        seconds = best_of(
            lambda size=size: evaluate(model, tensors.x_test, tensors.y_test, batch_size=size)
        )
        print(f"  batch {size:6}  {seconds:6.3f}")

    if args.compile:
        model, optimizer = training.build(config, device)
        compiled = torch.compile(model)
        start = time.perf_counter()
        training.train(config, tensors, model=compiled, optimizer=optimizer)
        first = time.perf_counter() - start
        start = time.perf_counter()
        training.train(config, tensors, model=compiled, optimizer=optimizer)
        print(
            f"torch.compile: first epoch with compile {first:.1f} s, "
            f"then {time.perf_counter() - start:.3f} s/epoch"
        )


if __name__ == "__main__":
    main()
