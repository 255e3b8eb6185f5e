"""Searches on Optuna: workers sharing a study through a real PostgreSQL server, a worker killed
mid-trial, pruning, the default file storage, and a test set never read during the search."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace as dataclasses_replace
from pathlib import Path

import pytest

from conftest import slowed_cli
from mnistlab import data, runfiles, tune
from mnistlab.cli import main
from mnistlab.config import Runtime, TrainConfig
from mnistlab.errors import ConfigError
from mnistlab.text import study as tune_text
from mnistlab.tune import results as tune_results
from mnistlab.tune import search as tune_search
from mnistlab.tune import space as tune_space
from mnistlab.workqueue import claims
from mnistlab.workqueue import storage as tune_storage

POSTGRES = Path("/usr/lib/postgresql/15/bin")
GRID = ["--space", "hidden=choice:8,16", "--space", "lr=choice:0.003,0.01"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def postgres_server():
    """A PostgreSQL 15 server in a temporary folder on a free port, as root run as the postgres
    user (initdb and pg_ctl refuse root); yields (its URL, a function that stops it at once)."""
    if not (POSTGRES / "initdb").exists():
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES} is missing: .ci/run installs PostgreSQL 15")
        pytest.skip("needs PostgreSQL 15's binaries")
    folder = Path(tempfile.mkdtemp(prefix="mnistlab-pg-"))
    as_user = {}
    if os.geteuid() == 0:
        import pwd

        account = pwd.getpwnam("postgres")
        os.chown(folder, account.pw_uid, account.pw_gid)
        as_user = {"user": account.pw_uid, "group": account.pw_gid}
    port = free_port()

    def pg(*argv, check=True):
        return subprocess.run(
            [str(POSTGRES / argv[0]), *argv[1:]], check=check, capture_output=True, **as_user
        )

    pg("initdb", "-D", str(folder / "data"), "-A", "trust", "-U", "postgres", "--no-sync")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg("pg_ctl", "-D", str(folder / "data"), "-o", options, "-l", str(folder / "log"), "-w",
       "start")  # fmt: skip

    def stop(check=True):
        pg("pg_ctl", "-D", str(folder / "data"), "-m", "immediate", "-w", "stop", check=check)

    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", stop
    finally:
        stop(check=False)  # (stopped already by the test, or now)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL 15 server for the session (each test makes a database of its own)."""
    with postgres_server() as (url, _):
        yield url


def database(postgres: str, name: str) -> str:
    """A fresh database on the session's server, for one test."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return postgres.rsplit("/", 1)[0] + f"/{name}"


def worker(tiny, storage, out, *extra, slow=False):
    """A `mnistlab tune` worker process, as another machine would start it."""
    command = [sys.executable, "-P", "-m", "mnistlab", "tune", "--dataset", "tiny",
               "--data-dir", str(tiny[0]), "--hidden", "8", "--batch-size", "64", *GRID,
               "--sampler", "grid", "--pruner", "none", "--storage", storage, "--study", "s",
               "--out", str(out), "--worker", "--quiet", "--threads", "1", *extra]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def open_sweep(engine, points):
    """A sweep's study, as Sweep makes it: one queued trial per run."""
    queue = [({}, {"point": index, **point}) for index, point in enumerate(points)]
    return tune_storage.open_study(engine, queue, tune_storage.setup_of(None, points))


def study_trials(storage, study="s"):
    return tune_results.summary(tune.Engine(storage, study))["trials"]


@pytest.mark.slow
def test_two_workers_on_postgresql_run_each_grid_point_once(tiny, postgres, tmp_path, capsys):
    storage = database(postgres, "shared_grid")
    workers = [worker(tiny, storage, tmp_path / name, "--epochs", "20") for name in "ab"]
    for process in workers:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    trials = study_trials(storage)
    complete = [t for t in trials if t["state"] == "complete"]
    points = [(t["params"]["hidden"], t["params"]["lr"]) for t in complete]
    assert len(complete) == 4 and len(set(points)) == 4 and len(trials) == 4
    code = main(["tune", "--storage", storage, "--study", "s", "--summary"])
    out = capsys.readouterr().out
    assert code == 0 and "4 complete" in out and out.count("hidden=") == 4


