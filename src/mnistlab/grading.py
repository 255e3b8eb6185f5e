"""Grade a class's submissions of an otter-grader assignment without Docker: each submission
graded by otter's own `otter run` path (otter.run.main) in a process of its own
(mnistlab.confined) with a time limit and a memory cap, several at once, and the results
gathered into otter's own gradebook (final_grades.csv, by otter.grade.utils).

What is mnistlab's, and nothing more: finding the submissions (a folder, a zip of a class as
Canvas or Gradescope hands it out), running a notebook saved under a kernel name of the
student's own on this Python, and scoring whatever never finished (a hang, a crash, a file
that is not a notebook) as zero with its reason, never losing it. Grading runs each student's
code as you: for a class whose code you do not trust, grade in otter's Docker containers or on
Gradescope (docs/teaching.md).
"""

import json
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mnistlab.errors import ConfigError

TIME_LIMIT = 600.0  # seconds one submission may take, as `otter grade --timeout`'s default
MEMORY = 4 << 30  # bytes of address space each of a submission's processes may take
MAX_UNPACKED = 4 << 30  # bytes a zip of submissions may unpack to
MAX_SUBMISSION = 256 << 20  # bytes one student's zip may unpack to (a notebook and mlp.pt)
SUFFIXES = (".ipynb", ".zip")


@dataclass
class Graded:
    name: str  # the submission's file or folder name: the gradebook's `file`
    score: float
    possible: float
    error: str  # why it was not graded ("" when it was): timed out, crashed, not a notebook
    seconds: float
    results: object  # otter's GradingResults


def submissions(paths: list[Path], unpack_into: Path) -> list[Path]:
    """Each submission among `paths`: a notebook, a submission zip (a notebook and its files),
    a folder of one student's files, or many of these in a folder or in a class's zip (Canvas's
    "download submissions", Gradescope's export: unpacked into `unpack_into`)."""
    found = []
    for path in paths:
        if not path.exists():
            raise ConfigError(f"{path}: no such file or folder")
        if path.is_dir():
            found += _entries(path)
        elif path.suffix == ".zip" and _holds_a_class(path):
            target = unpack_into / path.stem
            _unpack(path, target)
            found += _entries(target)
        elif path.suffix in SUFFIXES:
            found.append(path)
        else:
            raise ConfigError(
                f"{path}: not a submission; give notebooks (.ipynb), zips or folders of them"
            )
    names = [path.name for path in found]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"two submissions are named {twice[0]}: grade them in separate calls")
    if not found:
        raise ConfigError(
            f"no submissions (.ipynb, .zip or folders) in {', '.join(map(str, paths))}"
        )
    return found


