"""Faults found by trying to break mnistlab as a hostile or unlucky user would: each was
reproduced on the main of 2026-11 and is held here (the numbers are the hardening issue's)."""

import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from conftest import run_sweep, small_file_system
from mnistlab import checkpoint, datasets, report, runfiles
from mnistlab.cli import main
from mnistlab.config import TrainConfig
from mnistlab.errors import CheckpointError
from mnistlab.sweep import results as sweep_results

MARKUP = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


def cli(capsys, *argv):
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(code, err, expected_code=2):
    assert code == expected_code, err
    assert err.startswith("mnistlab") and err.count("\n") == 1 and "Traceback" not in err


# --- 1. no code from the working directory ----------------------------------------------------


def test_a_planted_matplotlib_in_the_working_directory_never_runs(tiny, tmp_path):
    planted = tmp_path / "work" / "matplotlib"
    planted.mkdir(parents=True)
    marker = tmp_path / "ran"
    (planted / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    command = Path(sys.executable).with_name("mnistlab")  # the installed command a user runs
    result = subprocess.run(
        [command, "train", "--dataset", "tiny", "--data-dir", tiny[0], "--epochs", "1"]
        + ["--hidden", "16"]
        + ["--out", tmp_path / "run", "--quiet"],
        cwd=planted.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000  # pictures were drawn


# --- 2 and 4. reports: every value escaped, only the run's own pictures -----------------------


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags_of(path: Path):
    parser = Tags()
    parser.feed(path.read_text())
    return parser.tags


def assert_inert(path: Path):
    tags = tags_of(path)
    assert not [tag for tag, _ in tags if tag == "script"]
    assert not [attrs for _, attrs in tags if any(k.startswith("on") for k in attrs)]
    assert all(a["src"].startswith("data:image/png;base64,") for t, a in tags if t == "img")


def test_markup_in_any_run_or_sweep_field_reaches_the_report_as_text(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    config = {**json.loads(json.dumps(TrainConfig().__dict__)), "activation": MARKUP}
    (run / "config.json").write_text(json.dumps(config))
    record = {"epoch": MARKUP, "train_loss": MARKUP, "train_accuracy": MARKUP}
    record |= {"test_loss": 0.1, "test_accuracy": MARKUP, "seconds": MARKUP}
    (run / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    assert_inert(report.write(run))
    assert "&lt;script&gt;" in (run / "report.html").read_text()

    folder = tmp_path / "sweep"
    folder.mkdir()
    lines = []
    for index, value in enumerate([MARKUP, "relu"]):
        config = {"activation": value, "seed": MARKUP, "hidden": [MARKUP]}
        lines.append(
            {"key": str(index), "config": config, "test_accuracy": 0.9 + index / 100}
            | {"seconds": 1.0, "parameters": 10, "train_flops": 100}
        )
    (folder / "results.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    page = report.write(folder)
    assert_inert(page)
    assert "Best by test accuracy" in page.read_text() and "&lt;img" in page.read_text()


def test_a_report_embeds_no_link_and_nothing_that_is_not_a_png(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(TrainConfig().__dict__, default=list))
    secret = tmp_path / "secret.txt"
    secret.write_text("the password")
    (run / "curves.png").symlink_to(secret)
    (run / "confusion.png").write_text("not a picture either")
    text = report.write(run).read_text()
    assert "<img" not in text
    assert "the password" not in text and "dGhlIHBhc3N3b3Jk" not in text  # nor its base64


# --- 11. output paths -------------------------------------------------------------------------


def test_output_paths_that_cannot_be_written_are_one_line_errors(capsys, tmp_path, tiny):
    folder = tiny[0]
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(TrainConfig().__dict__, default=list))
    cases = [
        (["report", tmp_path / "run", "--out", tmp_path / "missing" / "r.html"], "does not exist"),
        (["report", tmp_path / "run", "--out", tmp_path], "is a folder"),
        (["data", "show", "--dataset", "tiny", "--data-dir", folder, "--out", "grid"], "extension"),
        (
            ["data", "show", "--dataset", "tiny", "--data-dir", folder, "--out", "g.xyz"],
            "extension",
        ),
        (["train", "--out", tmp_path / ("x" * 300), "--no-plots"], "cannot make the run folder"),
        (["train", "--out", tmp_path / "a-file" / "run"], "is a file"),
    ]
    for argv, message in cases:
        code, _, err = cli(capsys, *argv)
        one_line_error(code, err)
        assert message in err, (argv, err)


def test_data_folders_that_are_files_are_one_line_errors(capsys, tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("x")
    code, _, err = cli(capsys, "data", "fetch", "--data-dir", tmp_path / "a-file")
    one_line_error(code, err, 1)
    assert "cannot make the download folder" in err
    monkeypatch.setenv("MNISTLAB_CACHE_DIR", str(tmp_path / "a-file"))
    code, _, err = cli(capsys, "data", "fetch")
    one_line_error(code, err, 1)
    assert "cannot make the download folder" in err


# --- 13 and 14. values that pass one check and crash later; one validation path -------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--seed", "99999999999999999999"], "--seed must be between 0 and"),
        (["train", "--batch-size", "1000000000000"], "--batch-size must be between 1 and"),
        (["params", "--hidden", "10000000000000"], "--hidden widths must be between 1 and"),
        (["train", "--weight-decay", "nan"], "--weight-decay: must be a finite number"),
        (["train", "--weight-decay", "inf"], "--weight-decay: must be a finite number"),
        (["data", "show", "--rows", "0"], "--rows: must be between 1 and 100"),
        (["data", "show", "--rows", "-3"], "--rows: must be between 1 and 100"),
        (["sweep", "--grid", "nesterov=ture"], "cannot read 'ture' as true or false"),
        (["sweep", "--grid", "hiden=8"], "did you mean hidden?"),
        (["train", "--hiden", "8"], "mnistlab train: error: unrecognized arguments: --hiden 8"),
        (["train", "--hiden", "8"], "(did you mean --hidden?) (see 'mnistlab train --help')"),
        (["train", "--recipie", "best"], "did you mean --recipe?"),
        (["data", "info", "--dataset", "kmnist"], "unknown dataset 'kmnist'"),
        # Inputs that size work are checked against a stated limit before the work starts.
        (["train", "--hidden", "1048576", "1048576"], "weights, more than the 268,435,456"),
        # every layer within bounds, the whole model not: refused before a layer is made
        (["train", "--dry-run", "--hidden", *["16384"] * 6], "a model of 1,355,186,176 weights"),
        (["train", "--dry-run", "--hidden", *["8"] * 101], "at most 100 hidden layers"),
        (["train", "--epochs", "1000000000"], "--epochs must be between 1 and 100,000"),
        (["train", "--config", "/dev/zero"], "cannot read config file /dev/zero: not a regular"),
        (["data", "show", "--rows", "100000"], "--rows: must be between 1 and 100"),
        (["tune", "--space", "lr=log:1e-3:1e-2", "--timeout", "nan"], "--timeout must be a"),
        (["tune", "--space", "lr=log:1e-3:1e-2", "--trials", "0"], "--trials must be between 1"),
        (["tune", "--space", "lr=log:1e-3:1e-2", "--trials", "-5"], "--trials must be between"),
        (["tune", "--sampler", "grid", "--space", "seed=int:1:1000000"], "a grid of 1,000,000"),
        (["tune", "--trials", "1", "--space", "hidden=int:8:64"], "hidden must be a list of"),
        (["tune", "--sampler", "grid", "--space", "epochs=int:1:1000000000"], "--space epochs="),
        (["tune", "--trials", "1", "--space", "lr=float:-inf:inf"], "must be finite numbers"),
        (["tune", "--trials", "1", "--space", "lr=float:0:1e400"], "must be finite numbers"),
        (["tune", "--trials", "1", "--space", "lr=float:0:0.1"], "--space lr=0: lr must be"),
        (["tune", "--trials", "1", "--space", "activation=choice:relu,evil"], "unknown value"),
        (["tune", "--trials", "1", "--space", "hidden=choice:0"], "--space hidden=0: hidden"),
    ],
)
def test_values_that_used_to_crash_are_one_line_errors(capsys, argv, message):
    code, _, err = cli(capsys, *argv)
    one_line_error(code, err)
    assert message in err
    assert not Path("studies").exists()  # refused before anything was made


def test_a_registry_that_is_not_a_file_of_data_sets_is_refused(capsys, monkeypatch, tmp_path):
    for value, says in (("/dev/zero", "not a regular file"), (tmp_path, "")):
        monkeypatch.setenv("MNISTLAB_DATASETS", str(value))
        code, _, err = cli(capsys, "data", "info")
        one_line_error(code, err)
        assert f"MNISTLAB_DATASETS={value}" in err and says in err


def test_a_validation_split_that_leaves_nothing_is_a_one_line_error(capsys, tiny):
    code, _, err = cli(
        capsys, "train", "--dataset", "tiny", "--data-dir", tiny[0], "--val-split", "0.9999999"
    )
    one_line_error(code, err)
    assert "--val-split 0.9999999 leaves" in err


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('hidden = "abc"', "hidden must be a list of int values"),
        ('betas = "ab"', "betas must be a list of float values"),
        ("train = 5", "[train] must be a table"),
        ("epochs = 1.5", "epochs must be a whole number, got 1.5"),
        ("batch_size = 700.5", "batch_size must be a whole number"),
        ("seed = 1.5", "seed must be a whole number"),
        ("threads = 1.5", "threads must be a whole number"),
        ("data_dir = 5", "data_dir must be a str, got 5"),
        ("hidden = [8.7]", "hidden must be a whole number, got 8.7"),
        ("lr = true", "lr must be a number, got True"),
        ("nesterov = 1", "nesterov must be true or false"),
        ("learning_rate = 0.1", "unknown settings: learning_rate;"),
        ("hiden = [8]", "unknown settings: hiden (did you mean hidden?)"),
    ],
)
def test_toml_values_of_the_wrong_type_are_refused(capsys, tmp_path, toml, message):
    (tmp_path / "run.toml").write_text(toml + "\n")
    code, _, err = cli(capsys, "train", "--config", tmp_path / "run.toml")
    one_line_error(code, err)
    assert message in err


def test_a_toml_file_that_is_not_utf8_is_refused(capsys, tmp_path):
    (tmp_path / "run.toml").write_bytes(b'activation = "\xff\xfe"\n')
    code, _, err = cli(capsys, "train", "--config", tmp_path / "run.toml")
    one_line_error(code, err)
    assert "not UTF-8" in err or "not valid TOML" in err


# --- 15. crafted checkpoints ------------------------------------------------------------------


def crafted(payload: dict) -> dict:
    good = {
        "format_version": 2,
        "config": json.loads(json.dumps(TrainConfig().__dict__, default=list)),
        "model": {"output.bias": torch.zeros(10)},
        "optimizer": {},
        "epoch": 1,
        "batch": 0,
        "history": [],
        "normalization": [0.1, 0.3],
    }
    return {**good, **payload}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"config": None}, "'config' is missing or not a dict"),
        ({"model": None}, "'model' is missing or not a dict"),
        ({"config": [1, 2]}, "'config' is missing or not a dict"),
        ({"model": {"output.bias": 3}}, "'model' holds something other than tensors"),
        ({"model": {"output.bias": torch.zeros(10).to_sparse()}}, "not dense floating-point"),
        ({"model": {"output.bias": torch.empty(10, device="meta")}}, "not dense floating-point"),
        ({"model": {"output.bias": torch.zeros(10, dtype=torch.int64)}}, "not dense floating"),
        ({"normalization": [0.1]}, "'normalization' must be two numbers"),
        ({"history": ["a", "b"]}, "'history' must be a list of per-epoch records"),
        ({"epoch": "1"}, "'epoch' is missing or not a int"),
        ({"config": {"hidden": "abc"}}, "its config: hidden must be a list"),
        ({"config": {"hidden": [16384] * 12}}, "a model of 2,965,798,912"),  # not allocated
    ],
)
def test_a_crafted_checkpoint_is_not_a_mnistlab_checkpoint(capsys, tmp_path, change, message):
    torch.save(crafted(change), tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="not a mnistlab checkpoint"):
        checkpoint.load(tmp_path)
    code, _, err = cli(capsys, "evaluate", tmp_path)
    one_line_error(code, err)
    assert message in err


