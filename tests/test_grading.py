"""The course's side: the assignment ships as an otter-grader master notebook; `otter assign`
makes the student notebook and the autograder; a student's notebook runs with public tests
that print mnistlab's diagnosis; `mnistlab grade` grades a class offline (no MNIST files, no
network, no Docker), each submission in its own processes with a time limit."""

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from mnistlab.cli import main

ROOT = Path(__file__).parents[1]
MASTER = ROOT / "assignments" / "mlp" / "mlp.ipynb"
QUESTIONS = {"q1": 4, "q2": 3, "q3": 3, "q4": 3, "q5": 2}

pytestmark = pytest.mark.slow


def _otter(*args, cwd) -> subprocess.CompletedProcess:
    otter = Path(sys.executable).parent / "otter"
    done = subprocess.run([str(otter), *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def _once(tmp_path_factory, worker_id, name: str, make) -> Path:
    """make(folder) once for the session, shared by the test processes under a file lock."""
    from filelock import FileLock

    from conftest import shared_folder

    shared = shared_folder(tmp_path_factory, worker_id)
    folder = shared / f"grading-{name}"
    with FileLock(str(shared / f"grading-{name}.lock")):
        if not (folder / ".made").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            (folder / ".made").write_text("")
    return folder


@pytest.fixture(scope="session")
def assigned(tmp_path_factory, worker_id) -> Path:
    """`otter assign` on the shipped master notebook, as a teacher runs it."""
    return _once(
        tmp_path_factory, worker_id, "dist",
        lambda dist: _otter("assign", MASTER.name, str(dist), cwd=MASTER.parent),
    )  # fmt: skip


def _autograder(dist: Path) -> Path:
    (zipped,) = (dist / "autograder").glob("mlp-autograder_*.zip")
    return zipped


def _kernel_env(extra: dict) -> dict:
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        **extra,
    }


def _execute(notebook: Path, env: dict) -> dict:
    """Run a notebook top to bottom in a kernel on this Python, as a student's Jupyter does;
    the executed notebook is written back."""
    import nbformat
    from nbclient import NotebookClient

    content = nbformat.read(notebook, as_version=4)
    previous = dict(os.environ)
    os.environ.update(env)
    try:
        NotebookClient(
            content, timeout=300, kernel_name="python3", allow_errors=True,
            resources={"metadata": {"path": str(notebook.parent)}},
        ).execute()  # fmt: skip
    finally:
        os.environ.clear()
        os.environ.update(previous)
    nbformat.write(content, notebook)
    return content


def _printed(content) -> list[str]:
    return [
        "".join(
            output.get("text", "") or output.get("data", {}).get("text/plain", "")
            for output in cell.get("outputs", [])
        )
        for cell in content["cells"]
        if cell["cell_type"] == "code"
    ]


@pytest.fixture(scope="session")
def right(assigned, tmp_path_factory, worker_id) -> Path:
    """A right submission made as a student makes one: the solution notebook run top to bottom
    with the data on the machine (the training cell trains and saves mlp.pt), its last cell
    writing the zip to hand in."""
    real = os.environ.get("MNISTLAB_TEST_DATA")
    if not real:  # as the real_data fixture: a failure in CI, a skip on a laptop without it
        if os.environ.get("CI"):
            pytest.fail("MNISTLAB_TEST_DATA is not set: CI must run the real-data tests")
        pytest.skip("set MNISTLAB_TEST_DATA: the student's training reads MNIST")

    def make(work: Path) -> None:
        shutil.copy(assigned / "autograder" / "mlp.ipynb", work / "mlp.ipynb")
        env = {"MNISTLAB_DATA_DIR": real, "MNISTLAB_CACHE_DIR": str(work / "cache")}
        content = _execute(work / "mlp.ipynb", env)
        printed = "\n".join(_printed(content))
        for question in QUESTIONS:
            assert f"{question} results: All test cases passed!" in printed, printed[-3000:]

    (handed_in,) = _once(tmp_path_factory, worker_id, "student", make).glob("mlp_*.zip")
    return handed_in


def _variant(right: Path, folder: Path, name: str, change) -> Path:
    """The right submission with its notebook changed by `change(notebook dict)`."""
    with zipfile.ZipFile(right) as archive:
        notebook = json.loads(archive.read("mlp.ipynb"))
        weights = archive.read("mlp.pt")
    change(notebook)
    path = folder / name
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mlp.ipynb", json.dumps(notebook))
        archive.writestr("mlp.pt", weights)
    return path


def _replace(old: str, new: str):
    def change(notebook):
        sources = ["".join(cell["source"]) for cell in notebook["cells"]]
        assert any(old in source for source in sources), old
        for cell, source in zip(notebook["cells"], sources, strict=True):
            cell["source"] = source.replace(old, new)

    return change


SOFTMAX = _replace(
    "return self.fc2(F.relu(self.fc1(x)))", "return F.softmax(self.fc2(F.relu(self.fc1(x))), 1)"
)
NOT_LEAVES = _replace(
    "(torch.randn(784, 500) * 0.01).requires_grad_()",
    "torch.randn(784, 500, requires_grad=True) * 0.01",
)


def _both(*changes):
    def change(notebook):
        for each in changes:
            each(notebook)

    return change


def _hangs(notebook):
    cell = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None}
    notebook["cells"].insert(3, {**cell, "source": "import time\ntime.sleep(3600)"})


