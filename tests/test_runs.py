"""The run folder is the user's data: what a Run guarantees about it, in Python and through
the command line."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import slowed_cli, small_file_system
from mnistlab import checkpoint, data, files, resident
from mnistlab.cli import main
from mnistlab.config import Runtime, TrainConfig
from mnistlab.errors import CheckpointError, RunError
from mnistlab.runs import Run

SMALL = ("--hidden", "16", "--batch-size", "64", "--no-plots")


def tiny_config(**settings):
    return TrainConfig(**{"dataset": "tiny", "hidden": (16,), "batch_size": 64, **settings})


def cli(capsys, *argv):
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def train_tiny(capsys, folder, out, *extra):
    return cli(
        capsys, "train", "--dataset", "tiny", "--data-dir", folder, *SMALL, *extra, "--out", out
    )


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_foreign_non_empty_folder_is_refused_and_left_as_it_was(capsys, tiny, tmp_path):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "config.json").write_text('{"chapter": 1}')  # a config.json that is not a run's
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    code, _, err = train_tiny(capsys, tiny[0], out)
    assert code == 2 and "not a mnistlab run folder" in err and err.count("\n") == 1
    assert snapshot(out) == before
    with pytest.raises(RunError, match="not a mnistlab run folder"):
        Run.create(tmp_path / "thesis", tiny_config())


def test_an_out_that_is_a_file_or_under_a_file_is_refused_before_loading(capsys, tmp_path):
    (tmp_path / "plain").write_text("x")
    for out in (tmp_path / "plain", tmp_path / "plain" / "run"):
        code, _, err = cli(capsys, "train", "--dataset", "mnist", "--out", out, "--no-plots")
        assert code == 2 and "is a file" in err  # no data set was looked for: MNIST is absent
    assert (tmp_path / "plain").read_text() == "x"


def test_one_process_at_a_time_per_run_folder(capsys, tiny, tmp_path):
    out = tmp_path / "run"
    with Run.create(out, tiny_config()):
        code, _, err = train_tiny(capsys, tiny[0], out)
        assert code == 2 and "in use by another mnistlab process" in err
        with pytest.raises(RunError, match="in use"):
            Run.create(out, tiny_config(hidden=(8,)))
    assert json.loads((out / "config.json").read_text())["hidden"] == [16]
    # Released on close: the folder can be used again.
    assert train_tiny(capsys, tiny[0], out, "--epochs", 1)[0] == 0


def test_a_second_process_is_refused_while_the_first_trains(tiny, tmp_path):
    # Two processes, as two `mnistlab train &` would be: the second is refused with one line
    # while the first holds the folder, and the folder stays the first's.
    out = tmp_path / "run"
    code = (
        f"import sys, time; sys.path.insert(0, {str(Path(__file__).parent)!r}); import conftest; "
        "from mnistlab import data; from mnistlab.runs import Run; "
        "from mnistlab.config import TrainConfig; "
        f"run = Run.create({str(out)!r}, TrainConfig(dataset='mnist', hidden=(16,))); "
        "print('locked', flush=True); time.sleep(30)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunError, match="in use by another mnistlab process"):
            Run.create(out, tiny_config(hidden=(8,)))
        assert json.loads((out / "config.json").read_text())["hidden"] == [16]
    finally:
        holder.kill()
        holder.wait()


def test_default_run_names_never_collide(tiny):
    first, second = Run.new(tiny_config()), Run.new(tiny_config())
    with first, second:
        assert first.folder != second.folder
        assert first.folder.parent == second.folder.parent == Path("runs")
        assert second.folder.name.startswith(first.folder.name)


def test_a_dry_run_goes_to_a_temporary_folder_and_never_touches_a_run(capsys, tiny, tmp_path):
    out = tmp_path / "run"
    assert train_tiny(capsys, tiny[0], out, "--epochs", 3)[0] == 0
    before = snapshot(out)
    code, stdout, _ = cli(capsys, "train", "--resume", out, "--dry-run", "--no-plots")
    assert code == 0 and "a dry run" in stdout
    temporary = Path(stdout.split("run folder ")[1].split()[0])
    assert temporary != out and temporary.name.startswith("mnistlab-dry-run-")
    assert "epoch 1/1" in stdout and not temporary.exists()  # trained, then removed
    assert snapshot(out) == before
    # Without --out, a plain dry run leaves nothing in runs/ nor in the temporary folder.
    code, stdout, _ = cli(capsys, "train", "--dataset", "tiny", "--data-dir", tiny[0], "--dry-run")
    temporary = Path(stdout.split("run folder ")[1].split()[0])
    assert code == 0 and not Path("runs").exists() and not temporary.exists()


def test_resume_refuses_other_settings_and_lists_them(capsys, tiny, tmp_path):
    out = tmp_path / "run"
    assert train_tiny(capsys, tiny[0], out, "--epochs", 1)[0] == 0
    before = snapshot(out)
    code, _, err = cli(
        capsys, "train", "--resume", out, "--lr", 0.5, "--seed", 3, "--batch-size", 32
    )
    assert code == 2 and err.count("\n") == 1
    for difference in ("lr 0.01 -> 0.5", "seed 0 -> 3", "batch_size 64 -> 32"):
        assert difference in err
    for flag in (("--out", tmp_path / "x"), ("--recipe", "assignment"), ("--config", "a.toml")):
        code, _, err = cli(capsys, "train", "--resume", out, *flag)
        assert code == 2 and f"{flag[0]} cannot be given with --resume" in err
    code, _, err = cli(capsys, "train", "--resume", out, "--epochs", 1)
    assert code == 2 and "already finished 1 epoch;" in err
    assert snapshot(out) == before
    # The same settings given again are no change; more epochs are.
    code, stdout, _ = cli(capsys, "train", "--resume", out, "--lr", 0.01, "--epochs", 2, "--quiet")
    assert code == 0 and "epoch 2/2" in stdout


@pytest.mark.slow
def test_sigterm_leaves_a_checkpoint_that_resumes_to_the_same_weights(tiny, tmp_path):
    # The child slows every batch so that the signal lands mid-run, then runs the real CLI.
    folder = tiny[0]
    tally = tmp_path / "batches-taken"
    child = slowed_cli(folder, tally)
    common = ["--dataset", "tiny", "--data-dir", str(folder), *SMALL, "--epochs", "3", "--quiet"]
    command = [sys.executable, "-c", child, "train", *common, "--dropout", "0.2"]
    out, whole = tmp_path / "stopped", tmp_path / "whole"
    process = subprocess.Popen(
        [*command, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    for line in process.stdout:
        if line.startswith("epoch 1/3"):
            taken = tally.stat().st_size
            deadline = time.monotonic() + 60
            while tally.stat().st_size < taken + 2:  # a step of the second epoch is done
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.01)
            process.send_signal(signal.SIGTERM)
            break
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "Continue with: mnistlab train --resume" in stdout and "Traceback" not in stderr
    saved = checkpoint.load(out)
    assert saved["epoch"] == 1 and saved["batch"] > 0  # stopped inside the second epoch
    resumed = subprocess.run(
        [sys.executable, "-c", child, "train", "--resume", str(out), "--quiet", "--no-plots"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resumed.returncode == 0, resumed.stderr
    uninterrupted = subprocess.run(
        [*command, "--out", str(whole)], capture_output=True, text=True, timeout=60
    )
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    final, expected = checkpoint.load(out)["model"], checkpoint.load(whole)["model"]
    assert all(torch.equal(final[name], expected[name]) for name in expected)


def test_a_sweep_resumed_elsewhere_reruns_nothing_and_its_runs_are_run_folders(
    capsys, tiny, tmp_path
):
    moved = tmp_path / "moved-data"
    shutil.copytree(tiny[0], moved)
    sweep = tmp_path / "sweep"
    grid = ("sweep", "--dataset", "tiny", "--epochs", 1, "--hidden", 8, "--batch-size", 64)
    grid += ("--grid", "lr=0.003,0.01", "--out", sweep, "--no-plots")
    code, stdout, _ = cli(capsys, *grid, "--data-dir", tiny[0])
    assert code == 0 and stdout.count("done before") == 0
    code, stdout, _ = cli(capsys, *grid, "--data-dir", moved, "--threads", 1)
    assert code == 0 and stdout.count("done before") == 2
    records = [json.loads(line) for line in (sweep / "results.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        folder = sweep / record["run"]
        assert json.loads((folder / "config.json").read_text()) == record["config"]
        code, stdout, _ = cli(capsys, "evaluate", folder, "--json")
        assert code == 0 and json.loads(stdout)["accuracy"] == pytest.approx(
            record["test_accuracy"]
        )
    code, stdout, _ = cli(capsys, "train", "--resume", sweep / records[0]["run"], "--epochs", 2)
    assert code == 0 and "epoch 2/2" in stdout


def no_temporaries(folder: Path) -> bool:
    return not list(folder.glob(files.TEMP_PREFIX + "*"))


def test_a_failed_atomic_write_leaves_no_temporary_file_and_the_old_file(tmp_path):
    target = tmp_path / "config.json"
    target.write_text("old")

    def full_disk(handle):
        handle.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        files.atomic_write(target, full_disk)
    assert target.read_text() == "old" and no_temporaries(tmp_path)
    files.atomic_write(target, "new")
    assert target.read_text() == "new" and no_temporaries(tmp_path)
    assert target.stat().st_mode & 0o044 == 0o044  # readable by others, like any file


def test_leftover_temporaries_of_a_killed_run_are_removed_on_its_next_start(tiny, tmp_path):
    out = tmp_path / "run"
    with Run.create(out, tiny_config(epochs=1)) as run:
        run.fit(Runtime(data_dir=str(tiny[0])), pictures=False)
    leftover = out / (files.TEMP_PREFIX + "abc.tmp")
    leftover.write_bytes(b"x" * 1000)
    os.utime(leftover, (0, 0))
    with Run.open(out, {"epochs": 2}):
        assert not leftover.exists()


@pytest.mark.slow
def test_a_closed_output_pipe_stops_the_run_with_how_to_resume(tiny, tmp_path):
    child = slowed_cli(tiny[0])
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-c", child, "train", "--dataset", "tiny", "--data-dir", str(tiny[0])]
        + [*SMALL, "--epochs", "3", "--quiet", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().startswith("training")  # then the reader goes away
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 141
    assert f"Continue with: mnistlab train --resume {out}" in stderr and "Traceback" not in stderr
    assert checkpoint.load(out)["epoch"] >= 1


def test_a_stop_asked_during_the_last_step_lets_the_run_finish(tiny, tmp_path):
    # Ctrl-C in the last step of the last epoch: nothing is left to resume, so the run ends
    # as finished, pictures and all (no helper process to be caught by the signal either).
    config = tiny_config(epochs=1)
    tensors = resident.prepare(config, data.load("tiny", tiny[0]), torch.device("cpu"))
    steps = {"n": 0}

    def last_step(done, total, loss):
        steps["n"] = done

    with Run.create(tmp_path / "run", config) as run:
        result = run.fit(tensors=tensors, on_batch=last_step, should_stop=lambda: steps["n"] == 8)
    assert not result.interrupted and len(result.history) == 1
    assert [path.name for path in run.pictures] == [
        "curves.png",
        "confusion.png",
        "mistakes.png",
        "weights.png",
    ]


def test_a_full_disk_is_said_in_one_line_and_the_last_checkpoint_stays(tiny, tmp_path):
    # A real full file system: a small tmpfs.
    with small_file_system(tmp_path / "small", "512k") as mount:
        folder = mount / "run"

        def fill(record):  # after the first epoch's checkpoint: the disk fills up, all but
            if record["epoch"] == 1:  # 40 KB, less than a checkpoint needs
                with open(mount / "filler", "wb") as handle:
                    while (free := shutil.disk_usage(mount).free) > 40_000:
                        handle.write(b"\0" * min(65536, free - 40_000))
                        handle.flush()

        with (
            Run.create(folder, tiny_config(epochs=3)) as run,
            pytest.raises(
                CheckpointError, match="no space left on device while saving .*previous checkpoint"
            ),
        ):
            run.fit(Runtime(data_dir=str(tiny[0])), pictures=False, on_epoch=fill)
        assert checkpoint.load(folder)["epoch"] == 1
        assert not list(folder.glob(files.TEMP_PREFIX + "*"))


def test_a_full_disk_before_the_first_checkpoint_says_none_was_written(tiny, tmp_path):
    # Full from the start: there is no previous checkpoint to speak of.
    with small_file_system(tmp_path / "small", "512k") as mount:
        folder = mount / "run"
        with Run.create(folder, tiny_config(hidden=(512,), epochs=1)) as run:
            with open(mount / "filler", "wb") as handle:
                while (free := shutil.disk_usage(mount).free) > 40_000:
                    handle.write(b"\0" * min(65536, free - 40_000))
                    handle.flush()
            with pytest.raises(CheckpointError, match="no checkpoint was written") as raised:
                run.fit(Runtime(data_dir=str(tiny[0])), pictures=False)
        assert "previous" not in str(raised.value)
        assert not (folder / "checkpoint.pt").exists()
        assert not list(folder.glob(files.TEMP_PREFIX + "*"))
