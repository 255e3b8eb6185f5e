"""Seconds and test accuracy per epoch: scikit-learn's MLPClassifier against mnistlab, on the
same 784-500-10 architecture, in one process.

    pip install -e '.[bench]'
    python benchmarks/sklearn_compare.py --data-dir ../shared/data [--epochs 3]
"""

import argparse
import time
import warnings

import numpy as np
import torch

from mnistlab import data
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
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--sklearn-batch-size", type=int, default=200, help="scikit-learn's own default is 200"
    )
    args = parser.parse_args()
    dataset = data.load("mnist", args.data_dir, download_missing=False)
    config = TrainConfig(epochs=args.epochs)
    tensors = training.prepare(config, dataset, torch.device("cpu"))
    ours = [(r["seconds"], r["test_accuracy"]) for r in training.train(config, tensors).history]
    theirs = sklearn_epochs(dataset, args.epochs, args.sklearn_batch_size)
    print(f"{'epoch':>5}  {'mnistlab s':>10}  {'acc':>6}  {'sklearn s':>9}  {'acc':>6}")
    for epoch, ((s1, a1), (s2, a2)) in enumerate(zip(ours, theirs, strict=True), 1):
        print(f"{epoch:5}  {s1:10.2f}  {100 * a1:5.2f}%  {s2:9.2f}  {100 * a2:5.2f}%")
    mean_ours = sum(s for s, _ in ours) / len(ours)
    mean_theirs = sum(s for s, _ in theirs) / len(theirs)
    print(
        f"mnistlab (batch {config.batch_size}) is {mean_theirs / mean_ours:.1f}x faster per "
        f"epoch than MLPClassifier (batch {args.sklearn_batch_size})"
    )


if __name__ == "__main__":
    main()
