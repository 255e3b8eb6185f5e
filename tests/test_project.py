"""The project's own promises: CI runs the README's test command, and importing the package
does nothing."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_command(comment: str) -> str:
    lines = (ROOT / "README.md").read_text().splitlines()
    return lines[lines.index(comment) + 1].strip()


def test_ci_runs_the_readme_test_command():
    command = readme_command("# set up and run the tests")
    assert "pytest" in command and "-c constraints.txt" in command
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in [line.strip() for line in ci]


def test_set_up_pins_the_cpu_torch_build():
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text()
    assert "-c constraints.txt" in readme_command("# set up and train the default MLP (784-500-10)")


def test_import_downloads_creates_and_prints_nothing(tmp_path):
    code = (
        "import os, mnistlab, mnistlab.cli, mnistlab.data, mnistlab.train, mnistlab.sweep;"
        "print(sorted(os.listdir('.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"MNISTLAB_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert result.stdout == "[]\n" and result.stderr == ""
    assert not (tmp_path / "cache").exists()


def assignment_commands() -> list[list[str]]:
    """The commands of the README's "Doing the assignment" section, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Doing the assignment\n")[1].split("\n## ")[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [shlex.split(line) for block in blocks for line in block.strip().splitlines()]


def test_the_readmes_assignment_commands_run_as_written(capsys, tiny, monkeypatch):
    # On the synthetic data set and one epoch, so that the README cannot drift from the CLI.
    from mnistlab.cli import main

    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(tiny[0]))
    commands = assignment_commands()
    assert len(commands) >= 9 and all(argv[0] == "mnistlab" for argv in commands)
    for argv in commands:
        extra = []
        if argv[1] in ("data", "train", "compare", "sweep"):
            extra += ["--dataset", "tiny"]
        if argv[1] in ("train", "compare", "sweep"):
            extra += ["--epochs", "1"]
        assert main(argv[1:] + extra) == 0, argv
        stdout = capsys.readouterr().out
        if argv[1] == "params":  # the README shows its real output
            assert "  total                           397,510" in stdout
            assert "7,850 parameters; this model has 50.6x as many" in stdout
    report = Path("assignment.html").read_text()
    assert "397,510" in report and "7,850" in report
    assert Path("digits.png").stat().st_size > 1000
