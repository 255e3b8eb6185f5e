"""Seconds and test accuracy per epoch: scikit-learn's MLPClassifier against mnistlab, on the
same 784-500-10 architecture, in one process.

    pip install -e '.[bench]'
    python benchmarks/sklearn_compare.py [--data-dir DIR] [--epochs 3]
"""

import argparse
import time
import warnings

import numpy as np
import torch

from mnistlab import data, resident
from mnistlab import train as training
from mnistlab.config import TrainConfig


def sklearn_epochs(dataset, epochs: int, batch_size: int):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x_train = dataset.train.images.reshape(-1, 784).numpy() / 255.0
    x_test = dataset.test.images.reshape(-1, 784).numpy() / 255.0
    y_train, y_test = dataset.train.labels.numpy(), dataset.test.labels.numpy()
    model = MLPClassifier(hidden_layer_sizes=(500,), batch_size=batch_size, random_state=0)
    rows = []
    for _ in range(epochs):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.partial_fit(x_train, y_train, classes=np.arange(10))
        seconds = time.perf_counter() - start
        rows.append((seconds, model.score(x_test, y_test)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", help="where the data is (default: found or fetched as mnistlab does)"
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--sklearn-batch-size",
        type=int,
        nargs="*",
        default=[64, 200],
        help="batch sizes for MLPClassifier (its own default is 200)",
    )
    args = parser.parse_args()
    dataset = data.load("mnist", args.data_dir)
    config = TrainConfig(epochs=args.epochs)
    tensors = resident.prepare(config, dataset, torch.device("cpu"))
    columns = {
        f"mnistlab b{config.batch_size}": [
            (r["seconds"], r["test_accuracy"]) for r in training.train(config, tensors).history
        ]
    }
    for batch_size in args.sklearn_batch_size:
        columns[f"sklearn b{batch_size}"] = sklearn_epochs(dataset, args.epochs, batch_size)
    print("epoch" + "".join(f"  {name:>20}" for name in columns))
    for epoch in range(args.epochs):
        cells = "".join(
            f"  {rows[epoch][0]:8.2f} s {100 * rows[epoch][1]:6.2f}%  " for rows in columns.values()
        )
        print(f"{epoch + 1:5}{cells}")
    mean = {name: sum(s for s, _ in rows) / len(rows) for name, rows in columns.items()}
    ours = mean.pop(f"mnistlab b{config.batch_size}")
    for name, seconds in mean.items():
        print(f"mnistlab is {seconds / ours:.1f}x faster per epoch than {name}")


if __name__ == "__main__":
    main()