# --- 16. results.jsonl lines that are not records; two sweeps in one folder -------------------


def test_lines_that_are_not_records_are_skipped_with_their_line_number(tmp_path, caplog):
    good = {"key": "a", "config": {"seed": 0}, "test_accuracy": 0.5, "seconds": 1.0}
    good |= {"parameters": 10, "train_flops": 100}
    lines = [
        "[]",
        "42",
        "null",
        "{}",
        '{"key": "old", "config": {}}',
        '{"garbled',
        json.dumps(good),
    ]
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n")
    before = (tmp_path / "results.jsonl").read_text()
    problems = []
    with caplog.at_level("WARNING"):
        records = sweep_results.read_results(tmp_path, problems)
    assert records == [good]
    assert [problem.split(":")[1] for problem in problems] == ["1", "2", "3", "4", "5", "6"]
    assert "results.jsonl:6: not a sweep record" in caplog.text
    assert (tmp_path / "results.jsonl").read_text() == before  # kept as it was
    assert report.render_sweep(tmp_path)  # the rest stays readable


def test_two_sweeps_cannot_write_one_folder_at_once(capsys, tmp_path, tiny):
    from filelock import FileLock

    from mnistlab.errors import RunError

    (tmp_path / "s").mkdir()
    with FileLock(str(tmp_path / "s" / ".mnistlab.lock")), pytest.raises(RunError, match="in use"):
        run_sweep([TrainConfig(dataset="tiny")], tmp_path / "s")
    # The second with --workers: refused in one line before any worker starts.
    with FileLock(str(tmp_path / "s" / ".mnistlab.lock")):
        code = main(["sweep", "--dataset", "tiny", "--data-dir", str(tiny[0]), "--seeds", "0",
                     "1", "--workers", "2", "--out", str(tmp_path / "s")])  # fmt: skip
    one_line_error(code, capsys.readouterr().err)
    assert not (tmp_path / "s" / "study.db").exists()  # no worker was started


