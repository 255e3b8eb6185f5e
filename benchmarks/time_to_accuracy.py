"""Wall-clock time from process start until `mnistlab train` first reaches a test accuracy.

    python benchmarks/time_to_accuracy.py [--data-dir DIR] [--repeat 3]

Runs the real command in a fresh process each time (torch import and data load included),
reads its per-epoch lines as they are printed, and reports the median over the repeats of:
training seconds up to the first epoch at the target, wall seconds from process start to
that line, and wall seconds from start to exit. The decoded-data cache is warm after the
first run, as it is for any user's second run.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

# MNIST's bar is the project's; Fashion-MNIST's is what the default two epochs reach
# (88.0% takes four: pass --epochs 4 and --dataset fashion-mnist to see it).
TARGETS = {"mnist": 98.0, "fashion-mnist": 87.0}
EPOCH = re.compile(r"^epoch (\d+)/\d+ .* test acc ([\d.]+)% .*?([\d.]+) s ")


def once(dataset: str, target: float, data_dir: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable,
            "-m",
            "mnistlab",
            "train",
            "--dataset",
            dataset,
            *(["--data-dir", data_dir] if data_dir else []),
            "--out",
            os.path.join(out, "run"),
            "--quiet",
            *extra,
        ]
        start = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        reached, training, accuracy = None, 0.0, 0.0
        for line in process.stdout:
            match = EPOCH.match(line)
            if match:
                accuracy = float(match[2])
                training += float(match[3])
                if reached is None and accuracy >= target:
                    reached = {
                        "epoch": int(match[1]),
                        "training_s": training,
                        "wall_s": time.perf_counter() - start,
                    }
        process.wait()
        return {
            "reached": reached,
            "exit_s": time.perf_counter() - start,
            "final_accuracy": accuracy,
            "returncode": process.returncode,
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", help="where the data is (default: found or fetched as mnistlab does)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dataset", nargs="*", default=list(TARGETS))
    parser.add_argument("extra", nargs="*", help="flags passed on to mnistlab train")
    args = parser.parse_args()
    for dataset in args.dataset:
        target = TARGETS[dataset]
        runs = [once(dataset, target, args.data_dir, args.extra) for _ in range(args.repeat)]
        hits = [run["reached"] for run in runs if run["reached"]]
        print(
            f"{dataset}: target {target}% test accuracy, {len(hits)}/{len(runs)} runs reached it;"
            f" final accuracies {[run['final_accuracy'] for run in runs]}"
        )
        if hits:
            print(
                f"  epoch reached (median)           {statistics.median(h['epoch'] for h in hits)}"
            )
            print(
                f"  training seconds to target       "
                f"{statistics.median(h['training_s'] for h in hits):.2f}"
            )
            print(
                f"  process start to target (wall s) "
                f"{statistics.median(h['wall_s'] for h in hits):.2f}"
            )
        print(
            f"  process start to exit (wall s)   "
            f"{statistics.median(run['exit_s'] for run in runs):.2f}"
        )


if __name__ == "__main__":
    main()