def _crashes(notebook):
    cell = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None}
    notebook["cells"].insert(3, {**cell, "source": "import os\nos._exit(1)"})


def _untagged(notebook):
    """A student who removed the training cell's otter_ignore tag: grading runs it."""
    for cell in notebook["cells"]:
        cell["metadata"].pop("tags", None)


def _foreign_kernel(notebook):
    notebook["metadata"]["kernelspec"] = {
        "name": "my-torch-env", "display_name": "Python (my-torch-env)", "language": "python"
    }  # fmt: skip


def test_otter_assign_makes_the_student_notebook_and_an_autograder_for_cpu_torch(assigned):
    import nbformat

    student = nbformat.read(assigned / "student" / "mlp.ipynb", as_version=4)
    sources = [cell.source for cell in student.cells]
    assert not any("requires_grad_()" in s and "self.W1 =" in s for s in sources)  # no answers
    assert any(s.startswith('grader.check("q1")') for s in sources)
    training = [
        c for c in student.cells if c.cell_type == "code" and "mnistlab.load_data()" in c.source
    ]
    assert training and training[0].metadata.get("tags") == ["otter_ignore"]
    with zipfile.ZipFile(_autograder(assigned)) as archive:
        names = set(archive.namelist())
        environment = archive.read("environment.yml").decode()
        graded = [archive.read(f"tests/{q}.py").decode() for q in QUESTIONS]
        config = json.loads(archive.read("otter_config.json"))
    assert {f"tests/{q}.py" for q in QUESTIONS} <= names
    # torch.optim's first step imports torch._dynamo, ~2 s of every submission's grading
    assert not any("torch.optim" in test for test in graded)
    assert "from mnistlab.optim import SGD" in graded[list(QUESTIONS).index("q3")]
    assert {"run_autograder", "setup.sh", "environment.yml"} <= names
    assert "- python=3.11" in environment
    # PyTorch's CPU build from its CPU index, never a bare torch (a CUDA build of several GB)
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in environment
    torches = [line.strip() for line in environment.splitlines() if "torch" in line.split("/")[0]]
    assert torches == ["- torch==2.13.0+cpu"], torches
    assert "nvidia" not in environment and "mnistlab==" in environment
    assert config["assignment_name"] == "mlp" and config["pdf"] is False


def test_a_student_sees_mnistlabs_diagnosis_and_fix_from_grader_check(right, tmp_path):
    # The softmax and non-leaf mistakes, run as the student runs the notebook (the training
    # cell left out: it trained the right model, whose mlp.pt is beside it).
    folder = tmp_path / "student"
    folder.mkdir()
    submission = _variant(right, tmp_path, "both.zip", SOFTMAX)
    with zipfile.ZipFile(submission) as archive:
        archive.extractall(folder)
    notebook = json.loads((folder / "mlp.ipynb").read_text())
    NOT_LEAVES(notebook)
    notebook["cells"] = [
        cell
        for cell in notebook["cells"]
        if "otter_ignore" not in cell["metadata"].get("tags", [])
        and "grader.export" not in "".join(cell["source"])
    ]
    (folder / "mlp.ipynb").write_text(json.dumps(notebook))
    offline = {"MNISTLAB_CACHE_DIR": str(tmp_path / "empty"), "MNISTLAB_DATA_DIR": ""}
    printed = "\n".join(_printed(_execute(folder / "mlp.ipynb", offline)))
    assert "W1 is not a leaf tensor" in printed
    assert "fix: create it first, then mark it" in printed
    assert "CrossEntropyLoss applies softmax itself: it expects logits" in printed
    assert "fix: return the scores before the softmax" in printed
    assert "q3 results: All test cases passed!" in printed


@pytest.fixture
def offline(tmp_path, monkeypatch) -> Path:
    """No MNIST files on the machine and no mirror reachable, as a grader's machine may be; the
    grading's temporary folders (mnistlab-*) go to the folder returned."""
    monkeypatch.setenv("MNISTLAB_MIRROR", "http://127.0.0.1:9/")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("TMPDIR", str(scratch))  # (and the grading processes')
    return scratch