# --- 20. misleading messages --------------------------------------------------------------------


def test_seeds_given_twice_count_once(capsys, tiny, tmp_path):
    code, stdout, _ = cli(
        capsys,
        "sweep",
        "--dataset",
        "tiny",
        "--data-dir",
        tiny[0],
        "--epochs",
        1,
        "--hidden",
        8,
        "--seeds",
        0,
        0,
        0,
        "--out",
        tmp_path / "s",
        "--no-plots",
    )
    assert code == 0 and "1 configuration x 1 seed = 1 run in" in stdout
    assert "| 1 |" in stdout  # n = 1, not 3


def test_non_finite_numbers_are_written_as_json_null(tmp_path):
    from mnistlab import runs

    runs.write_metrics(tmp_path, [{"epoch": 1, "test_loss": float("nan")}])
    line = (tmp_path / "metrics.jsonl").read_text()
    assert json.loads(line) == {"epoch": 1, "test_loss": None} and "NaN" not in line


def test_a_run_folder_whose_name_is_not_utf8_still_gets_its_report(tmp_path):
    run = tmp_path / os.fsdecode(b"run-\xff\xfe")
    run.mkdir()
    (run / "config.json").write_text(json.dumps(TrainConfig().__dict__, default=list))
    text = report.write(run).read_bytes().decode("utf-8")  # valid UTF-8 throughout
    assert "<title>mnistlab run run-??</title>" in text