@pytest.mark.slow
def test_a_worker_killed_mid_trial_loses_nothing(tiny, postgres, tmp_path):
    import optuna

    storage = database(postgres, "killed_worker")
    slow = ("--epochs", "120", "--heartbeat", "1")
    first = worker(tiny, storage, tmp_path / "a", *slow)
    deadline = time.monotonic() + 120
    # killed while its trial trains: a trial is running from the moment it is made, before
    # it has drawn its grid point's two settings (a kill then leaves no point to try again)
    while not any(
        t["state"] == "running" and len(t["params"]) == 2 for t in study_trials_safe(storage)
    ):
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = worker(tiny, storage, tmp_path / "b", "--epochs", "2", "--heartbeat", "1")
    _, err = second.communicate(timeout=600)
    assert second.returncode == 0, err
    trials = study_trials(storage)
    failed = [t for t in trials if t["state"] == "fail"]
    complete = [t for t in trials if t["state"] == "complete"]
    assert len(failed) == 1 and len(complete) == 4
    retried = [t for t in complete if t["params"] == failed[0]["params"]]
    assert len(retried) == 1  # the killed trial's parameters were tried again, once
    assert len({json.dumps(t["params"], sort_keys=True) for t in complete}) == 4
    study = optuna.load_study(study_name="s", storage=storage)
    assert study.best_value > 0.5


def study_trials_safe(storage, study="s"):
    with contextlib.suppress(Exception):  # the study may not exist yet
        return study_trials(storage, study)
    return []


def test_a_diverging_trial_is_pruned_after_its_first_epoch(tiny, tmp_path):
    engine = tune.Engine(tune.default_storage(tmp_path), "prune", sampler="grid")
    space = tune.parse_space(["lr=choice:0.03,10000"])
    base = TrainConfig(
        dataset="tiny", hidden=(8,), batch_size=64, epochs=4, val_split=0.25, optimizer="sgd"
    )
    tune_search.optimize(engine, space, base, tmp_path, Runtime(data_dir=str(tiny[0])))
    trials = {t["params"]["lr"]: t for t in tune_results.summary(engine)["trials"]}
    assert trials[10000]["state"] == "pruned" and trials[0.03]["state"] == "complete"
    # The diverging trial stopped inside its first epoch; the other trained all four.
    epochs = sorted(
        len(runfiles.read_metrics(folder)) for folder in (tmp_path / "trials").iterdir()
    )
    assert epochs == [0, 4]


def test_a_trial_that_finished_its_last_epoch_is_complete_not_pruned(tiny, tmp_path, capsys):
    # One epoch each: the third trial is worse than the median of the first two at its first
    # (and last) epoch; its training is done, so there is nothing to save by pruning it.
    code = main(["tune", "--dataset", "tiny", "--data-dir", str(tiny[0]), "--hidden", "8",
                 "--batch-size", "64", "--epochs", "1", "--sampler", "grid", "--space",
                 "lr=choice:0.03,0.01,0.0001", "--pruner", "median", "--out",
                 str(tmp_path / "study"), "--quiet"])  # fmt: skip
    out = capsys.readouterr().out
    trials = tune_results.summary(tune.Engine(tune.default_storage(tmp_path / "study"), "study"))
    states = {t["params"]["lr"]: (t["state"], t["value"]) for t in trials["trials"]}
    assert code == 0 and "3 complete" in out
    assert states[0.0001][1] < min(states[0.03][1], states[0.01][1])  # the one to prune


