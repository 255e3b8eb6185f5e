"""The documentation: the site builds strictly, and every command on every page runs as a
reader would run it (docs/development.md says how blocks are read)."""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
EXITS = re.compile(r"\s+#\s*exits (\d+).*$")


SECTION = re.compile(r"^## (.+)$", re.MULTILINE)


def blocks(
    page: Path, sections: tuple[str, ...] | None = None
) -> list[tuple[str, str | None, str]]:
    """(language, title or None, text) of each fenced block, in order; with `sections`, only
    the blocks under those `## ` headings (named by how they begin; "" is the text before the
    first heading)."""
    content = page.read_text()
    headings = [(match.start(), match[1]) for match in SECTION.finditer(content)]
    found = []
    for match in FENCE.finditer(content):
        language, options, text = match.groups()
        under = [name for start, name in headings if start < match.start()]
        if sections is not None and not _named((under or [""])[-1], sections):
            continue
        title = re.search(r'title="([^"]+)"', options)
        found.append((language, title.group(1) if title else None, text))
    return found


def _named(heading: str, sections: tuple[str, ...]) -> bool:
    return any(heading.startswith(name) if name else heading == "" for name in sections)


def commands(text: str) -> list[tuple[str, int]]:
    """The `$ ` lines of a console block, each with the exit status it should end with."""
    found = []
    for line in text.splitlines():
        if line.startswith("$ "):
            expected = EXITS.search(line)
            found.append((EXITS.sub("", line[2:]).strip(), int(expected[1]) if expected else 0))
    return found


PAGES = sorted(DOCS.rglob("*.md"))
# The pages' commands run on the original files with MNIST's training split cut to its first
# READER_IMAGES images (tests/reader/sitecustomize.py says why and how).
READER_IMAGES = 6000
READER_FOLDER = Path(__file__).parent / "reader"
READER = {
    "PYTHONPATH": str(READER_FOLDER),
    "MNISTLAB_TEST_TRAIN_IMAGES": str(READER_IMAGES),
}
RUNNABLE = [
    page
    for page in [ROOT / "README.md", *PAGES]
    if any(kind in ("console", "python") for kind, _, _ in blocks(page))
]

# The longest pages, cut where a reader could start afresh: each part runs in a folder of its
# own (so in its own test, side by side with the others), its sections in page order. The
# assignment page's report and Python block read runs/mlp, so they go with the training.
PARTS = {
    "docs/assignment.md": [
        ("", "1.", "2.", "6.", "The notebook", "Choosing"),
        ("3.",),
        ("4.", "5."),
        ("7.",),
    ],
    "docs/experiments.md": [
        ("", "Runs", "Three", "Reports"),
        ("Settings",),
        ("Sweeps",),
        ("Searches",),
    ],
}


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def _parts() -> list[tuple[Path, tuple[str, ...] | None]]:
    found = []
    for page in RUNNABLE:
        for sections in PARTS.get(_name(page), [None]):
            found.append(pytest.param(page, sections, id=_name(page) + _part_id(sections)))
    return found


def _part_id(sections: tuple[str, ...] | None) -> str:
    return "" if sections is None else "#" + (sections[0] or sections[1]).rstrip(".")


def test_the_parts_of_each_split_page_cover_its_sections_once():
    for name, parts in PARTS.items():
        page = ROOT / name
        headings = [""] + SECTION.findall(page.read_text())
        for heading in headings:
            owners = [part for part in parts if _named(heading, part)]
            assert len(owners) == 1, f"{name}: section {heading!r} is in {len(owners)} parts"
        assert sum(len(blocks(page, part)) for part in parts) == len(blocks(page))