def test_tampered_checkpoints_and_metrics_are_refused_in_one_line(capsys, tiny_run, tmp_path):
    import shutil

    for change, says in (
        (lambda p: p.update(format_version=torch.tensor(2)), "format 'Tensor' is not a"),
        (lambda p: p.update(normalization=[True, 1.0]), "'normalization' must be two"),
        (lambda p: p.update(normalization=[0.5, float("nan")]), "'normalization' must be two"),
        (lambda p: p["history"][0].pop("train_loss"), "a 'history' record lacks a number"),
        (lambda p: p.update(rng={"dropout": torch.zeros(3, dtype=torch.uint8)}), "generator"),
        (lambda p: p["model"]["output.bias"].fill_(float("nan")), "not finite numbers"),
        (lambda p: p["model"].update(extra=torch.zeros(1)), "weights the model has not (extra)"),
        (
            lambda p: p["model"].update({"output.weight": torch.zeros(10, 7)}),
            "another architecture",
        ),
    ):
        folder = tmp_path / f"tampered-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(tiny_run, folder)
        payload = torch.load(folder / "checkpoint.pt", weights_only=True)
        change(payload)
        torch.save(payload, folder / "checkpoint.pt")
        for command in (["evaluate", folder], ["predict", folder, "-"], ["export", folder]):
            extra = ["--format", "onnx"] if command[0] == "export" else []
            code, _, err = cli(capsys, *command, *extra)
            one_line_error(code, err)
            assert says in err, (command, err)
    # A NUL byte in machine.json's data folder: no path holds one; the run looks elsewhere.
    machine = json.loads((tiny_run / "machine.json").read_text())
    (tiny_run / "machine.json").write_text(json.dumps({**machine, "data_dir": "/data\u0000x"}))
    assert runfiles.data_dir_of(tiny_run) is None
    # A number of 5,000 digits is not JSON Python reads: the line is left out, nothing breaks.
    with open(tiny_run / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": ' + "9" * 5000 + "}\n")
    assert len(runfiles.read_metrics(tiny_run)) == 3
    code, _, _ = cli(capsys, "report", tiny_run)
    assert code == 0


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda entry: entry.update(classes=[str(i) for i in range(20)]), "needs 10 class names"),
        (lambda entry: entry["files"].pop("test_labels"), "its files lack test_labels"),
    ],
)
def test_a_registry_entry_mnistlab_cannot_train_on_is_refused(
    capsys, tiny, tmp_path, monkeypatch, change, says
):
    registry = json.loads((tmp_path / "datasets.json").read_text())
    change(registry["tiny"])
    (tmp_path / "datasets.json").write_text(json.dumps(registry))
    monkeypatch.delitem(datasets.DATASETS, "tiny")
    code, _, err = cli(capsys, "data", "info", "--dataset", "tiny", "--data-dir", tiny[0])
    one_line_error(code, err)
    assert says in err


