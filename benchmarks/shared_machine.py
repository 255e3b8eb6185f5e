"""Training time on a machine that other programs use: quiet, beside one busy process per
core, and beside one for half the cores, in one run.

    python benchmarks/shared_machine.py [--data-dir FOLDER] [--rounds 2]

The background load is `python -c "while True: pass"`, started before each measured run and
stopped after it (a student's browser tab, another sweep, CI's other job). For the default
recipe and the assignment recipe (batch 64), it runs `mnistlab train --no-plots` as a user
would: with mnistlab's own thread choice, with `--threads 1`, and with every core
(`--threads N`, torch's own default before mnistlab chose), and prints the training seconds
(the sum of the per-epoch times the command prints) for each, the median over the rounds.

With --mid-run, the case of load that comes and goes while a run trains: a 6-epoch default run
with one busy process started as soon as epoch 1 is printed and stopped when epoch 4 is, with
mnistlab's choice, with `--threads 1`, and quiet (no load); each epoch's seconds (and the
thread count it used, where the run folder records one), the median over the rounds.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

EPOCH = re.compile(r"^epoch \d+/\d+ .*?([\d.]+) s ")
RECIPES = ("default", "assignment")


def busy(count: int) -> list[subprocess.Popen]:
    """`count` processes that each keep one core busy until stopped."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    time.sleep(1.0)  # running, and seen as running, before the measured command starts
    return loops


def training_seconds(recipe: str, threads: int | None, data_dir: str | None) -> float:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "mnistlab", "train", "--recipe", recipe, "--no-plots"]
        command += ["--out", os.path.join(out, "run"), "--quiet"]
        command += ["--data-dir", data_dir] if data_dir else []
        command += ["--threads", str(threads)] if threads else []
        done = subprocess.run(command, capture_output=True, text=True, check=True)
    return sum(float(m.group(1)) for m in map(EPOCH.match, done.stdout.splitlines()) if m)


def mid_run(threads: int | None, data_dir: str | None, load: bool) -> list[tuple[float, int]]:
    """Per epoch (seconds, threads) of a 6-epoch default run; with `load`, one busy process
    from the end of epoch 1 to the end of epoch 4."""
    import json

    with tempfile.TemporaryDirectory() as out:
        folder = os.path.join(out, "run")
        command = [sys.executable, "-m", "mnistlab", "train", "--epochs", "6", "--no-plots"]
        command += ["--out", folder, "--quiet"]
        command += ["--data-dir", data_dir] if data_dir else []
        command += ["--threads", str(threads)] if threads else []
        loops: list[subprocess.Popen] = []
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as run:
            for line in run.stdout:
                if load and line.startswith("epoch 1/"):
                    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"])]
                if line.startswith("epoch 4/"):
                    for loop in loops:
                        loop.kill()
                        loop.wait()
        with open(os.path.join(folder, "metrics.jsonl")) as handle:
            records = [json.loads(line) for line in handle if line.strip()]
    return [(r["seconds"], r.get("threads", 0)) for r in records]


def main_mid_run(args) -> None:
    cases = {
        "mnistlab's choice, load in epochs 2-4": (None, True),
        "--threads 1, load in epochs 2-4": (1, True),
        "mnistlab's choice, quiet": (None, False),
    }
    mid_run(1, args.data_dir, False)  # the decoded-data cache, warm
    results = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, (threads, load) in cases.items():  # in turns, so drift hits each alike
            results[name].append(mid_run(threads, args.data_dir, load))
    print(f"per-epoch seconds (threads used), median of {args.rounds} rounds")
    print("| case | " + " | ".join(f"epoch {n}" for n in range(1, 7)) + " | epochs 2-6 |")
    print("| --- |" + " ---: |" * 7)
    for name, rounds in results.items():
        cells = []
        for epoch in range(6):
            seconds = statistics.median(r[epoch][0] for r in rounds)
            used = sorted({r[epoch][1] for r in rounds})
            shown = f" ({'/'.join(map(str, used))})" if any(used) else ""
            cells.append(f"{seconds:.2f}{shown}")
        rest = statistics.median(sum(s for s, _ in r[1:]) for r in rounds)
        print(f"| {name} | " + " | ".join(cells) + f" | {rest:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder holding MNIST (default: as mnistlab finds it)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mid-run", action="store_true", help="load that comes and goes")
    args = parser.parse_args()
    if args.mid_run:
        main_mid_run(args)
        return
    cores = len(os.sched_getaffinity(0))
    loads = {"quiet": 0, f"{cores} busy": cores}
    if cores > 2:
        loads[f"{cores // 2} busy"] = cores // 2
    elif cores == 2:
        loads = {"quiet": 0, "1 busy": 1, "2 busy": 2}
    choices = {"mnistlab's choice": None, "--threads 1": 1, f"--threads {cores}": cores}
    training_seconds("default", 1, args.data_dir)  # the decoded-data cache, warm
    print(f"{cores} cores; training seconds, median of {args.rounds} rounds")
    print("| recipe | load | " + " | ".join(choices) + " |")
    print("| --- | --- |" + " ---: |" * len(choices))
    for recipe in RECIPES:
        for load, count in loads.items():
            times = {name: [] for name in choices}
            for _ in range(args.rounds):
                for name, threads in choices.items():  # in turns, so drift hits each alike
                    loops = busy(count)
                    try:
                        times[name].append(training_seconds(recipe, threads, args.data_dir))
                    finally:
                        for loop in loops:
                            loop.kill()
                            loop.wait()
            cells = " | ".join(f"{statistics.median(t):.2f}" for t in times.values())
            print(f"| {recipe} | {load} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
