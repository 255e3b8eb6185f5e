"""The command line, end to end, in-process on the synthetic dataset."""

import json
from pathlib import Path

import pytest
import torch

from mnistlab.cli import main


def on_tiny(folder):
    """The flags that point a command at the synthetic dataset."""
    return ("--dataset", "tiny", "--data-dir", folder)


def run(capsys, *argv):
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_dry_run_writes_a_self_describing_run(capsys, tiny, tmp_path):
    folder, _ = tiny
    out = tmp_path / "run"
    code, stdout, _ = run(
        capsys,
        "train",
        *on_tiny(folder),
        "--dry-run",
        "--out",
        out,
        "--no-plots",
    )
    assert code == 0
    assert "epoch 1/1" in stdout and "test acc" in stdout
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "tiny" and config["epochs"] == 1 and config["hidden"] == [500]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and 0 <= json.loads(lines[0])["test_accuracy"] <= 1
    assert (out / "checkpoint.pt").is_file()


def test_train_then_evaluate_agree(capsys, tiny, tmp_path):
    folder, _ = tiny
    out = tmp_path / "run"
    code, stdout, _ = run(
        capsys,
        "train",
        *on_tiny(folder),
        "--epochs",
        2,
        "--hidden",
        64,
        "--batch-size",
        64,
        "--out",
        out,
        "--no-plots",
    )
    assert code == 0 and "epoch 2/2" in stdout
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    code, stdout, _ = run(capsys, "evaluate", out, "--json")
    assert code == 0
    result = json.loads(stdout)
    assert result["accuracy"] == pytest.approx(last["test_accuracy"])
    assert len(result["confusion"]) == 10 and sum(map(sum, result["confusion"])) == 256
    code, stdout, _ = run(capsys, "evaluate", out / "checkpoint.pt")
    assert code == 0 and "confusion matrix" in stdout and "test accuracy" in stdout


def test_resume_continues_a_finished_run_with_more_epochs(capsys, tiny, tmp_path):
    folder, _ = tiny
    out = tmp_path / "run"
    common = (*on_tiny(folder), "--hidden", 16, "--no-plots")
    assert run(capsys, "train", *common, "--epochs", 1, "--out", out)[0] == 0
    code, stdout, _ = run(capsys, "train", "--resume", out, "--epochs", 2, "--no-plots")
    assert code == 0 and "epoch 2/2" in stdout
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_toml_config_and_flags_override_it(capsys, tiny, tmp_path):
    folder, _ = tiny
    (tmp_path / "run.toml").write_text('hidden = [24, 12]\nlr = 0.005\nactivation = "tanh"\n')
    out = tmp_path / "run"
    code, _, _ = run(
        capsys,
        "train",
        "--config",
        tmp_path / "run.toml",
        "--lr",
        0.001,
        *on_tiny(folder),
        "--dry-run",
        "--out",
        out,
        "--no-plots",
    )
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    assert config["hidden"] == [24, 12] and config["activation"] == "tanh"
    assert config["lr"] == 0.001


