"""Grading a class: seconds per submission, and a class of 30 graded 1 and 2 at once.

    python benchmarks/grading.py [--data-dir DIR] [--class-size 30]

As a course does it: `otter assign` on the shipped master notebook (timed); a student's run of
the solution notebook with the data (its training saves mlp.pt, its last cell writes the zip
to hand in); a class of --class-size submissions made from it (right ones, softmax before the
loss, weights that are not leaves, a foreign kernel name, in turn); then `mnistlab grade` on
the class with --jobs 1 and --jobs 2, offline (no MNIST files where it looks, no mirror
reachable), each in one spell. Also `mnistlab.check` offline, in a fresh process, timed.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[1]
MASTER = ROOT / "assignments" / "mlp" / "mlp.ipynb"
BIN = Path(sys.executable).parent
CHANGES = {
    "right": None,
    "softmax": (
        "return self.fc2(F.relu(self.fc1(x)))",
        "return F.softmax(self.fc2(F.relu(self.fc1(x))), 1)",
    ),
    "not-leaves": (
        "(torch.randn(784, 500) * 0.01).requires_grad_()",
        "torch.randn(784, 500, requires_grad=True) * 0.01",
    ),
    "foreign-kernel": "my-torch-env",
}


def student_run(dist: Path, work: Path, data_dir: str | None) -> Path:
    """The solution notebook run top to bottom as a student runs it; the zip it hands in."""
    import nbformat
    from nbclient import NotebookClient

    shutil.copy(dist / "autograder" / "mlp.ipynb", work / "mlp.ipynb")
    notebook = nbformat.read(work / "mlp.ipynb", as_version=4)
    if data_dir:
        os.environ["MNISTLAB_DATA_DIR"] = data_dir
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    started = time.perf_counter()
    NotebookClient(
        notebook, timeout=600, kernel_name="python3",
        resources={"metadata": {"path": str(work)}},
    ).execute()  # fmt: skip
    seconds = time.perf_counter() - started
    print(f"the student's notebook, top to bottom with training: {seconds:.1f} s")
    os.environ.pop("MNISTLAB_DATA_DIR", None)
    (handed_in,) = work.glob("mlp_*.zip")
    return handed_in


def make_class(handed_in: Path, folder: Path, size: int) -> None:
    with zipfile.ZipFile(handed_in) as archive:
        notebook, weights = archive.read("mlp.ipynb").decode(), archive.read("mlp.pt")
    kinds = list(CHANGES)
    for index in range(size):
        kind = kinds[index % len(kinds)]
        content = json.loads(notebook)
        change = CHANGES[kind]
        if isinstance(change, tuple):
            for cell in content["cells"]:
                cell["source"] = "".join(cell["source"]).replace(*change)
        elif change:
            content["metadata"]["kernelspec"]["name"] = change
        with zipfile.ZipFile(folder / f"student{index:02d}-{kind}.zip", "w") as archive:
            archive.writestr("mlp.ipynb", json.dumps(content))
            archive.writestr("mlp.pt", weights)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="where the MNIST files are (for the student's run)")
    parser.add_argument("--class-size", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        dist, work, klass = scratch / "dist", scratch / "student", scratch / "class"
        work.mkdir()
        klass.mkdir()
        started = time.perf_counter()
        subprocess.run(
            [str(BIN / "otter"), "assign", MASTER.name, str(dist)], cwd=MASTER.parent,
            check=True, capture_output=True,
        )  # fmt: skip
        print(f"otter assign: {time.perf_counter() - started:.1f} s")
        handed_in = student_run(dist, work, args.data_dir)
        make_class(handed_in, klass, args.class_size)
        (autograder,) = (dist / "autograder").glob("mlp-autograder_*.zip")
        offline = {
            **os.environ,
            "MNISTLAB_CACHE_DIR": str(scratch / "empty-cache"),
            "MNISTLAB_MIRROR": "http://127.0.0.1:9/",
        }
        offline.pop("MNISTLAB_DATA_DIR", None)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import mnistlab; from mnistlab.api import build_model; "
             "assert mnistlab.check(build_model()).passed"],
            env=offline, check=True, cwd=scratch,
        )  # fmt: skip
        print(f"mnistlab.check offline (no data, no network), a fresh process: "
              f"{time.perf_counter() - started:.1f} s")  # fmt: skip
        print(f"a class of {args.class_size}, graded offline by mnistlab grade:")
        for jobs in (1, 2):
            out = scratch / f"grades-{jobs}"
            started = time.perf_counter()
            done = subprocess.run(
                [str(BIN / "mnistlab"), "grade", str(autograder), str(klass), "--out", str(out),
                 "--jobs", str(jobs)],
                env=offline, capture_output=True, text=True, cwd=scratch,
            )  # fmt: skip
            seconds = time.perf_counter() - started
            lines = [line for line in done.stdout.splitlines() if ": " in line]
            each = sorted(float(line.rsplit("(", 1)[1].split(" s)")[0]) for line in lines)
            scores = sorted({line.split(": ")[1].split(" (")[0] for line in lines})
            print(
                f"  --jobs {jobs}: {seconds:.1f} s in all, {seconds / args.class_size:.2f} s a "
                f"submission; each took {each[len(each) // 2]:.1f} s (median), "
                f"{each[-1]:.1f} s (slowest); scores {', '.join(scores)}; exit {done.returncode}"
            )


if __name__ == "__main__":
    main()
