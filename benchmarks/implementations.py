"""Seconds per epoch and test accuracy after each epoch, for each implementation.

    python benchmarks/implementations.py [--data-dir DIR] [--recipe assignment]

The three implementations start from the same weights and see the same batches.
"""

import argparse
import dataclasses

import torch

from mnistlab import data, resident
from mnistlab import train as training
from mnistlab.config import TrainConfig, describe
from mnistlab.settings import RECIPES


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", help="where the data is (default: found or fetched as mnistlab does)"
    )
    parser.add_argument("--recipe", default="default", choices=sorted(RECIPES))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--impl", nargs="*", default=["module", "scratch", "manual"])
    args = parser.parse_args()
    config = TrainConfig(**{**RECIPES[args.recipe], "epochs": args.epochs})
    dataset = data.load(config.dataset, args.data_dir)
    tensors = resident.prepare(config, dataset, torch.device("cpu"))
    print(f"{describe(config)}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    header = "  ".join(f"epoch {e:<9}" for e in range(1, config.epochs + 1))
    print(f"{'impl':8}  {header}")
    for impl in args.impl:
        result = training.train(dataclasses.replace(config, impl=impl), tensors)
        cells = "  ".join(
            f"{r['seconds']:4.2f}s {100 * r['test_accuracy']:5.2f}%" for r in result.history
        )
        print(f"{impl:8}  {cells}", flush=True)


if __name__ == "__main__":
    main()
