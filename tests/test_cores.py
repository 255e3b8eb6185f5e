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