def _entries(folder: Path) -> list[Path]:
    """The submissions in a folder: each notebook, zip and sub-folder holding a notebook. A
    folder that is one student's (a notebook among its files) is one submission; a folder with
    one folder in it (an export's top level) is looked into."""
    inside = sorted(p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX")))
    folders = [p for p in inside if p.is_dir()]
    if len(inside) == 1 and folders:
        return _entries(folders[0])
    notebooks = [p for p in inside if p.suffix == ".ipynb"]
    zips = [p for p in inside if p.suffix == ".zip"]
    if len(notebooks) == 1 and not zips and not folders and len(inside) > 1:
        return [folder]  # one student's notebook and files (mlp.pt), as Gradescope keeps them
    return [p for p in inside if p.suffix in SUFFIXES and p.is_file()] + [
        p for p in folders if any(p.rglob("*.ipynb"))
    ]


def _holds_a_class(path: Path) -> bool:
    """A zip of several submissions (notebooks, zips or folders), not one student's zip."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if not n.startswith("__MACOSX")]
    except (zipfile.BadZipFile, OSError):
        return False  # one student's broken zip: graded, and scored as unreadable
    notebooks = [n for n in names if n.endswith(".ipynb")]
    return len(notebooks) > 1 or any(n.endswith(".zip") for n in names)


def _unpack(path: Path, target: Path) -> None:
    try:
        _extract(path, target, MAX_UNPACKED)
    except ValueError as error:
        raise ConfigError(f"{path}: {error}; unpack it yourself and grade the folder") from None


def _extract(path: Path, target: Path, limit: int) -> None:
    """A zip unpacked into `target` (member names cannot leave it: zipfile's rule), refused
    before anything is written when it would unpack past `limit` bytes. ValueError says why."""
    try:
        with zipfile.ZipFile(path) as archive:
            size = sum(member.file_size for member in archive.infolist())
            if size > limit:
                raise ValueError(f"it unpacks to {size >> 20:,} MiB, over {limit >> 20:,} MiB")
            archive.extractall(target)
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"not a readable zip ({error})") from None


def grade(
    autograder: Path,
    paths: list[Path],
    out: Path,
    *,
    jobs: int = 1,
    time_limit: float = TIME_LIMIT,
    memory: int = MEMORY,
    on_graded: Callable[[Graded], None] | None = None,
) -> list[Graded]:
    """Grade every submission among `paths` with the otter autograder zip `autograder`,
    `jobs` at once; write out/final_grades.csv (otter's form, its first row the points per
    question), out/results/NAME.json (otter's results for Gradescope) and
    out/summaries/NAME.txt. Returns each submission's outcome, in the gradebook's order."""
    from otter.grade.utils import merge_scores_to_df

    if not zipfile.is_zipfile(autograder):
        raise ConfigError(f"{autograder}: not an autograder zip (otter assign writes one)")
    out.mkdir(parents=True, exist_ok=True)
    for folder in ("results", "summaries"):
        (out / folder).mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mnistlab-grade-") as scratch:
        found = submissions(paths, Path(scratch))

        def one(path: Path) -> Graded:
            graded = _grade_one(autograder, path, out, time_limit, memory)
            if on_graded is not None:
                on_graded(graded)
            return graded

        with ThreadPoolExecutor(max(1, jobs)) as pool:
            graded = list(pool.map(one, found))
    table = merge_scores_to_df([g.results for g in graded])
    _write(out / "final_grades.csv", table.to_csv(index=False))
    return sorted(graded, key=lambda g: g.name)


def _grade_one(autograder: Path, path: Path, out: Path, time_limit, memory) -> Graded:
    from otter.test_files import GradingResults

    from mnistlab import confined

    # The grading process's scratch folder is made and removed here: a process stopped at its
    # time limit never gets to remove its own.
    with tempfile.TemporaryDirectory(
        prefix="mnistlab-grading-", ignore_cleanup_errors=True
    ) as scratch:
        job = {
            "autograder": str(autograder.resolve()),
            "submission": str(path.resolve()),
            "scratch": scratch,
        }
        outcome = confined.run("mnistlab.grading", job, time_limit, memory)
    answer = outcome.answer or {}
    results, error = None, answer.get("error", "")
    if outcome.status is None:
        error = f"timed out after {time_limit:g} s; stopped (scored 0)"
    elif outcome.tampered:
        error = "the grading process's answer was tampered with (scored 0)"
    elif not answer:
        error = (
            f"grading ended with exit status {outcome.status} before a result (a crash, or "
            f"memory past {memory / 2**30:g} GiB; scored 0)"
        )
    elif "results" in answer:
        import base64

        import dill

        results = dill.loads(base64.b64decode(answer["results"]))
        _write(out / "results" / f"{path.name}.json", json.dumps(answer["gradescope"], indent=2))
    if results is None:
        results = GradingResults.without_results(Exception(error))
    results.file = path.name
    summary = results.summary() if not error else f"{error}\n\n{outcome.output[-4000:]}"
    _write(out / "summaries" / f"{path.name}.txt", summary)
    return Graded(path.name, results.total, results.possible, error, outcome.seconds, results)


def _write(path: Path, text: str) -> None:
    from mnistlab.files import atomic_write

    atomic_write(path, text.encode())


def _graded_in_this_process(job: dict) -> dict:
    """The grading process's side: the submission made ready for otter (its notebook's kernel
    named python3, so it runs on this Python), graded by otter.run.main, its results sent back
    as otter pickles them."""
    import base64
    import contextlib
    import io

    import dill
    from otter.run import main as otter_run

    # (the scratch folder is the grading command's: it removes it, whatever happens here)
    scratch = Path(job["scratch"])
    try:
        ready = _ready(Path(job["submission"]), scratch)
    except ValueError as error:
        return {"error": f"{error} (scored 0)"}
    results_dir = scratch / "results"
    results_dir.mkdir()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            results = otter_run(
                str(ready), autograder=job["autograder"], output_dir=str(results_dir),
                no_logo=True,
            )  # fmt: skip
    except Exception as error:  # noqa: BLE001 - otter could not grade it: say why, score 0
        first = (str(error).splitlines() or [type(error).__name__])[0][:300]
        return {"error": f"otter could not grade it: {type(error).__name__}: {first} (scored 0)"}
    results.notebook = None  # the executed notebook: large, and not needed for the grades
    gradescope = json.loads((results_dir / "results.json").read_text())
    return {
        "results": base64.b64encode(dill.dumps(results)).decode(),
        "gradescope": gradescope,
    }


def _ready(submission: Path, scratch: Path) -> Path:
    """A copy of the submission for otter: one notebook (alone, or with its files in a zip),
    its kernel named python3. ValueError when it is not a notebook or holds none."""
    folder = scratch / "submission"
    folder.mkdir()
    if submission.is_dir():
        shutil.copytree(submission, folder, dirs_exist_ok=True)
    elif submission.suffix == ".zip":
        _extract(submission, folder, MAX_SUBMISSION)
    else:
        shutil.copy(submission, folder / submission.name)
    notebooks = [p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts]
    if len(notebooks) != 1:
        raise ValueError(f"{len(notebooks)} notebooks in it, not one")
    notebook = notebooks[0]
    try:
        content = json.loads(notebook.read_text(encoding="utf-8"))
        if not isinstance(content, dict) or "cells" not in content:
            raise ValueError("no cells")
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"not a notebook (not JSON: {error})") from None
    # otter runs a notebook under its own kernel name, and the grader has no kernel of the
    # student's environment's name ("my-torch-env"): it runs on this Python, as python3.
    kernel = content.setdefault("metadata", {}).setdefault("kernelspec", {})
    kernel.update(name="python3", language="python", display_name="Python 3")
    notebook.write_text(json.dumps(content), encoding="utf-8")
    others = [p for p in folder.rglob("*") if p.is_file() and p != notebook]
    if not others:
        return notebook
    packed = scratch / f"{submission.stem}.zip"
    with zipfile.ZipFile(packed, "w") as archive:
        for path in [notebook, *others]:
            inside = path.is_relative_to(notebook.parent)
            archive.write(path, path.relative_to(notebook.parent) if inside else path.name)
    return packed


if __name__ == "__main__":  # one submission's grading process (grade runs it)
    from mnistlab import confined

    confined.serve(_graded_in_this_process)
