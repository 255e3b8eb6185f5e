"""`--recipe assignment` beside the course notebook's own training loop, epoch by epoch.

    python benchmarks/notebook_match.py [--data-dir DIR] [--seeds 0 1 2]

The notebook's loop is rebuilt without torchvision (bench.NotebookDataset: one PIL image at
a time, ToTensor, Normalize((0.5,), (0.5,)), a shuffling DataLoader at batch 64, SGD at 0.01,
CrossEntropyLoss, nn.Linear's own initialisation). Both are run for each seed and their test
accuracy after each epoch is printed as mean ± std over the seeds: the recipe matches the
notebook when the two agree within the seeds' spread.
"""

import argparse
import dataclasses
import statistics

import torch
from torch import nn

from mnistlab import bench, data, resident
from mnistlab import train as training
from mnistlab.evaluate import evaluate
from mnistlab.settings import recipe


def notebook_run(dataset, epochs: int, seed: int) -> list[float]:
    """The notebook's loop; test accuracy after each epoch."""
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        bench.NotebookDataset(dataset.train), batch_size=64, shuffle=True, generator=generator
    )
    torch.manual_seed(seed)  # nn.Linear's own initialisation, as the notebook has it
    model = nn.Sequential(nn.Linear(784, 500), nn.ReLU(), nn.Linear(500, 10))
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x_test = dataset.test.images.reshape(-1, 784).float().div(255).sub(0.5).div(0.5)
    accuracies = []
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()
        accuracies.append(evaluate(model, x_test, dataset.test.labels).accuracy)
    return accuracies


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", help="where the data is (default: found or fetched as mnistlab does)"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    dataset = data.load("mnist", args.data_dir)
    config = recipe("assignment")
    tensors = resident.prepare(config, dataset, torch.device("cpu"))
    ours, theirs = [], []
    for seed in args.seeds:
        result = training.train(dataclasses.replace(config, seed=seed), tensors)
        ours.append([record["test_accuracy"] for record in result.history])
        theirs.append(notebook_run(dataset, config.epochs, seed))
        print(f"seed {seed}: recipe {ours[-1]}, notebook {theirs[-1]}", flush=True)

    def cell(runs, epoch):
        values = [100 * run[epoch] for run in runs]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.fmean(values):.2f} ± {spread:.2f}%"

    print(f"test accuracy after each epoch, mean ± std over seeds {args.seeds}")
    print(f"{'epoch':>5}  {'--recipe assignment':>20}  {'the notebook loop':>20}")
    for epoch in range(config.epochs):
        print(f"{epoch + 1:>5}  {cell(ours, epoch):>20}  {cell(theirs, epoch):>20}")


if __name__ == "__main__":
    main()
