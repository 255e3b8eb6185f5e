"""The project's own promises: CI runs the README's test command, and importing the package
does nothing."""

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