def test_the_site_builds_strictly_with_the_commands_from_the_parser(tmp_path):
    site = tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    reference = (site / "reference" / "cli" / "index.html").read_text()
    from mnistlab.cli import build_parser

    # every command, and a flag of each kind, as the parser has them
    for command in ("mnistlab tune", "mnistlab data fetch", "mnistlab serve", "mnistlab check"):
        assert f"{command}</h2>" in reference or f'id="{command.replace(" ", "-")}"' in reference
    assert "--space" in reference and "--time-limit" in reference and "--cors" in reference
    assert build_parser().prog  # (the hook imported the same parser)
    api = (site / "reference" / "api" / "index.html").read_text()
    assert "Predictor" in api and "TrainConfig" in api and "Study" in api


def test_set_up_commands_on_every_page_are_the_readmes():
    # CI runs the README's; a page that shows other set-up commands would drift from them.
    readme = {line.strip() for line in (ROOT / "README.md").read_text().splitlines()}
    shown = [
        line.strip()
        for page in PAGES
        for kind, _, text in blocks(page)
        if kind == "sh"
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert shown and all(line in readme for line in shown), set(shown) - readme


def test_every_page_with_commands_is_run():
    names = {page.relative_to(ROOT).as_posix() for page in RUNNABLE}
    assert {"README.md", "docs/index.md", "docs/getting-started.md", "docs/assignment.md"} <= names
    assert {"docs/teaching.md", "docs/experiments.md", "docs/using.md", "docs/speed.md"} <= names


# The port the pages serve on: each page's server gets a free one in its place (and so do its
# later commands), as anything else on the machine holding the documented port would fail it.
DOCUMENTED_PORT = re.compile(r"(?<=--port )8765\b|(?<=:)8765(?=/)")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# A training command the same on several pages (the default run, a recipe's) learns the same
# weights wherever it runs: it is run once for the session, by the first page to reach it, and
# the other pages get what it left, its run folder, under the name they give it. The session's
# default run (`mnist_run`, made by the same command) serves `mnistlab train --out NAME`.
TRAINS = re.compile(r"^mnistlab train(?: --recipe ([\w-]+))? --out (\S+)$")


def run_or_share(command, folder, env, request) -> subprocess.CompletedProcess | None:
    """A training command that TRAINS matches, run once for the session (None for others)."""
    from filelock import FileLock

    from conftest import shared_folder

    match = TRAINS.match(command)
    if not match:
        return None
    recipe, out = match[1] or "default", folder / match[2]
    store = shared_folder(request.getfixturevalue("tmp_path_factory"), request.getfixturevalue(
        "worker_id")) / "docs-trains"  # fmt: skip
    store.mkdir(exist_ok=True)
    made = store / recipe
    with FileLock(str(store / f"{recipe}.lock")):
        if recipe == "default" and not made.exists():
            shutil.copytree(request.getfixturevalue("mnist_run"), made)
        if made.exists():
            shutil.copytree(made, out)
            return subprocess.CompletedProcess(command, 0)
        done = subprocess.run(
            ["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        if done.returncode == 0:
            shutil.copytree(out, made)
        return done


@pytest.mark.realdata
def test_the_pages_commands_train_on_a_tenth_of_mnist_read_from_its_files(real_data, tmp_path):
    code = (
        "import mnistlab, sys; from mnistlab import data; "
        "mnist = mnistlab.load_data('mnist', sys.argv[1] + '/mnist'); "
        "fashion = data.load('fashion-mnist', sys.argv[1] + '/fashion-mnist'); "
        "print(len(mnist.train), len(mnist.test), len(fashion.train), mnist.files['train_images'])"
    )
    env = {**os.environ, **READER}
    done = subprocess.run(
        [sys.executable, "-c", code, str(real_data)], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    train, test, fashion, source = done.stdout.split()
    assert (int(train), int(test), int(fashion)) == (READER_IMAGES, 10_000, 60_000)
    assert Path(source).resolve().parent == (real_data / "mnist").resolve()


@pytest.fixture(scope="session")
def zygote(tmp_path_factory, worker_id):
    """A folder whose `mnistlab` is run by a process that imported torch and mnistlab once, and
    forks a copy of itself for each command (tests/reader/zygote.py says why and what it
    keeps). One for the session: the first test process to need it starts it, under a file
    lock in the folder the test processes share, and it ends, with its copies, when the pytest
    process that started them does."""
    from filelock import FileLock

    from conftest import shared_folder

    shared = shared_folder(tmp_path_factory, worker_id)
    folder = shared / "zygote"
    session = os.getpid() if worker_id == "master" else os.getppid()
    with FileLock(str(shared / "zygote.lock")):
        if not (folder / "ready").is_file():
            folder.mkdir(exist_ok=True)
            with open(folder / "zygote.err", "w") as errors:
                process = subprocess.Popen(
                    [sys.executable, str(READER_FOLDER / "zygote.py"), str(folder), str(session)],
                    cwd=folder, env={**os.environ, **READER}, stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=errors, text=True, start_new_session=True,
                )  # fmt: skip
            ready = process.stdout.readline()
            assert ready == "ready\n", (folder / "zygote.err").read_text()[-3000:]
            (folder / "ready").write_text(str(process.pid))
    return folder


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize(("page", "sections"), _parts())
def test_every_command_on_the_page_runs(page, sections, real_data, tmp_path, request, zygote):
    folder = tmp_path / "reader"
    folder.mkdir()
    (folder / "docs").symlink_to(DOCS)  # the pages name docs/images/... from the project root
    scripts = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {
        **os.environ,
        "PATH": f"{zygote}{os.pathsep}{scripts}",  # its `mnistlab` first
        "MNISTLAB_DATA_DIR": str(real_data),
        "MNISTLAB_CACHE_DIR": str(tmp_path / "cache"),
        **READER,  # MNIST's training split cut to a tenth, in every process the page starts
    }
    servers, ran, port = [], 0, str(free_port())
    try:
        for kind, title, text in blocks(page, sections):
            if title:
                (folder / title).write_text(text)
            elif kind == "python":
                done = subprocess.run(
                    [zygote / "python-block", "-c", text], cwd=folder, env=env, capture_output=True,
                    text=True, timeout=600,
                )  # fmt: skip
                assert done.returncode == 0, f"{page.name}: python block\n{done.stderr[-3000:]}"
                ran += 1
            elif kind == "console":
                for command, expected in commands(text):
                    command = DOCUMENTED_PORT.sub(port, command)
                    if command.startswith("mnistlab serve"):  # a process of its own
                        servers.append(serving(command, folder, {**env, "PATH": scripts}))
                    else:
                        done = run_or_share(command, folder, env, request) or subprocess.run(
                            ["bash", "-c", command], cwd=folder, env=env, capture_output=True,
                            text=True, timeout=600,
                        )  # fmt: skip
                        assert done.returncode == expected, (
                            f"{page.name}: `{command}` exited {done.returncode}, "
                            f"not {expected}\n{done.stderr[-3000:]}"
                        )
                    ran += 1
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
    assert ran
    if page.name == "assignment.md" and "2." in sections:  # what the walkthrough leaves
        report = (folder / "assignment.html").read_text()
        assert "397,510" in report and "7,850" in report
        assert (folder / "digits.png").stat().st_size > 1000
    if page.name == "assignment.md" and "5." in sections:
        assert (folder / "sweeps" / "mlp-vs-logreg" / "summary.md").is_file()


def serving(command: str, folder: Path, env: dict) -> subprocess.Popen:
    """`mnistlab serve ...` started in the background, once it says where it serves."""
    server = subprocess.Popen(
        ["bash", "-c", "exec " + command], cwd=folder, env=env, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    line = server.stdout.readline()
    assert line.startswith("serving"), line
    port = int(re.search(r":(\d+)/", line)[1])
    import socket

    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            assert time.monotonic() < deadline, "the server did not start listening"
            time.sleep(0.1)