def test_a_dollar_in_class_names_is_drawn_as_a_dollar(capsys, tiny, tmp_path, monkeypatch):
    registry = json.loads((tmp_path / "datasets.json").read_text())
    registry["tiny"]["classes"] = [f"${i}^$" for i in range(10)]
    (tmp_path / "datasets.json").write_text(json.dumps(registry))
    monkeypatch.delitem(datasets.DATASETS, "tiny")
    out = tmp_path / "samples.png"
    argv = ["data", "show", "--dataset", "tiny", "--data-dir", tiny[0], "--out", out]
    code, _, err = cli(capsys, *argv)
    assert code == 0 and out.is_file(), err


def test_a_read_only_file_system_is_a_one_line_error_for_every_command(capsys, tiny, tiny_run):
    import shutil

    with small_file_system(Path("read-only").absolute(), "8m") as mount:
        run = mount / "run"
        shutil.copytree(tiny_run, run)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        on_tiny = ["--dataset", "tiny", "--data-dir", tiny[0]]
        small = [*on_tiny, "--hidden", "8", "--epochs", "1"]
        for argv in (
            ["plot", run, *on_tiny[2:]],
            ["report", run],
            ["export", run, "--format", "safetensors"],
            ["data", "show", *on_tiny, "--out", mount / "samples.png"],
            ["sweep", *small, "--out", mount / "sweep", "--no-plots"],
            [
                "tune",
                *small,
                "--space",
                "lr=choice:0.01",
                "--sampler",
                "grid",
                "--out",
                mount / "study",
            ],  # fmt: skip
            ["train", *small, "--out", mount / "new-run"],
        ):
            code, _, err = cli(capsys, *argv)
            assert code != 0 and err.startswith("mnistlab") and err.count("\n") == 1, (argv, err)
            assert "Traceback" not in err and ("Read-only" in err or "read-only" in err), err


BAD_VALUES = ("nan", "inf", "-1", "1e400", "99999999999999999999", "", "ünïcødé", "a\nb", "0x10")


