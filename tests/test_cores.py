"""The thread count: one function decides it from the cores, how busy other programs keep
them, the processes of the job and the environment; the CLI sets what it decides."""

import json
import os

import pytest

from mnistlab import cores
from mnistlab.cli import main


@pytest.mark.parametrize(
    ("usable", "busy", "processes", "expected"),
    [
        (2, 0.0, 1, 2),  # a quiet 2-core machine: both
        (2, 0.3, 1, 2),  # background noise is not a busy core
        (2, 1.0, 1, 1),  # one busy loop beside us: the free core only
        (2, 0.7, 1, 1),
        (2, 2.0, 1, 1),  # every core busy: one thread still
        (8, 4.0, 1, 4),  # half of the cores busy
        (8, 0.0, 2, 4),  # two workers share the cores
        (8, 2.0, 3, 2),
        (1, 0.0, 4, 1),  # never fewer than one
    ],
)
def test_threads_are_the_free_cores_shared_among_the_processes(usable, busy, processes, expected):
    assert cores.threads(usable, busy, processes) == expected


def test_the_cores_other_programs_kept_busy_are_read_from_the_machines_counters(tmp_path):
    stat, hertz = tmp_path / "stat", os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal: steal (a hypervisor's) counts as busy
    stat.write_text(f"cpu  {hertz} 0 0 {2 * hertz} 0 0 0 {hertz}\ncpu0 0\ncpu1 0\nintr 0\n")
    read = cores.sample(str(stat))
    assert (read.busy, read.total, read.cores) == (2.0, 4.0, 2)
    assert cores.sample(str(tmp_path / "no-such-file")) is None
    # One second on two cores: 1.5 core-seconds busy, 0.5 of them this process's own.
    before = cores.Sample(busy=10.0, total=20.0, ours=3.0, cores=2)
    after = cores.Sample(busy=11.5, total=22.0, ours=3.5, cores=2)
    assert cores.others_busy(before, after) == pytest.approx(1.0)
    assert cores.others_busy(after, after) == 0.0


def test_the_users_omp_num_threads_stands_and_nothing_measured_means_every_free_core():
    assert cores.choose(None, environment={"OMP_NUM_THREADS": "3"}) is None
    assert cores.choose(None, environment={}) == cores.usable()
    assert cores.choose(None, processes=cores.usable() + 1, environment={}) == 1


@pytest.mark.parametrize("asked", [None, "1"])
def test_a_run_uses_the_threads_asked_for_or_chosen_and_records_them(tiny, tmp_path, asked):
    import torch

    before = torch.get_num_threads()
    out = tmp_path / "run"
    argv = ["train", "--dataset", "tiny", "--data-dir", str(tiny[0]), "--hidden", "8"]
    argv += ["--epochs", "1", "--no-plots", "--quiet", "--out", str(out)]
    try:
        assert main([*argv, *(["--threads", asked] if asked else [])]) == 0
        recorded = json.loads((out / "machine.json").read_text())["threads"]
        if asked:
            assert recorded == int(asked)
        else:  # the test processes set OMP_NUM_THREADS, which the choice leaves alone
            assert recorded == torch.get_num_threads() >= 1
    finally:
        torch.set_num_threads(before)


def test_the_count_recommended_to_a_notebook_is_always_a_count():
    assert cores.recommended(0.01, environment={"OMP_NUM_THREADS": "3"}) == 3
    assert cores.recommended(0.01, environment={"OMP_NUM_THREADS": "lots"}) == cores.usable()
    assert 1 <= cores.recommended(0.01, environment={}) <= cores.usable()


def _stat(path, busy: float, idle: float) -> None:
    hertz = os.sysconf("SC_CLK_TCK")
    path.write_text(f"cpu  {int(busy * hertz)} 0 0 {int(idle * hertz)} 0 0 0 0\ncpu0 0\ncpu1 0\n")


def test_the_pacer_gives_the_count_for_the_load_of_the_last_half_epoch(tmp_path, monkeypatch):
    # Two cores; what this process spent is taken from os.times, so the machine's counters
    # are written to say how busy the others were over each window.
    monkeypatch.setattr(cores, "usable", lambda: 2)
    stat = tmp_path / "stat"
    _stat(stat, busy=0, idle=0)
    pacer = cores.Pacer(most=2, stat=str(stat))
    ours = os.times()
    spent = ours.user + ours.system

    def window(others: float, seconds: float = 1.0):
        nonlocal spent
        now = os.times()
        mine = now.user + now.system - spent
        spent += mine
        read = cores.sample(str(stat))
        _stat(
            stat,
            busy=read.busy + others * seconds + mine,
            idle=read.total - read.busy + (2 - others) * seconds - mine,
        )

    pacer.mark()
    window(others=1.0)  # a busy loop arrived: one core left
    assert pacer(2) == 1
    pacer.mark()
    window(others=0.0)  # and left again: both
    assert pacer(1) == 2
    pacer.mark()
    window(others=0.2)  # a browser's noise is not a busy core
    assert pacer(2) == 2
    pacer.mark()
    window(others=1.0, seconds=0.01)  # too short a window to tell: the count stands
    assert pacer(2) == 2
    assert cores.Pacer(most=1, stat=str(stat))(1) == 1  # never past torch's own count


def test_each_epoch_records_its_threads_and_a_resumed_epoch_keeps_its_count(tmp_path, tiny):
    import torch

    from mnistlab import train as training
    from mnistlab.runs import Run
    from test_train import stop_after, tiny_run

    class Scripted:
        """A pacer whose answers are given: 1 thread for epoch 2, 2 for epoch 3."""

        def __init__(self):
            self.answers = [1, 2]

        def mark(self):
            pass

        def __call__(self, current):
            return self.answers.pop(0)

    before = torch.get_num_threads()
    config, tensors = tiny_run(tiny[0], epochs=3, dropout=0.3)
    torch.set_num_threads(2)
    try:
        whole = training.train(config, tensors, pacer=Scripted())
        assert torch.get_num_threads() == 2  # left as it was
        assert [r["threads"] for r in whole.history] == [2, 1, 2]
        # stopped in epoch 2 (1 thread), resumed where 2 threads are the count now: epoch 2
        # finishes with its own count, and the weights are the uninterrupted run's
        with Run.create(tmp_path / "run", config) as run:
            part = run.fit(tensors=tensors, pictures=False, pacer=Scripted(), **stop_after(11))
        assert part.interrupted and part.position.partial["threads"] == 1
        resumed = Scripted()
        resumed.answers = [2]
        with Run.open(tmp_path / "run") as run:
            rest = run.fit(tensors=tensors, pictures=False, pacer=resumed)
        assert [r["threads"] for r in rest.history] == [2, 1, 2]
        final, expected = rest.model.state_dict(), whole.model.state_dict()
        for name in expected:
            assert torch.equal(final[name], expected[name]), name
    finally:
        torch.set_num_threads(before)
