"""What users install: the sdist and wheel built as a release would build them, the wheel
installed in a fresh virtual environment, and the installed command used there. The rest of
the suite runs on an editable install, which would hide a file the package leaves out."""

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from mnistlab import sample

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_the_wheel_installed_in_a_fresh_environment_trains_reports_predicts_and_serves_its_page(
    tiny, tmp_path
):
    # uv builds as `python -m build` does (the sdist, then the wheel from the sdist, each in an
    # isolated environment with the build-system's requirements), its environments from its cache.
    uv = Path(sys.executable).parent / "uv"
    built = subprocess.run(
        [uv, "build", "--out-dir", tmp_path / "dist", ROOT], capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    assert "deprecat" not in (built.stdout + built.stderr).lower()  # (setuptools' warnings)
    [wheel] = (tmp_path / "dist").glob("mnistlab-*.whl")
    [sdist] = (tmp_path / "dist").glob("mnistlab-*.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = [
        "mnistlab/static/index.html", "mnistlab/templates/page.html", "licenses/LICENSE",
        "mnistlab/sample_data/mnist/README.md",  # the sample's licence and citation
        *(f"mnistlab/sample_data/mnist/{name}" for name, _ in sample.FILES.values()),
    ]  # fmt: skip
    for part in shipped:
        assert any(name.endswith(part) for name in names), part
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    for part in ("LICENSE", "README.md", "pyproject.toml", "src/mnistlab/static/index.html"):
        assert any(name.endswith("/" + part) for name in members), part

    # A fresh environment with the wheel alone, installed by pip (this environment's, pointed
    # at it: the fresh one needs no pip of its own); its dependencies are this environment's (a
    # path file, read after the environment's own packages), not downloaded again.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=300)
    python, command = venv / "bin" / "python", venv / "bin" / "mnistlab"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
         "--no-index", wheel],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(purelib) / "outer-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    env = {**os.environ, "PYTHONPATH": ""}
    where = subprocess.run(
        [python, "-P", "-c", "import mnistlab, importlib.resources as r; print(mnistlab.__file__);"
         " print(mnistlab.__version__); print(r.files('mnistlab').joinpath('static/index.html')"
         ".read_text()[:15])"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    location, version, page = where.stdout.splitlines()
    assert location.startswith(str(venv)) and version and page.lower().startswith("<!doctype html")

    def mnistlab(*argv):
        done = subprocess.run(
            [command, *map(str, argv)], capture_output=True, text=True, env=env, cwd=tmp_path,
            timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, (argv, done.stderr)
        return done.stdout

    run = tmp_path / "run"
    mnistlab("train", "--dataset", "tiny", "--data-dir", tiny[0], "--hidden", "16", "--epochs",
             "1", "--out", run, "--quiet")  # fmt: skip
    mnistlab("report", run, "--out", tmp_path / "report.html")
    assert "<img" in (tmp_path / "report.html").read_text()
    digit = tmp_path / "digit.png"
    from PIL import Image, ImageDraw

    image = Image.new("L", (28, 28), 255)
    ImageDraw.Draw(image).line([(14, 5), (14, 22)], fill=0, width=3)  # a one
    image.save(digit)
    assert mnistlab("predict", run, digit).startswith(str(digit))
    # check runs on the sample installed with the wheel: no data files here, nothing fetched
    model = tmp_path / "model.py"
    model.write_text("import torch\nmodel = torch.nn.Sequential(torch.nn.Linear(784, 10))\n")
    answer = json.loads(mnistlab("check", f"{model}:model", "--json", "--only", "leaf,logits"))
    assert answer["passed"] and answer["schema"] == 1