def subcommands():
    """(name words, parser) of every command the CLI has, `data fetch` and the like too."""
    import argparse

    from mnistlab.cli import build_parser

    def walk(parser, words):
        found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not found:
            yield words, parser
            return
        for name, sub in found[0].choices.items():
            yield from walk(sub, [*words, name])

    yield from walk(build_parser(), [])


def test_every_option_of_every_command_given_malformed_values_is_a_one_line_answer(capsys):
    """A fuzz over the whole command line: each option that takes a value, given each of
    BAD_VALUES, with whatever else the command needs pointing nowhere (a run that is not
    there, an unknown data set), so that no valid value starts real work. Each answer is an
    exit status and at most one line of error, never a traceback, within 10 s. The parser is
    built once for all of them, as a command builds it once."""
    import time

    from mnistlab.cli import build_parser

    whole, tried = build_parser(), 0
    for words, parser in subcommands():
        positionals = ["no-such-run" for a in parser._actions if not a.option_strings
                       and a.nargs not in ("?", "*") and a.dest != "help"]  # fmt: skip
        options = [a for a in parser._actions if a.option_strings and a.nargs != 0]
        guard = (
            ["--dataset", "no-such-data-set"]
            if "--dataset" in parser._option_string_actions
            else []
        )
        for action in options:
            flag = action.option_strings[0]
            for value in BAD_VALUES:
                extra = ["--format", "onnx"] if words == ["export"] and flag != "--format" else []
                argv = [
                    *words,
                    *positionals,
                    *extra,
                    *(guard if flag != "--dataset" else []),
                    flag,
                    value,
                ]
                started = time.monotonic()
                code = main(argv, whole)
                captured = capsys.readouterr()
                tried += 1
                assert isinstance(code, int) and time.monotonic() - started < 10, argv
                assert "Traceback" not in captured.err, (argv, captured.err)
                if code:
                    assert captured.err.count("\n") == 1, (argv, captured.err)
    assert tried > 500  # every command's options, each with every bad value


# --- reads that never end: FIFOs and devices where a small file belongs -----------------------


def finishes(argv, seconds: float = 30.0) -> tuple[int, str]:
    """main(argv) in a thread, so that a read that blocks fails the test instead of hanging it:
    (exit status, stderr)."""
    import contextlib
    import io
    import threading

    answer, err = [], io.StringIO()

    def call():
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            answer.append(main(argv))

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{argv} did not finish within {seconds} s"
    return answer[0], err.getvalue()


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_fifo_or_a_device_where_a_small_file_belongs_is_refused_never_waited_on(
    tiny, tiny_run, tmp_path, monkeypatch, kind
):
    import os

    def plant(path: Path) -> None:
        path.unlink(missing_ok=True)
        os.mkfifo(path) if kind == "fifo" else path.symlink_to("/dev/zero")

    image = tmp_path / "digit.png"
    from PIL import Image

    Image.new("L", (40, 40), 255).save(image)
    # A run's evaluation.json (its calibration): predict goes on without it.
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    plant(run / "evaluation.json")
    code, err = finishes(["predict", str(run), str(image)])
    assert code in (0, 2) and "Traceback" not in err
    code, err = finishes(["report", str(run), "--out", str(tmp_path / "r.html")])
    assert code == 0, err
    # Its metrics and its config: one line that names the file.
    plant(run / "metrics.jsonl")
    code, err = finishes(["report", str(run), "--out", str(tmp_path / "r.html")])
    one_line_error(code, err)
    assert "metrics.jsonl" in err and "not a regular file" in err
    plant(run / "config.json")  # (evaluate reads the checkpoint's own copy)
    code, err = finishes(["evaluate", str(run)])
    assert code == 0 and "Traceback" not in err, err
    code, err = finishes(["train", "--config", str(run / "config.json"), "--dry-run"])
    one_line_error(code, err)
    assert "not a regular file" in err
    # A settings file and a data set registry.
    settings = tmp_path / "settings.toml"
    plant(settings)
    code, err = finishes(["train", "--config", str(settings), "--dry-run"])
    one_line_error(code, err)
    assert "not a regular file" in err
    registry = tmp_path / "datasets.json"
    plant(registry)
    monkeypatch.setenv("MNISTLAB_DATASETS", str(registry))
    code, err = finishes(["data", "info", "--dataset", "tiny"])
    one_line_error(code, err)
    assert "not a regular file" in err