def test_assignment_recipe_is_one_flag_away(capsys, tiny, tmp_path):
    folder, _ = tiny
    out = tmp_path / "run"
    code, stdout, _ = run(
        capsys,
        "train",
        "--recipe",
        "assignment",
        *on_tiny(folder),
        "--dry-run",
        "--out",
        out,
        "--no-plots",
    )
    config = json.loads((out / "config.json").read_text())
    assert code == 0 and "sgd lr 0.01 constant, inputs scaled half, batch 64" in stdout
    assert (config["optimizer"], config["lr"], config["batch_size"]) == ("sgd", 0.01, 64)
    assert config["normalize"] == "half"  # the notebook's Normalize((0.5,), (0.5,))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--lr", "-0.1"], "--lr must be a positive number"),
        (["train", "--lr", "0"], "--lr must be a positive number"),
        (["train", "--lr", "fast"], "--lr: cannot read 'fast' as float"),
        (["train", "--hidden", "0"], "--hidden widths must be between 1 and"),
        (["train", "--epochs", "0"], "--epochs must be between 1 and 100,000"),
        (["train", "--dataset", "cifar"], "unknown dataset 'cifar'"),
        (["train", "--activation", "swish"], "--activation: invalid choice: 'swish'"),
        (["train", "--optimizer", "lbfgs"], "--optimizer: invalid choice: 'lbfgs'"),
        (["train", "--dropout", "1.5"], "--dropout must be in [0, 1)"),
        (["train", "--bogus"], "unrecognized arguments: --bogus"),
        (["train", "--config", "missing.toml"], "cannot read config file missing.toml"),
        (["train", "--resume", "no-such-run"], "no checkpoint at no-such-run"),
        (["evaluate", "no-such-run"], "no checkpoint at no-such-run"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["bench", "--repeats", "0"], "--repeats must be at least 1"),
        (["sweep", "--grid", "colour=red"], "--grid 'colour=red': write NAME=V1,V2"),
        (["train", "--betas", "0.9", "1.5"], "--betas takes two numbers in [0, 1)"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.startswith("mnistlab") and err.count("\n") == 1 and "Traceback" not in err


def test_bad_toml_is_a_clear_error(capsys, tmp_path):
    (tmp_path / "bad.toml").write_text("lr = [oops\n")
    code, _, err = run(capsys, "train", "--config", tmp_path / "bad.toml")
    assert code == 2 and "is not valid TOML" in err
    (tmp_path / "unknown.toml").write_text("learning_rate = 0.1\n")
    code, _, err = run(capsys, "train", "--config", tmp_path / "unknown.toml")
    assert code == 2 and "unknown settings: learning_rate" in err


def test_existing_run_folder_is_not_overwritten(capsys, tiny, tmp_path, monkeypatch):
    folder, _ = tiny
    # A folder named like a setting: the message names the flag, not the folder, as --resume
    # (the error marks the setting it names; nothing finds the name in the text).
    monkeypatch.chdir(tmp_path)
    out = Path("resume")
    args = (
        "train",
        *on_tiny(folder),
        "--dry-run",
        "--out",
        out,
        "--no-plots",
    )
    assert run(capsys, *args)[0] == 0
    before = (out / "checkpoint.pt").read_bytes()
    code, _, err = run(capsys, *args)
    assert code == 2 and "resume already holds a run; continue it with --resume resume or" in err
    assert (out / "checkpoint.pt").read_bytes() == before


def test_checkpoint_of_another_architecture_is_refused(capsys, tiny, tmp_path):
    folder, _ = tiny
    out = tmp_path / "run"
    run(
        capsys,
        "train",
        *on_tiny(folder),
        "--dry-run",
        "--out",
        out,
        "--hidden",
        32,
        "--no-plots",
    )
    before = (out / "checkpoint.pt").read_bytes()
    code, _, err = run(capsys, "train", "--resume", out, "--hidden", 64, "--epochs", 3)
    assert code == 2 and "other settings" in err and "hidden 32 -> 64" in err
    assert (out / "checkpoint.pt").read_bytes() == before
    # A checkpoint file swapped in from another architecture is named as such.
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    saved["model"].update(
        {
            "hidden.0.weight": torch.zeros(64, 784),
            "hidden.0.bias": torch.zeros(64),
            "output.weight": torch.zeros(10, 64),
        }
    )
    torch.save(saved, out / "checkpoint.pt")
    code, _, err = run(capsys, "evaluate", out)
    assert code == 2 and "another architecture (784-64-10)" in err and "784-32-10" in err


def test_garbage_checkpoint_is_a_clear_error(capsys, tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    code, _, err = run(capsys, "evaluate", tmp_path)
    assert code == 2 and "not a readable mnistlab checkpoint" in err


def test_corrupt_data_file_exits_non_zero_with_one_message(capsys, tiny):
    folder, _ = tiny
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"truncated")
    code, _, err = run(capsys, "train", *on_tiny(folder), "--dry-run")
    assert code == 1 and "train-labels-idx1-ubyte.gz: sha256" in err
    assert not Path("runs").exists()  # nothing half-written


def test_params_is_the_short_answer(capsys):
    code, stdout, _ = run(capsys, "params")
    assert code == 0
    assert "397,510" in stdout and "7,850" in stdout and "50.6x" in stdout
    assert "392,000" in stdout and "5,000" in stdout
    code, stdout, _ = run(capsys, "params", "--hidden", 100, 50)
    assert "84,060" in stdout  # 784*100+100 + 100*50+50 + 50*10+10


@pytest.mark.parametrize("native", [True, False])
def test_compare_trains_the_three_implementations_to_the_same_weights(
    capsys, tiny, monkeypatch, native
):
    # Where precision auto trains in bf16, compare still compares in fp32: bf16's rounding,
    # not the implementations, would fill its table.
    from mnistlab import devices

    monkeypatch.setattr(devices, "bf16_native", lambda: native)
    folder, _ = tiny
    code, stdout, _ = run(capsys, "compare", *on_tiny(folder), "--epochs", 1, "--hidden", 32)
    assert code == 0 and "trained in fp32;" in stdout
    rows = {
        line.split()[0]: line.split()
        for line in stdout.splitlines()
        if line.split() and line.split()[0] in ("module", "scratch", "manual")
    }
    assert set(rows) == {"module", "scratch", "manual"}
    accuracies = {float(row[1].rstrip("%")) for row in rows.values()}
    assert max(accuracies) - min(accuracies) < 1.0
    assert all(float(row[-1]) < 1e-5 for row in rows.values())  # after one step
    assert float(rows["module"][-2]) == 0.0


def test_data_commands(capsys, tiny, tmp_path):
    folder, _ = tiny
    code, stdout, _ = run(capsys, "data", "info", *on_tiny(folder))
    assert code == 0 and "sha256 OK" in stdout and "512 training" in stdout
    code, stdout, _ = run(capsys, "data", "fetch", *on_tiny(folder))
    assert code == 0 and "train_images" in stdout
    code, stdout, _ = run(
        capsys,
        "data",
        "show",
        *on_tiny(folder),
        "--out",
        tmp_path / "grid.png",
        "--rows",
        2,
    )
    assert code == 0 and (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_data_show_without_out_writes_to_a_folder_of_its_own_only_when_it_draws(
    capsys, tiny, tmp_path, monkeypatch
):
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("MNISTLAB_MIRROR", "http://127.0.0.1:9/")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "data", "show", "--dataset", "tiny", "--data-dir", empty)
    assert code == 1 and "error" in err
    assert not list(scratch.iterdir())  # nothing left behind by a command that drew nothing
    code, stdout, _ = run(capsys, "data", "show", *on_tiny(tiny[0]))
    (made,) = scratch.iterdir()
    assert code == 0 and f"wrote {made / 'samples.png'}" in stdout


@pytest.mark.realdata
def test_resume_may_switch_implementation(capsys, tiny, tmp_path):
    folder, _ = tiny
    out = tmp_path / "run"
    common = (*on_tiny(folder), "--hidden", 16, "--no-plots")
    assert run(capsys, "train", *common, "--epochs", 1, "--out", out)[0] == 0
    code, stdout, err = run(
        capsys, "train", "--resume", out, "--epochs", 2, "--impl", "manual", "--no-plots"
    )
    assert code == 0, err
    assert "impl manual" in stdout and "epoch 2/2" in stdout
    code, _, err = run(
        capsys, "train", "--resume", out, "--epochs", 3, "--optimizer", "sgd", "--no-plots"
    )
    assert code == 2 and "optimizer adam -> sgd" in err and "only epochs may grow" in err


@pytest.mark.realdata
def test_default_train_reaches_98_percent_without_importing_torch_dynamo(trained):
    # The default recipe is the one a newcomer runs first: it must clear 98% on MNIST, and it
    # must not pay for torch._dynamo's import (about 2 s here), which torch.optim triggers.
    # `trained` is that command, run once for the session in a process of its own.
    assert "dynamo imported: False" in (trained.parent / "mnist-default.out").read_text()
    history = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert history[-1]["test_accuracy"] >= 0.98, history[-1]
    for picture in ("curves", "confusion", "mistakes", "weights"):
        assert (trained / f"{picture}.png").stat().st_size > 1000


def test_version_and_one_line_descriptions(capsys):
    import tomllib

    from mnistlab import __version__

    # written once, in pyproject.toml; the package and the command read it from the metadata
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert __version__ == pyproject["project"]["version"]
    code, stdout, _ = run(capsys, "--version")
    assert code == 0 and stdout.strip() == f"mnistlab {__version__}"
    code, stdout, _ = run(capsys, "params", "--help")
    assert code == 0 and "count trainable parameters, layer by layer" in stdout


def test_compare_takes_a_recipe(capsys, tiny):
    folder, _ = tiny
    code, stdout, _ = run(
        capsys, "compare", "--recipe", "assignment", *on_tiny(folder), "--epochs", 1
    )
    assert code == 0 and "sgd lr 0.01 constant, inputs scaled half, batch 64, 1 epoch:" in stdout
    assert "one measurement each" in stdout


def test_a_runs_config_json_reproduces_the_run(capsys, tiny, tmp_path):
    folder, _ = tiny
    first, second = tmp_path / "first", tmp_path / "second"
    flags = ("--hidden", 24, "--lr", 0.003, "--seed", 4, "--epochs", 1, "--no-plots", "--quiet")
    assert run(capsys, "train", *on_tiny(folder), *flags, "--out", first)[0] == 0
    code, _, err = run(
        capsys, "train", "--config", first / "config.json", "--data-dir", folder, "--out", second
    )
    assert code == 0, err
    assert (first / "config.json").read_text() == (second / "config.json").read_text()
    metrics = [json.loads((f / "metrics.jsonl").read_text()) for f in (first, second)]
    assert metrics[0]["test_accuracy"] == metrics[1]["test_accuracy"]


def test_the_run_report_leads_with_the_parameter_counts_and_per_class_accuracy(
    capsys, tiny, tmp_path
):
    folder, _ = tiny
    mlp, logreg = tmp_path / "mlp", tmp_path / "logreg"
    for out, extra in ((mlp, ()), (logreg, ("--model", "logreg"))):
        code = run(capsys, "train", *on_tiny(folder), "--epochs", 1, "--out", out, *extra)[0]
        assert code == 0
    assert run(capsys, "report", mlp)[0] == 0
    page = (mlp / "report.html").read_text()
    assert "MLP 784-500-10 (relu)</b>: 397,510 trainable parameters" in page
    assert "against logistic regression&#39;s 7,850 (50.6x as many)" in page
    assert "<h2>Accuracy per class</h2>" in page and page.count("<tr><td>") >= 10
    assert "betas" in page and "momentum" not in page  # adam: no SGD settings shown
    code, stdout, _ = run(capsys, "report", mlp, logreg, "--out", tmp_path / "both.html")
    both = (tmp_path / "both.html").read_text()
    assert code == 0 and "397,510" in both and "7,850" in both
    assert "<td>model</td><td>mlp</td><td>logreg</td>" in both


def test_commands_that_compute_nothing_start_without_torch(tiny, tiny_run, tmp_path):
    # Importing torch is most of a short command's time (docs/speed.md): a report and fetching
    # the data files need none of it.
    import subprocess
    import sys

    code = (
        "import sys; from mnistlab.cli import main; status = main(sys.argv[1:]); "
        "print('torch imported:', 'torch' in sys.modules); sys.exit(status)"
    )
    for argv in (
        ["report", str(tiny_run), "--out", str(tmp_path / "report.html")],
        ["data", "fetch", "--dataset", "tiny", "--data-dir", str(tiny[0])],
    ):
        done = subprocess.run(
            [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (argv, done.stderr[-2000:])
        assert done.stdout.splitlines()[-1] == "torch imported: False", argv
    page = (tmp_path / "report.html").read_text()  # counted without torch, and right
    assert "25,450 trainable parameters" in page and "7,850" in page  # 784-32-10 and 784-10