def _canvas(path: Path, made: dict[str, Path]) -> Path:
    """A class as Canvas hands it out: one zip of everyone's files."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, made_path in made.items():
            archive.write(made_path, name)
    return path


def _gradebook(out: Path) -> dict[str, dict]:
    with open(out / "final_grades.csv", newline="") as handle:
        return {row["file"]: row for row in csv.DictReader(handle)}


def test_a_class_is_graded_offline_each_submission_scored_and_none_lost(
    assigned, right, tmp_path, offline, capsys
):
    folder = tmp_path / "made"
    folder.mkdir()
    made = {
        "right.zip": right,
        # both of the assignment's mistakes in one notebook: each question scored apart
        "mistakes.zip": _variant(right, folder, "mistakes.zip", _both(SOFTMAX, NOT_LEAVES)),
        "untagged.zip": _variant(right, folder, "untagged.zip", _untagged),
        "crashes.zip": _variant(right, folder, "crashes.zip", _crashes),
    }
    canvas = _canvas(tmp_path / "submissions.zip", made)
    with zipfile.ZipFile(canvas, "a") as archive:
        # a Gradescope-style folder of one student's files, whose notebook names the
        # student's own kernel ("my-torch-env")
        foreign = _variant(right, folder, "foreign-kernel.zip", _foreign_kernel)
        with zipfile.ZipFile(foreign) as handed_in:
            for member in ("mlp.ipynb", "mlp.pt"):
                archive.writestr(f"submission_0001/{member}", handed_in.read(member))
    out = tmp_path / "grades"
    argv = ["grade", str(_autograder(assigned)), str(canvas), "--out", str(out)]
    code = main([*argv, "--jobs", "2", "--time-limit", "40"])
    printed = capsys.readouterr()
    assert code == 1, printed.err  # one could not be graded: named, scored 0
    rows = _gradebook(out)
    expected = {
        "right.zip": 15, "submission_0001": 15,
        # its training cell fails here (no data): the tests read the mlp.pt handed in
        "untagged.zip": 15,
        "mistakes.zip": 8,  # q1 (leaves, 4 points) and q2 (logits, 3 points)
        "crashes.zip": 0,
    }  # fmt: skip
    assert set(rows) == {"points-per-question", *expected}
    assert {q: float(rows["points-per-question"][q]) for q in QUESTIONS} == QUESTIONS
    for name, points in expected.items():
        assert float(rows[name]["total_points_earned"]) == points, rows[name]
    scored = {q: float(rows["mistakes.zip"][q]) for q in QUESTIONS}
    assert scored == {**QUESTIONS, "q1": 0, "q2": 0}
    assert "Kernel died" in rows["crashes.zip"]["grading_status"]
    assert rows["right.zip"]["grading_status"] == "Completed"
    for name in expected:
        assert f"{name}: " in printed.out
        assert (out / "summaries" / f"{name}.txt").is_file()
    assert "not graded (0): crashes.zip" in printed.err
    # each student's results in otter's Gradescope form
    results = json.loads((out / "results" / "mistakes.zip.json").read_text())
    scores = {t["name"]: t.get("score") for t in results["tests"] if "max_score" in t}
    assert scores == {**QUESTIONS, "q1": 0, "q2": 0}
    assert not list(offline.glob("mnistlab-*"))


def test_a_submission_that_hangs_is_stopped_at_the_limit_and_leaves_nothing(
    assigned, right, tmp_path, offline, capsys
):
    # Apart from the class above, so that its limit can be short: the right submissions there
    # need a limit a busy machine keeps to. A file that is not a notebook is graded beside it.
    (tmp_path / "not-json.ipynb").write_text("{ this is not a notebook")
    made = {
        "hangs.zip": _variant(right, tmp_path, "hangs.zip", _hangs),
        "not-json.ipynb": tmp_path / "not-json.ipynb",
    }
    canvas = _canvas(tmp_path / "submissions.zip", made)
    out = tmp_path / "grades"
    argv = ["grade", str(_autograder(assigned)), str(canvas), "--out", str(out)]
    code = main([*argv, "--jobs", "2", "--time-limit", "5"])
    printed = capsys.readouterr()
    assert code == 1, printed.err
    rows = _gradebook(out)
    assert set(rows) - {"points-per-question"} == set(made)
    assert all(float(rows[name]["total_points_earned"]) == 0 for name in made)
    assert "timed out after 5 s" in rows["hangs.zip"]["grading_status"]
    assert "not a notebook" in rows["not-json.ipynb"]["grading_status"]
    assert "not graded (0): " in printed.err and "hangs.zip" in printed.err
    for name in made:
        assert f"{name}: " in printed.out
        assert (out / "summaries" / f"{name}.txt").is_file()
    # nothing of the hanging submission is left, on disk (its copy, its results) or running
    assert not list(offline.glob("mnistlab-*"))
    left = subprocess.run(["pgrep", "-f", "time.sleep|ipykernel_launcher"], capture_output=True)
    kernels = [line for line in left.stdout.decode().split() if line]
    assert not [pid for pid in kernels if _mine(int(pid), out)], kernels


def _mine(pid: int, out: Path) -> bool:
    """A process of this grading (its working folder under the grading's temp folders)."""
    try:
        return "mnistlab-grad" in os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False


def test_grading_refuses_what_is_not_a_class_in_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "ag.zip").write_bytes(b"not a zip")
    assert main(["grade", str(tmp_path / "ag.zip"), str(tmp_path / "notes.txt")]) == 2
    assert "not an autograder zip" in capsys.readouterr().err
    assert main(["grade", str(tmp_path / "missing.zip"), str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err