@pytest.mark.slow
def test_a_search_stopped_mid_trial_queues_the_trial_again_and_goes_on(tiny, tmp_path):
    # Ctrl-C during a grid's first point: the process stops after its step (exit 130) and the
    # point goes back to the queue; the same command then runs all four, each once.
    tally, out = tmp_path / "batches-taken", tmp_path / "study"
    command = [sys.executable, "-c", slowed_cli(tiny[0], tally), "tune", "--dataset", "tiny",
               "--data-dir", str(tiny[0]), "--batch-size", "64", "--epochs", "3", *GRID,
               "--sampler", "grid", "--pruner", "none", "--out", str(out), "--quiet"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not tally.exists() or tally.stat().st_size < 3:  # inside the first trial
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "run the same command to go on" in stdout and "Traceback" not in stderr
    storage = tune.default_storage(out)
    queued = tune_results.summary(tune.Engine(storage, "study"))["trials"]
    assert [t["state"] for t in queued] == ["waiting"] * 4  # the stopped point among them
    # the same command goes on (here in this process: nothing slowed, nothing to stop)
    assert main(command[3:]) == 0
    trials = tune_results.summary(tune.Engine(storage, "study"))["trials"]
    points = sorted((t["params"]["hidden"], t["params"]["lr"]) for t in trials)
    assert [t["state"] for t in trials] == ["complete"] * 4 and len(set(points)) == 4


@pytest.mark.slow
def test_ctrl_c_at_the_terminal_stops_local_workers_without_losing_their_trials(tiny, tmp_path):
    # `--workers 2` in a terminal: Ctrl-C goes to the terminal's process group. Each worker is
    # asked to stop once, finishes its step and queues its trial again; nothing fails.
    out = tmp_path / "study"
    command = [sys.executable, "-P", "-m", "mnistlab", "tune", "--dataset", "tiny",
               "--data-dir", str(tiny[0]), "--hidden", "8", "--batch-size", "64", *GRID,
               "--sampler", "grid", "--pruner", "none", "--workers", "2", "--out", str(out),
               "--quiet"]  # fmt: skip
    parent = subprocess.Popen(
        [*command, "--epochs", "400"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, process_group=0,
    )  # fmt: skip
    storage = tune.default_storage(out)
    deadline = time.monotonic() + 120
    while sum(t["state"] == "running" for t in study_trials_safe(storage, "study")) < 2:
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.1)
    os.killpg(parent.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    _, stderr = parent.communicate(timeout=120)
    assert parent.returncode == 130, stderr
    assert "Traceback" not in stderr and "aborted" not in stderr
    states = [t["state"] for t in study_trials(storage, "study")]
    assert sorted(states) == ["waiting"] * 4  # two points never started, two queued again
    # the study goes on from its queue (here in this process, with one worker)
    go_on = [*command[4 : command.index("--workers")], *command[command.index("--workers") + 2 :]]
    assert main([*go_on, "--epochs", "2"]) == 0
    assert [t["state"] for t in study_trials(storage, "study")] == ["complete"] * 4


@pytest.mark.slow
def test_a_study_that_is_not_there_and_a_search_without_an_end_are_one_line_errors(
    tmp_path, capsys
):
    storage = tune.default_storage(tmp_path)
    tune_search.open_search(tune.Engine(storage, "real"), tune.parse_space(["lr=log:1e-3:1e-2"]))
    assert main(["tune", "--storage", storage, "--study", "other", "--summary"]) == 2
    err = capsys.readouterr().err
    assert "holds no study 'other' (it holds: real)" in err
    assert "Traceback" not in err and err.count("\n") == 1
    missing = tmp_path / "nothing-here"
    assert main(["tune", "--summary", "--out", str(missing)]) == 2
    assert f"no study database at {missing / 'study.db'}" in capsys.readouterr().err
    assert not missing.exists()  # nothing made by looking
    refused = tmp_path / "no-end"
    assert main(["tune", "--space", "lr=log:1e-3:1e-2", "--out", str(refused)]) == 2
    assert "give --trials or --timeout" in capsys.readouterr().err and not refused.exists()
    unreachable = f"postgresql://lab:s3cret@127.0.0.1:{free_port()}/lab"
    assert main(["tune", "--storage", unreachable, "--study", "s", "--summary"]) == 2
    err = capsys.readouterr().err
    assert "cannot open postgresql://lab:***@127.0.0.1" in err and "s3cret" not in err


def test_a_worker_waiting_for_the_last_grid_points_stops_when_asked(tmp_path):
    # Its own trial done, the queue empty, another worker's trial still running: this worker
    # waits for it (to pick it up if that worker dies), but a stop request ends the wait.
    import threading

    import optuna

    study = optuna.create_study(storage=tune.default_storage(tmp_path), study_name="g")
    study.ask()  # another worker's trial, running for as long as it likes
    asked, done = threading.Event(), threading.Event()

    def work():
        wait = claims.queue_wait(heartbeat=1, should_stop=asked.is_set)
        study.optimize(lambda trial: 1.0, n_trials=5, callbacks=[wait])
        done.set()

    threading.Thread(target=work, daemon=True).start()
    assert not done.wait(1.5)  # waiting, as it should
    asked.set()
    assert done.wait(10)
    assert len(study.trials) == 2  # and it started nothing more


def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_not_waited_on_for_ever(
    tmp_path,
):
    # A worker killed after its trial began but before its first heartbeat (seen: the killed-
    # worker test above, on a busy machine) left a trial optuna never counts stale: every
    # other worker waited on it for ever.
    import optuna

    storage = optuna.storages.RDBStorage(
        tune.default_storage(tmp_path), heartbeat_interval=1, grace_period=2
    )
    study = optuna.create_study(storage=storage, study_name="g")
    dead = study.ask()  # running, and never a heartbeat
    deadline = time.monotonic() + 60
    wait = claims.queue_wait(heartbeat=1, should_stop=lambda: time.monotonic() > deadline)
    study.optimize(lambda trial: 1.0, n_trials=1, callbacks=[wait])
    assert time.monotonic() < deadline, "still waiting on the dead worker's trial"
    states = {trial.number: trial.state for trial in study.get_trials(deepcopy=False)}
    assert states[dead.number] == optuna.trial.TrialState.FAIL


def test_the_baseline_is_the_first_trial_and_a_base_outside_the_space_is_refused(
    tiny, tmp_path, capsys
):
    engine = tune.Engine(tune.default_storage(tmp_path), "base", sampler="random", baseline=True)
    space = tune.parse_space(["lr=log:1e-3:3e-2", "hidden=choice:8,16x16"])
    base = TrainConfig(
        dataset="tiny", hidden=(16, 16), lr=0.004, batch_size=64, epochs=2, val_split=0.25
    )
    tune_search.optimize(engine, space, base, tmp_path, Runtime(data_dir=str(tiny[0])), trials=3)
    summary = tune_results.summary(engine)
    first = summary["trials"][0]
    assert first["params"] == {"lr": 0.004, "hidden": "16x16"}
    assert summary["baseline"]["trial"] == 0 and summary["baseline"]["state"] == "complete"
    assert json.loads((tmp_path / "trials" / "0000" / "config.json").read_text())["hidden"] == [
        16,
        16,
    ]
    assert len(summary["trials"]) == 3  # queued once: the others are sampled
    best = summary["best"][0]["val_accuracy"]  # on 128 of the 512 training images
    assert summary["standard_error"] == pytest.approx((best * (1 - best) / 128) ** 0.5)
    assert "the base settings (trial 0, complete): validation" in tune_text(summary)
    (tmp_path / "study.json").write_text(
        json.dumps({"storage": engine.storage, "study": engine.study})
    )
    assert main(["report", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "The base settings (trial 0) scored" in page and "One standard error" in page
    outside = dataclasses_replace(base, lr=0.5)
    other = tune.Engine(tune.default_storage(tmp_path / "o"), "o", baseline=True)
    with pytest.raises(ConfigError, match="base's lr 0.5 lies outside the space's lr"):
        tune_search.open_search(other, space, outside)
    grid = tune.Engine(tune.default_storage(tmp_path / "g"), "g", sampler="grid", baseline=True)
    with pytest.raises(ConfigError, match="a grid runs its own points"):
        tune_search.open_search(grid, tune.parse_space(["hidden=choice:8,16"]), base=base)
    code = main(
        ["tune", "--dataset", "tiny", "--data-dir", str(tiny[0]), "--baseline", "--hidden", "4"]
        + ["--space", "hidden=choice:8,16", "--trials", "1", "--out", str(tmp_path / "cli")]
    )
    assert code == 2 and "hidden 4 lies outside" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists()  # refused before anything was written


class NoTestSet(data.Dataset):
    @property
    def test(self):
        raise AssertionError("the search read the test set")


def test_the_search_never_touches_the_test_set(tiny, tmp_path):
    loaded = data.load("tiny", tiny[0])
    guarded = NoTestSet.__new__(NoTestSet)
    for name in ("name", "train", "classes", "files"):
        object.__setattr__(guarded, name, getattr(loaded, name))
    engine = tune.Engine(tune.default_storage(tmp_path), "blind", sampler="random")
    space = tune.parse_space(["lr=log:1e-3:3e-2", "hidden=choice:8,16"])
    base = tune_search.search_config(TrainConfig(dataset="tiny", batch_size=64, epochs=2), 512)
    assert base.val_split == pytest.approx(51 / 512)  # a tenth of so small a training set
    assert tune_search.search_config(TrainConfig()).val_split == pytest.approx(5000 / 60000)
    tune_search.optimize(engine, space, base, tmp_path, trials=3, dataset=guarded)
    assert (
        tune_results.summary(engine)["counts"].get("complete", 0)
        + tune_results.summary(engine)["counts"].get("pruned", 0)
        == 3
    )
    for metrics in (tmp_path / "trials").glob("*/metrics.jsonl"):
        assert all(
            "test_accuracy" not in json.loads(line) for line in metrics.read_text().splitlines()
        )


def test_with_workers_this_process_searches_beside_them(tiny, tmp_path, capsys, idle_workers):
    # --workers 2: one process started beside this one, which takes trials too (here, that
    # process ends at once, so this one runs the whole grid, printing each trial)
    out = tmp_path / "study"
    command = ["tune", "--dataset", "tiny", "--data-dir", str(tiny[0]), "--hidden", "8",
               "--batch-size", "64", "--epochs", "1", *GRID, "--sampler", "grid", "--pruner",
               "none", "--workers", "2", "--out", str(out)]  # fmt: skip
    assert main(command) == 0
    assert len(idle_workers) == 1 and idle_workers[0][-2] == "tune"
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("trial ")]
    assert len(lines) == 4 and all(": complete" in line for line in lines), lines
    trials = study_trials(tune.default_storage(out), "study")
    assert [t["state"] for t in trials] == ["complete"] * 4


@pytest.mark.slow
def test_the_default_file_storage_with_two_workers_and_the_best_settings(tiny, tmp_path, capsys):
    out = tmp_path / "study"
    code = main(
        [
            "tune",
            "--dataset",
            "tiny",
            "--data-dir",
            str(tiny[0]),
            "--hidden",
            "8",
            "--batch-size",
            "64",
            "--epochs",
            "2",
            "--val-split",
            "0.25",
            *GRID,
            "--sampler",
            "grid",
            # (the median pruner's verdict depends on which worker's trials end first)
            "--pruner",
            "none",
            "--workers",
            "2",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    text = capsys.readouterr().out
    assert code == 0 and (out / "study.db").is_file()
    assert "4 complete" in text and "test accuracy of the best" in text
    summary = tune_results.summary(tune.Engine(tune.default_storage(out), "study"))
    best = summary["best"][0]
    # The best trial's settings, trained again from best.toml: the same validation accuracy.
    assert (
        main(
            [
                "train",
                "--config",
                str(out / "best.toml"),
                "--data-dir",
                str(tiny[0]),
                "--out",
                str(tmp_path / "again"),
                "--no-plots",
                "--quiet",
            ]
        )
        == 0
    )
    again = [
        json.loads(line) for line in (tmp_path / "again" / "metrics.jsonl").read_text().splitlines()
    ]
    assert again[-1]["val_accuracy"] == best["val_accuracy"]
    assert summary["best_test"]["trial"] == best["trial"]
    for picture in ("study_history.png", "study_importances.png", "study_parameters.png"):
        assert (out / picture).stat().st_size > 1000
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "measured once after the search" in page and page.count("<img") == 3


@pytest.mark.slow
def test_trials_is_a_budget_for_all_workers_together_and_each_draws_its_own_points(
    tiny, tmp_path, capfd
):
    # Two workers, three trials: when the first two finish together, both would start a
    # third; the one that claimed it second stands aside, so the study runs exactly three.
    # And the two draw different points (seeded alike, both drew the same first lr).
    out = tmp_path / "study"
    command = ["tune", "--dataset", "tiny", "--data-dir", str(tiny[0]), "--hidden", "8",
               "--batch-size", "64", "--epochs", "6", "--space", "lr=log:0.003:0.03",
               "--pruner", "none", "--trials", "3", "--workers=2", "--out", str(out),
               "--quiet"]  # fmt: skip
    assert main(command) == 0
    printed = capfd.readouterr().out  # the workers' lines too
    assert "3 complete" in printed
    lines = [line for line in printed.splitlines() if line.startswith("trial ")]
    assert len(lines) == 3 and all(": complete" in line for line in lines), lines  # none idle
    trials = tune_results.summary(tune.Engine(tune.default_storage(out), "study"))["trials"]
    assert [t["state"] for t in trials] == ["complete"] * 3
    assert len({t["params"]["lr"] for t in trials}) == 3  # workers seeded alike drew alike
    assert len(list((out / "trials").iterdir())) == 3  # nothing trained past the budget


@pytest.mark.slow
def test_a_grid_point_past_the_budget_stays_queued_for_a_larger_one(tiny, tmp_path):
    # --trials 2 of a 4-point grid, two workers: the one whose short trial ends first finds
    # the budget held and puts the point it took back. A later --trials 4 runs the other two.
    out = tmp_path / "study"
    command = ["tune", "--dataset", "tiny", "--data-dir", str(tiny[0]), "--hidden", "8",
               "--batch-size", "64", "--space", "lr=choice:0.003,0.01", "--space",
               "epochs=choice:2,60", "--sampler", "grid", "--pruner", "none", "--workers", "2",
               "--out", str(out), "--quiet"]  # fmt: skip
    assert main([*command, "--trials", "2"]) == 0
    trials = study_trials(tune.default_storage(out), "study")
    assert sorted(t["state"] for t in trials) == ["complete"] * 2 + ["waiting"] * 2
    assert main([*command, "--trials", "4"]) == 0
    trials = study_trials(tune.default_storage(out), "study")
    points = {(t["params"]["lr"], t["params"]["epochs"]) for t in trials}
    assert [t["state"] for t in trials] == ["complete"] * 4 and len(points) == 4


@pytest.mark.slow
def test_any_machine_summarises_a_study_whose_best_ran_elsewhere(tiny, tmp_path, capsys):
    # Machine A runs the search; machine B (here: A's folder moved out of reach) summarises it
    # from the shared storage: best.toml and the standard error come from the study itself.
    import optuna

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    here, there = tmp_path / "a", tmp_path / "b"
    search = ["tune", "--dataset", "tiny", "--data-dir", str(tiny[0]), "--hidden", "8",
              "--batch-size", "64", "--epochs", "2", *GRID, "--sampler", "grid", "--pruner",
              "none", "--storage", storage, "--study", "s", "--quiet"]  # fmt: skip
    assert main([*search, "--out", str(here)]) == 0
    best = tune_results.summary(tune.Engine(storage, "s"))["best"][0]
    assert Path(best["run"]).is_absolute()
    here.rename(tmp_path / "a-elsewhere")
    capsys.readouterr()
    summarise = ["tune", "--storage", storage, "--study", "s", "--summary", "--out", str(there)]
    assert main(summarise) == 0
    out = capsys.readouterr().out
    assert "4 complete" in out
    assert tune_results.summary(tune.Engine(storage, "s"))["standard_error"] is not None
    settings = (there / "best.toml").read_text()
    assert f"trial {best['trial']}" in settings and f"lr = {best['params']['lr']}" in settings
    # The best not measured yet, and its run out of reach: said where it is, nothing fails.
    optuna.load_study(study_name="s", storage=storage).set_user_attr("best_test", None)
    assert main([*search, "--out", str(there)]) == 0
    assert f"the best trial ({best['trial']}) ran on {socket.gethostname()}:" in (
        capsys.readouterr().out
    )


SLOW_QUEUE = (  # python -c CODE ARGS: the CLI, with a pause before each trial it queues
    "import sys, time, optuna; from mnistlab.cli import main; "
    "queue = optuna.Study.enqueue_trial; "
    "optuna.Study.enqueue_trial = lambda *a, **k: time.sleep(1) or queue(*a, **k); "
    "sys.exit(main(sys.argv[1:]))"
)


def sweep_machine(tiny, storage, out, slow_queue=False):
    """`mnistlab sweep --storage` as one machine of many would start it (4 runs)."""
    start = ["-c", SLOW_QUEUE] if slow_queue else ["-m", "mnistlab"]
    command = [sys.executable, "-P", *start, "sweep", "--dataset", "tiny", "--data-dir",
               str(tiny[0]), "--epochs", "10", "--batch-size", "64", "--grid", "hidden=8,16",
               "--seeds", "0", "1", "--storage", storage, "--study", "shared", "--no-plots",
               "--quiet", "--threads", "1", "--out", str(out)]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ran_each_run_once(machines, folders):
    for machine in machines:
        _, err = machine.communicate(timeout=300)
        assert machine.returncode == 0, err
    ran = [path.name for folder in folders for path in (folder / "runs").glob("*")]
    assert len(ran) == 4 and len(set(ran)) == 4  # each of the 4 runs once, on one machine
    for folder in folders:  # each machine's summary holds every run
        records = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
        assert sorted(r["key"] for r in records) == sorted(ran)


@pytest.mark.slow
def test_a_sweep_shared_through_postgresql_runs_each_run_once(tiny, postgres, tmp_path):
    storage = database(postgres, "shared_sweep")
    folders = [tmp_path / "one", tmp_path / "two"]
    ran_each_run_once([sweep_machine(tiny, storage, folder) for folder in folders], folders)


@pytest.mark.slow
def test_a_machine_that_joins_a_study_still_being_made_waits_for_its_queue(tiny, tmp_path):
    # The first machine makes the study, then takes seconds to queue its runs (a big grid on
    # a distant server); the second arrives in between. It must neither refuse the study nor
    # find the queue empty: it waits until the queue is whole.
    import optuna

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    folders = [tmp_path / "one", tmp_path / "two"]
    creator = sweep_machine(tiny, storage, folders[0], slow_queue=True)
    deadline = time.monotonic() + 120
    while True:
        with contextlib.suppress(Exception):  # no database, or no tables yet
            if "shared" in optuna.get_all_study_names(storage):
                break
        assert time.monotonic() < deadline and creator.poll() is None
        time.sleep(0.05)
    assert "setup" not in optuna.load_study(study_name="shared", storage=storage).user_attrs
    ran_each_run_once([creator, sweep_machine(tiny, storage, folders[1])], folders)


def test_a_joining_worker_waits_as_long_as_the_queue_grows(tmp_path):
    # A large grid on a distant server takes its maker minutes to queue: a worker that joins
    # waits while the queue grows, and gives up only when it stops growing for `wait` s.
    import threading

    import optuna

    storage = tune.default_storage(tmp_path)
    space = tune.parse_space(["hidden=choice:8,16"])
    study = optuna.create_study(storage=storage, study_name="big")

    def maker():  # six points, 0.4 s apart: 2.4 s in all, more than twice `wait`
        for index in range(6):
            time.sleep(0.4)
            study.enqueue_trial({"hidden": "8"}, {"point": index})
        study.set_user_attr("setup", tune_storage.setup_of(space, None))

    thread = threading.Thread(target=maker)
    thread.start()
    joined = optuna.load_study(study_name="big", storage=storage)
    tune_storage.join(
        joined, tune.Engine(storage, "big"), tune_storage.setup_of(space, None), wait=1
    )
    thread.join()
    assert len(joined.trials) == 6 and "setup" in joined.user_attrs


def test_a_worker_that_brings_another_search_is_refused(tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    engine = tune.Engine(storage, "s", sampler="grid")
    space = tune.parse_space(["hidden=choice:8,16"])
    tune_search.open_search(engine, space)
    tune_search.open_search(engine, space)  # the same search joins
    with pytest.raises(ConfigError, match="searches another space .over hidden"):
        tune_search.open_search(engine, tune.parse_space(["hidden=choice:8,32"]))
    sweep = tune.Engine(storage, "sweep", sampler="random", pruner="none")
    open_sweep(sweep, [{"key": "a"}, {"key": "b"}])
    with pytest.raises(ConfigError, match="holds another sweep"):
        open_sweep(sweep, [{"key": "a"}, {"key": "c"}])
    with pytest.raises(ConfigError, match="'sweep' holds a sweep, not a search"):
        tune_search.open_search(dataclasses_replace(sweep, sampler="tpe"), space)
    with pytest.raises(ConfigError, match="'s' holds a search, not a sweep"):
        open_sweep(dataclasses_replace(engine, sampler="random"), [{"key": "a"}])
    # A study whose maker stopped before its queue was whole is refused, not waited on forever.
    optuna.create_study(storage=storage, study_name="orphan")
    with pytest.raises(ConfigError, match="still not set up after 1 s"):
        orphan = optuna.load_study(study_name="orphan", storage=storage)
        tune_storage.join(
            orphan, tune.Engine(storage, "orphan"), tune_storage.setup_of(space, None), 1
        )


def test_the_documented_best_search_reads_and_holds_its_base_and_the_best_recipe():
    """benchmarks/best_search.toml is the README's command for choosing `best`: its [train]
    table and [space] must stay readable, and both its base (the --baseline trial) and the
    recipe it chose must lie inside the space."""
    from mnistlab.settings import from_dict, read_settings, recipe

    path = Path(__file__).parents[1] / "benchmarks" / "best_search.toml"
    space = tune.parse_space(tune.read_space(path))
    base = from_dict(read_settings(path))
    assert set(space) >= {"epochs", "hidden", "dropout", "lr", "augment"}
    assert tune_space.baseline_point(space, base)["hidden"] == "1024x1024"
    tune_space.baseline_point(space, recipe("best"))  # a ConfigError if the recipe left the space


@pytest.mark.slow
def test_a_study_and_a_sweep_driven_from_python_leave_what_report_and_plot_read(tiny, tmp_path):
    from mnistlab.sweep import Sweep, plan
    from mnistlab.sweep.pictures import SWEEP_PICTURES
    from mnistlab.tune.pictures import STUDY_PICTURES

    runtime = Runtime(data_dir=str(tiny[0]))
    base = TrainConfig(dataset="tiny", hidden=(8,), batch_size=64, epochs=1)
    folder = tmp_path / "study"
    engine = tune.Engine(tune.default_storage(folder), sampler="grid", pruner="none")
    study = tune.Study(folder, engine)
    study.optimize(["lr=choice:0.003,0.01"], base, runtime)
    summary = study.finish(runtime)
    assert summary["counts"] == {"complete": 2}
    assert 0 < summary["measured"]["test_accuracy"] <= 1  # measured once, and kept
    assert study.finish(runtime)["measured"] == summary["measured"]
    assert tune.Study.open(folder).engine == tune.Engine(engine.storage)
    assert (folder / "best.toml").read_text().startswith("# study study, trial ")
    assert (folder / STUDY_PICTURES[0]).is_file()
    sweep = tmp_path / "sweep"
    result = Sweep(sweep).run(plan(base, [{"hidden": (8,)}, {"hidden": (16,)}], [0]), runtime)
    assert result.complete and len(result.rows) == 2
    assert all((sweep / name).is_file() for name in ("summary.md", *SWEEP_PICTURES))
    for made in (folder, sweep):  # the folders the CLI leaves: its report and plot read them
        assert main(["report", str(made)]) == 0 and (made / "report.html").is_file()
        assert main(["plot", str(made)]) == 0
    assert "The best trial (" in (folder / "report.html").read_text()


def test_two_studies_never_share_a_folder(capsys, tiny, tmp_path):
    out = tmp_path / "study"
    command = ["tune", "--dataset", "tiny", "--data-dir", str(tiny[0]), "--hidden", "8",
               "--batch-size", "64", "--epochs", "1", "--sampler", "grid", "--space",
               "lr=choice:0.01", "--out", str(out), "--quiet"]  # fmt: skip
    assert main([*command, "--study", "first"]) == 0
    trials = sorted((out / "trials").iterdir())
    capsys.readouterr()
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert main([*command, "--study", "second", "--storage", other]) == 2
    err = capsys.readouterr().err
    assert f"--out: {out} holds study 'first'" in err and err.count("\n") == 1
    assert sorted((out / "trials").iterdir()) == trials


@pytest.mark.slow
def test_a_database_that_stops_mid_search_is_one_line_and_the_search_goes_on_later(tiny, tmp_path):
    with postgres_server() as (url, stop):
        storage = database(url, "stopping")
        first = worker(tiny, storage, tmp_path / "a", "--epochs", "400", "--heartbeat", "1")
        deadline = time.monotonic() + 120
        while not any(t["state"] == "running" for t in study_trials_safe(storage)):
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.2)
        stop()  # pg_ctl stop -m immediate, mid-trial
        _, err = first.communicate(timeout=120)
    assert first.returncode == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "--storage: lost postgresql://postgres@127.0.0.1:" in err
    assert "run the same command when the database answers" in err