# --- numbers that pass a type check and make NaN ----------------------------------------------


def test_numbers_from_a_run_folder_outside_their_range_never_reach_json_as_nan(
    capsys, tiny, tiny_run, tmp_path
):
    from PIL import Image

    from mnistlab.serve import app_for_run

    image = tmp_path / "digit.png"
    digit = Image.new("L", (40, 40), 255)
    digit.paste(0, (17, 5, 23, 35))
    digit.save(image)

    def strict(word):
        raise AssertionError(f"{word} in the JSON printed")

    def tampered(name, change) -> Path:
        run = tmp_path / name
        shutil.copytree(tiny_run, run)
        change(run)
        return run

    def evaluation(run, **calibration):
        path = run / "evaluation.json"
        saved = json.loads(path.read_text())
        saved["calibration"] = {**saved["calibration"], **calibration}
        path.write_text(json.dumps(saved))

    def checkpoint_with(run, change):
        payload = torch.load(run / "checkpoint.pt", weights_only=True)
        change(payload)
        torch.save(payload, run / "checkpoint.pt")

    # A temperature of 5e-324 (or as a string): not used; the answers stay numbers.
    for value in (5e-324, "1e-320", 1e300):
        run = tampered(f"t{value}", lambda run, v=value: evaluation(run, temperature=v))
        code, out, err = cli(capsys, "predict", run, image, "--json")
        answer = json.loads(out, parse_constant=strict)  # NaN is not JSON
        assert code in (0, 2) and "Traceback" not in err, err
        assert all(0 <= p <= 1 for p in answer["probabilities"]), answer
    # A std of 1e-300, a mean of 1e308: not a mnistlab checkpoint, said in one line.
    for normalization in ([0.5, 1e-300], [1e308, 0.5]):
        run = tampered(f"n{normalization[0]}", lambda run, n=normalization: checkpoint_with(
            run, lambda payload: payload.__setitem__("normalization", n)))  # fmt: skip
        code, _, err = cli(capsys, "predict", run, image)
        one_line_error(code, err)
        assert "'normalization' must be" in err

    # Weights times 3e38: finite, but every output overflows; refused as the model loads.
    def huge(payload):
        payload["model"] = {name: value * 3e38 for name, value in payload["model"].items()}

    run = tampered("huge", lambda run: checkpoint_with(run, huge))
    code, _, err = cli(capsys, "predict", run, image, "--json")
    one_line_error(code, err)
    assert "outputs are not finite numbers" in err
    with pytest.raises(CheckpointError, match="not finite"):
        app_for_run(run)

    # A last metrics line of Infinity is not a record: /api/model stays JSON.
    def infinite(run):
        with open(run / "metrics.jsonl", "a") as handle:
            handle.write('{"epoch": 4, "test_accuracy": Infinity}\n')

    run = tampered("inf", infinite)
    assert all(r.get("test_accuracy") != float("inf") for r in runfiles.read_metrics(run))
    from test_serve import request, served

    with served(app_for_run(run)) as url:
        assert request(url + "/api/model")[0] == 200


def test_a_run_file_linked_to_process_memory_is_one_line_at_serve_start(tiny_run, tmp_path):
    # /proc/self/mem says it is a regular file of size 0; reading it fails (EIO).
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to("/proc/self/mem")
    code, err = finishes(["serve", str(run), "--port", "1"])
    one_line_error(code, err)
    assert "metrics.jsonl" in err and "cannot be read" in err


def test_a_jpeg_whose_header_claims_more_pixels_than_it_holds_is_refused(
    capsys, tiny_run, tmp_path
):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (4000, 4000), 200).save(buffer, format="JPEG", quality=10)
    claim = tmp_path / "claim.jpg"
    claim.write_bytes(buffer.getvalue()[:335])  # the header, and the first few bytes of data
    assert main(["predict", str(tiny_run), str(claim)]) == 2
    out = capsys.readouterr().out
    assert "could not be decoded (image file is truncated" in out
