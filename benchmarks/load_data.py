"""Time to load MNIST from the .gz files (cold decoded cache) and from the decoded cache.

    python benchmarks/load_data.py [--data-dir DIR] [--repeat 5]

Each timing runs in a fresh process so that nothing is shared but the files on disk.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, sys, time
start = time.perf_counter()
from mnistlab import data
imported = time.perf_counter()
dataset = data.load("mnist", sys.argv[1])
done = time.perf_counter()
print(json.dumps({"load": done - imported, "import": imported - start}))
"""


def run(data_dir: str, cache: str) -> dict:
    env = {"MNISTLAB_CACHE_DIR": cache, "PATH": "/usr/bin:/bin"}
    output = subprocess.run(
        [sys.executable, "-c", CHILD, data_dir], env=env, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", help="where the data is (default: found or fetched as mnistlab does)"
    )
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    # The .gz files, found (or fetched) as mnistlab finds them: each load below decodes them.
    from mnistlab import data

    folder = str(Path(data.locate("mnist", args.data_dir)["train_images"]).parent)
    cold, warm = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as cache:
            cold.append(run(folder, cache)["load"])  # empty cache: gunzip + parse
            warm.append(run(folder, cache)["load"])  # the decoded cache
    for name, times in (("from .gz files", cold), ("from decoded cache", warm)):
        print(
            f"load MNIST {name:20} {statistics.median(times):.3f} s median of {len(times)} "
            f"(min {min(times):.3f}, max {max(times):.3f})"
        )
    print(f"speed-up: {statistics.median(cold) / statistics.median(warm):.1f}x")


if __name__ == "__main__":
    main()
